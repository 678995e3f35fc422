//! The images themselves: reproducible bytes, what the layouts hold, how bad input fails.

mod common;

use std::collections::BTreeMap;

use common::{BUSYBOX, EPOCH, fake_bins, provenance};
use eni_image::layout::{self, EntryKind, LayerEntry, LayoutImage};
use eni_image::rootfs::{LABEL_DEBIAN_FILES, LABEL_DEBIAN_PACKAGES};
use eni_image::{Error, Image, product, testbed};

fn by_name(images: Vec<Image>) -> BTreeMap<String, Image> {
    images.into_iter().map(|i| (i.name.clone(), i)).collect()
}

fn read_back(image: &Image) -> LayoutImage {
    let tar = layout::pack(image, EPOCH).expect("pack");
    let mut images = layout::unpack(&tar, &image.name).expect("layout reads back");
    assert_eq!(images.len(), 1);
    images.remove(0)
}

/// All entries of all layers, by path.
fn entries(image: &LayoutImage) -> BTreeMap<String, LayerEntry> {
    image
        .layers
        .iter()
        .flatten()
        .map(|e| (e.path.clone(), e.clone()))
        .collect()
}

fn label<'a>(image: &'a LayoutImage, key: &str) -> &'a str {
    image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("label {key} missing"))
}

#[test]
fn same_inputs_give_identical_layout_tars() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = fake_bins(dir.path());
    let first = product::build(&inputs, &provenance()).unwrap();
    let second = product::build(&inputs, &provenance()).unwrap();
    assert_eq!(first.len(), 2);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.manifest_digest, b.manifest_digest, "{}", a.name);
        assert_eq!(
            layout::pack(a, EPOCH).unwrap(),
            layout::pack(b, EPOCH).unwrap(),
            "layout tar of {} differs between two builds",
            a.name
        );
    }
    let tests_a = testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap();
    let tests_b = testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap();
    for (a, b) in tests_a.iter().zip(&tests_b) {
        assert_eq!(a.manifest_digest, b.manifest_digest, "{}", a.name);
        assert_eq!(
            layout::pack(a, EPOCH).unwrap(),
            layout::pack(b, EPOCH).unwrap()
        );
    }
}

#[test]
fn a_changed_input_byte_or_epoch_changes_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = fake_bins(dir.path());
    let before = by_name(product::build(&inputs, &provenance()).unwrap());

    let operator = dir.path().join("eni-operator");
    let mut bytes = std::fs::read(&operator).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&operator, bytes).unwrap();
    let after = by_name(product::build(&inputs, &provenance()).unwrap());
    assert_ne!(
        before["eni-operator"].manifest_digest,
        after["eni-operator"].manifest_digest
    );
    assert_ne!(
        before["eni-operator"].layers[1].digest,
        after["eni-operator"].layers[1].digest
    );
    // The operator binary is in no layer of the agent image.
    assert_eq!(
        before["eni-agent"].manifest_digest,
        after["eni-agent"].manifest_digest
    );

    let mut later = provenance();
    later.epoch += 1;
    let relabelled = by_name(product::build(&inputs, &later).unwrap());
    assert_ne!(
        after["eni-agent"].manifest_digest,
        relabelled["eni-agent"].manifest_digest
    );
}

