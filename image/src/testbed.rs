//! Images for the test bed's pods: eni-testpod (a shell, ping, nc, httpd, wget and ip
//! from busybox) and eni-pause (the sandbox image the bed's containerd pins). Both hold
//! Debian's static busybox and nothing else, so they need no libraries.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::elf;
use crate::error::{Error, Result};
use crate::image::{Definition, Image};
use crate::layer::LayerBuilder;
use crate::provenance::Provenance;
use crate::rootfs::{self, DebianFiles};

/// Tag of both test images; bumped by hand when their content changes on purpose.
pub const TEST_TAG: &str = "1";
/// Applets linked in eni-testpod's /bin.
pub const TESTPOD_APPLETS: [&str; 15] = [
    "cat", "chmod", "echo", "hostname", "httpd", "ifconfig", "ip", "ls", "mkdir", "nc", "ping",
    "printf", "sh", "sleep", "wget",
];
/// Longest sleep busybox accepts portably (2^31-1 seconds, about 68 years).
const FOREVER: &str = "2147483647";

/// The busybox applets `busybox` provides (`busybox --list`).
fn applets(busybox: &Path) -> Result<BTreeSet<String>> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| Error::Command {
            command: format!("{} --list", busybox.display()),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{} --list", busybox.display()),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A busybox-only layer with `links` as /bin symlinks.
fn busybox_layer(busybox: &Path, links: &[&str]) -> Result<(LayerBuilder, DebianFiles)> {
    let mut layer = LayerBuilder::new();
    let mut files = DebianFiles::default();
    files.copy(&mut layer, "/bin/busybox", busybox, 0o755)?;
    for link in links {
        layer.symlink(&format!("/bin/{link}"), "busybox")?;
    }
    rootfs::add_accounts(&mut layer)?;
    Ok((layer, files))
}

/// Builds eni-testpod and eni-pause from `busybox` (Debian's busybox-static: /bin/busybox).
pub fn build(busybox: &Path, provenance: &Provenance) -> Result<Vec<Image>> {
    rootfs::read_input(
        busybox,
        "busybox",
        "install Debian's busybox-static or pass --busybox",
    )?;
    let info = elf::inspect(busybox)?;
    if info.interpreter.is_some() {
        return Err(Error::Elf {
            path: busybox.to_owned(),
            reason: "is dynamically linked; the test images need a static busybox (Debian's busybox-static)".to_owned(),
        });
    }
    let available = applets(busybox)?;
    let missing: Vec<String> = TESTPOD_APPLETS
        .iter()
        .filter(|a| !available.contains(**a))
        .map(|a| (*a).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(Error::MissingApplets {
            path: busybox.to_owned(),
            missing,
        });
    }

    let (testpod_layer, testpod_files) = busybox_layer(busybox, &TESTPOD_APPLETS)?;
    let testpod = Definition {
        name: "eni-testpod".to_owned(),
        tag: TEST_TAG.to_owned(),
        description: "eni-operator test pod: busybox sh, ping, nc, httpd, wget, ip; sleeps unless given a command".to_owned(),
        arch: info.arch,
        user: None,
        entrypoint: None,
        cmd: Some(vec!["/bin/sleep".to_owned(), FOREVER.to_owned()]),
        env: vec!["PATH=/bin".to_owned()],
        labels: testpod_files.labels(),
        layers: vec![testpod_layer.build(provenance.epoch)?],
    };
    let (pause_layer, pause_files) = busybox_layer(busybox, &["sleep"])?;
    let pause = Definition {
        name: "eni-pause".to_owned(),
        tag: TEST_TAG.to_owned(),
        description: "eni-operator test bed sandbox (pause) image: sleeps forever".to_owned(),
        arch: info.arch,
        user: None,
        entrypoint: Some(vec!["/bin/sleep".to_owned(), FOREVER.to_owned()]),
        cmd: None,
        env: vec!["PATH=/bin".to_owned()],
        labels: pause_files.labels(),
        layers: vec![pause_layer.build(provenance.epoch)?],
    };
    Ok(vec![
        Image::assemble(testpod, provenance)?,
        Image::assemble(pause, provenance)?,
    ])
}
