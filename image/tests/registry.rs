//! Pushes to a real OCI distribution registry (CNCF distribution, built by e2e/setup.sh)
//! on 127.0.0.1 and reads the manifests back over plain HTTP. Skipped, with a message,
//! only when the registry binary is not installed.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BUSYBOX, provenance};
use eni_image::blob::sha256;
use eni_image::push::{Pusher, target_reference};
use eni_image::summary::Record;
use eni_image::testbed;
use oci_client::secrets::RegistryAuth;

fn registry_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("ENI_REGISTRY_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("ENI_OPERATOR_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/eni-operator")
                });
            cache.join("bin/registry")
        }
    };
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: no registry binary at {} (bash e2e/setup.sh builds it)",
            path.display()
        );
        None
    }
}

/// A registry process with its storage, stopped on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(binary: &PathBuf) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        // It logs every 404 of a blob-exists probe: keep that out of the test output.
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = fetch(&registry.addr, "/v2/", "*/*") {
                return registry;
            }
            assert!(
                Instant::now() < deadline,
                "registry did not answer on {}: {}",
                registry.addr,
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// A plain HTTP/1.0 GET (no client library: independent of the code under test).
fn fetch(addr: &str, path: &str, accept: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let malformed = || std::io::Error::other("malformed HTTP response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Ok((status, headers, response[split + 4..].to_vec()))
}

fn get(addr: &str, path: &str, accept: &str) -> Response {
    fetch(addr, path, accept).unwrap()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn pushed_manifests_keep_their_digests() {
    let Some(binary) = registry_binary() else {
        return;
    };
    let registry = Registry::start(&binary);
    let images = testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap();
    let pusher = Pusher::new(true, RegistryAuth::Anonymous).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("{}/eni-test", registry.addr);
    for image in &images {
        let target = target_reference(&prefix, image).unwrap();
        assert_eq!(target, format!("{prefix}/{}:1", image.name));
        let remote = runtime.block_on(pusher.push(image, &target)).unwrap();
        assert_eq!(remote, image.manifest_digest);
        // Again: every blob is there already, the tag still resolves to the same digest.
        let again = runtime.block_on(pusher.push(image, &target)).unwrap();
        assert_eq!(again, image.manifest_digest);

        let (status, headers, body) = get(
            &registry.addr,
            &format!("/v2/eni-test/{}/manifests/1", image.name),
            OCI_MANIFEST,
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(sha256(&body), image.manifest_digest);
        assert_eq!(body, image.manifest);
        let header = headers
            .iter()
            .find(|(k, _)| k == "docker-content-digest")
            .map(|(_, v)| v.as_str());
        assert_eq!(header, Some(image.manifest_digest.as_str()));

        let (status, _, config) = get(
            &registry.addr,
            &format!("/v2/eni-test/{}/blobs/{}", image.name, image.config_digest),
            "*/*",
        );
        assert_eq!(status, 200);
        assert_eq!(config, image.config);
    }
}

#[test]
fn cli_pushes_and_records_where() {
    let Some(binary) = registry_binary() else {
        return;
    };
    let registry = Registry::start(&binary);
    let out = tempfile::tempdir().unwrap();
    let prefix = format!("{}/cli", registry.addr);
    let status = Command::new(env!("CARGO_BIN_EXE_eni-image"))
        .args([
            "test-images",
            "--busybox",
            BUSYBOX,
            "--insecure",
            "--push",
            &prefix,
            "--out",
        ])
        .arg(out.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .status()
        .unwrap();
    assert!(status.success());
    let records: Vec<Record> =
        serde_json::from_slice(&std::fs::read(out.path().join("images.json")).unwrap()).unwrap();
    assert_eq!(records.len(), 2);
    for record in records {
        assert_eq!(record.pushed, Some(format!("{prefix}/{}:1", record.name)));
        assert!(record.layout_tar.is_file());
        let (status, _, body) = get(
            &registry.addr,
            &format!("/v2/cli/{}/manifests/1", record.name),
            OCI_MANIFEST,
        );
        assert_eq!(status, 200);
        assert_eq!(sha256(&body), record.digest);
    }
}

#[test]
fn a_prefix_without_registry_host_is_refused() {
    let images = testbed::build(BUSYBOX.as_ref(), &provenance()).unwrap();
    let err = target_reference("team", &images[0]).unwrap_err();
    assert!(err.to_string().contains("registry host"), "{err}");
    assert!(target_reference("localhost:5000/team/sub", &images[0]).is_ok());
    assert!(target_reference("registry.example.com/team", &images[0]).is_ok());
}