#[test]
fn operator_image_runs_as_nonroot_with_its_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let images = by_name(product::build(&fake_bins(dir.path()), &provenance()).unwrap());
    let image = read_back(&images["eni-operator"]);
    assert_eq!(
        image.reference.as_deref(),
        Some("localhost/eni-operator:0.1.0")
    );
    assert_eq!(image.tag.as_deref(), Some("0.1.0"));
    assert_eq!(
        image.manifest_digest,
        images["eni-operator"].manifest_digest
    );
    let config = image.config.config().as_ref().unwrap();
    assert_eq!(config.user().as_deref(), Some("65532:65532"));
    assert_eq!(
        config.entrypoint().as_deref(),
        Some(&["/usr/local/bin/eni-operator".to_owned()][..])
    );
    assert_eq!(
        image.config.created().as_deref(),
        Some("2023-11-14T22:13:20Z")
    );

    let files = entries(&image);
    let operator = &files["usr/local/bin/eni-operator"];
    assert_eq!(
        (
            operator.kind.clone(),
            operator.mode,
            operator.uid,
            operator.gid
        ),
        (EntryKind::File, 0o755, 0, 0)
    );
    let loader = &files["lib64/ld-linux-x86-64.so.2"];
    assert_eq!((loader.kind.clone(), loader.mode), (EntryKind::File, 0o755));
    assert_eq!(files["lib/x86_64-linux-gnu/libc.so.6"].mode, 0o644);
    assert!(files["etc/ssl/certs/ca-certificates.crt"].size > 100_000);
    assert_eq!(files["tmp"].mode, 0o1777);
    let home = &files["home/nonroot"];
    assert_eq!((home.uid, home.gid, home.mode), (65532, 65532, 0o700));
    // Only nonroot's home is owned by anyone but root; every mtime is the epoch.
    for (path, e) in &files {
        assert!(
            path == "home/nonroot" || (e.uid, e.gid) == (0, 0),
            "{path} owned by {}:{}",
            e.uid,
            e.gid
        );
        assert_eq!(e.mtime, EPOCH, "{path}");
    }

    let packages = label(&image, LABEL_DEBIAN_PACKAGES);
    assert!(packages.contains("libc6="), "{packages}");
    assert!(packages.contains("ca-certificates="), "{packages}");
    let listed = label(&image, LABEL_DEBIAN_FILES);
    assert!(
        listed.contains("/lib64/ld-linux-x86-64.so.2=libc6"),
        "{listed}"
    );
    for (key, value) in [
        ("title", "eni-operator"),
        ("version", "0.1.0"),
        ("revision", "0123456789abcdef0123456789abcdef01234567"),
        ("source", "unknown"),
        ("created", "2023-11-14T22:13:20Z"),
        ("licenses", "Apache-2.0"),
    ] {
        let key = format!("org.opencontainers.image.{key}");
        assert_eq!(label(&image, &key), value, "{key}");
        let annotations = image.manifest.annotations().as_ref().unwrap();
        assert_eq!(
            annotations.get(&key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(!label(&image, "org.opencontainers.image.description").is_empty());
}

#[test]
fn agent_image_holds_agent_cni_and_chained_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let images = by_name(product::build(&fake_bins(dir.path()), &provenance()).unwrap());
    let agent = read_back(&images["eni-agent"]);
    let operator = read_back(&images["eni-operator"]);
    assert_eq!(
        agent.reference.as_deref(),
        Some("localhost/eni-agent:0.1.0")
    );
    let config = agent.config.config().as_ref().unwrap();
    assert_eq!(config.user(), &None, "the agent runs as root");
    assert!(label(&agent, "io.eni-operator.image.privileges").starts_with("root"));
    let files = entries(&agent);
    for path in [
        "usr/local/bin/eni-agent",
        "usr/local/bin/eni-cni",
        "usr/lib/cni/portmap",
        "usr/lib/cni/bandwidth",
        "usr/sbin/nft",
    ] {
        let e = files.get(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(
            (e.kind.clone(), e.mode, e.uid),
            (EntryKind::File, 0o755, 0),
            "{path}"
        );
    }
    assert!(!files.contains_key("usr/local/bin/eni-operator"));
    assert!(label(&agent, LABEL_DEBIAN_PACKAGES).contains("containernetworking-plugins="));
    // nft with the libraries only it needs, in the agent's own layer, on its PATH.
    assert!(label(&agent, LABEL_DEBIAN_PACKAGES).contains("nftables="));
    assert!(
        files.keys().any(|p| p.contains("libnftables.so")),
        "libnftables in the agent"
    );
    assert!(
        !entries(&operator)
            .keys()
            .any(|p| p.contains("libnftables.so")),
        "nft's libraries stay out of the shared base"
    );
    assert!(
        config
            .env()
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("PATH=") && e.contains("/usr/sbin"))
    );
    // One shared base layer.
    assert_eq!(agent.manifest.layers()[0], operator.manifest.layers()[0]);
}

#[test]
fn test_images_are_busybox_with_the_wanted_applets() {
    let images = by_name(testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap());
    let testpod = read_back(&images["eni-testpod"]);
    assert_eq!(
        testpod.reference.as_deref(),
        Some("localhost/eni-testpod:1")
    );
    let files = entries(&testpod);
    assert_eq!(files["bin/busybox"].mode, 0o755);
    for applet in testbed::TESTPOD_APPLETS {
        assert_eq!(
            files[&format!("bin/{applet}")].kind,
            EntryKind::Symlink {
                target: "busybox".to_owned()
            }
        );
    }
    assert!(label(&testpod, LABEL_DEBIAN_PACKAGES).starts_with("busybox-static="));

    let pause = read_back(&images["eni-pause"]);
    assert_eq!(pause.reference.as_deref(), Some("localhost/eni-pause:1"));
    let config = pause.config.config().as_ref().unwrap();
    assert_eq!(
        config.entrypoint().as_deref(),
        Some(&["/bin/sleep".to_owned(), "2147483647".to_owned()][..])
    );
    assert!(entries(&pause).contains_key("bin/sleep"));
}

#[test]
fn a_missing_binary_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = fake_bins(dir.path());
    std::fs::remove_file(dir.path().join("eni-cni")).unwrap();
    let err = product::build(&inputs, &provenance()).unwrap_err();
    assert!(matches!(err, Error::MissingInput { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().join("eni-cni").display().to_string()),
        "{message}"
    );

    let err = testbed::build("/nonexistent/busybox".as_ref(), &provenance()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/busybox"), "{err}");
}

#[test]
fn a_tampered_layout_is_refused() {
    let images = testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap();
    let mut tar = layout::pack(&images[0], EPOCH).unwrap();
    // Flip a byte in the middle of the layer blob (the largest file in the tar).
    let middle = tar.len() / 2;
    tar[middle] ^= 0xff;
    let err = layout::unpack(&tar, "tampered").unwrap_err();
    assert!(
        matches!(&err, Error::Layout { reason, .. } if reason.contains("does not hash to its name")),
        "{err}"
    );
}

/// Plugins no Debian package holds (built with Go) go in as they are, with their origin
/// in a label instead of the Debian ones.
#[test]
fn plugins_from_elsewhere_carry_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = fake_bins(dir.path());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in product::CNI_PLUGINS {
        std::fs::copy("/usr/lib/cni/portmap", plugins.join(name)).unwrap();
    }
    inputs.cni_plugins = plugins;
    inputs.cni_plugins_origin = Some("github.com/containernetworking/plugins@v1.10.0".into());
    let images = by_name(product::build(&inputs, &provenance()).unwrap());
    let agent = read_back(&images["eni-agent"]);
    assert_eq!(
        label(&agent, product::LABEL_CNI_PLUGINS),
        "github.com/containernetworking/plugins@v1.10.0"
    );
    let files = entries(&agent);
    for name in product::CNI_PLUGINS {
        assert_eq!(files[&format!("usr/lib/cni/{name}")].mode, 0o755, "{name}");
    }
}
