//! Runs the built root filesystems with runc: the test pod's shell works, and a
//! glibc-linked program starts from the product base layer as the non-root user, with
//! the loader finding its libraries without an ld.so.cache. Needs root and runc
//! (e2e/setup.sh installs it); says so and returns without them.

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{BUSYBOX, fake_bins, provenance};
use eni_image::{Image, product, testbed};
use flate2::read::GzDecoder;

fn runc_usable() -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let runc = Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && runc) {
        eprintln!("SKIPPED: running images needs root and runc (root: {root}, runc: {runc})");
    }
    root && runc
}

/// Applies the image's layers in order onto `rootfs`.
fn unpack_rootfs(image: &Image, rootfs: &Path) {
    for layer in &image.layers {
        let mut tar = Vec::new();
        GzDecoder::new(layer.blob.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.unpack(rootfs).unwrap();
    }
}

/// Runs `args` in `image` under runc with the image's user; returns (exit code, stdout).
fn run(image: &Image, args: &[&str]) -> (i32, String) {
    let bundle = tempfile::tempdir().unwrap();
    let rootfs = bundle.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    unpack_rootfs(image, &rootfs);
    let status = Command::new("runc")
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .unwrap();
    assert!(status.success());
    let spec_path = bundle.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    let user = config["config"]["User"].as_str().unwrap_or("0:0");
    let (uid, gid) = user.split_once(':').unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["env"] = config["config"]["Env"].clone();
    spec["process"]["user"] =
        serde_json::json!({"uid": uid.parse::<u32>().unwrap(), "gid": gid.parse::<u32>().unwrap()});
    spec["root"]["readonly"] = true.into();
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();

    let state = bundle.path().join("state");
    let id = format!("eni-image-test-{}-{}", std::process::id(), image.name);
    let output = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .output()
        .unwrap();
    eprintln!("runc stderr: {}", String::from_utf8_lossy(&output.stderr));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn testpod_shell_runs() {
    if !runc_usable() {
        return;
    }
    let images = testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap();
    let testpod = images.iter().find(|i| i.name == "eni-testpod").unwrap();
    let (code, stdout) = run(
        testpod,
        &["sh", "-c", "echo ok; id -u; nc --help 2>&1 | head -1"],
    );
    assert_eq!(code, 0, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["ok", "0"], "{stdout}");
    assert!(lines[2].starts_with("BusyBox"), "{stdout}");
}

#[test]
fn glibc_program_starts_as_nonroot_from_the_operator_image() {
    if !runc_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = product::build(&fake_bins(dir.path()), &provenance()).unwrap();
    let operator = images.iter().find(|i| i.name == "eni-operator").unwrap();
    // The stand-in is /usr/bin/true: exit 0 means the loader and libc were found.
    let (code, _) = run(operator, &["/usr/local/bin/eni-operator"]);
    assert_eq!(code, 0);
    // And a missing program fails, so the check above can fail.
    let (code, _) = run(operator, &["/usr/local/bin/absent"]);
    assert_ne!(code, 0);
}
