//! Filling layers from host files, keeping track of which Debian package each copied
//! file came from so the image can list them in its labels.

use std::collections::BTreeMap;
use std::path::Path;

use crate::debian::{self, Package};
use crate::error::{Error, Result, io_error};
use crate::layer::LayerBuilder;

/// Label listing `package=version` of every Debian package files were taken from.
pub const LABEL_DEBIAN_PACKAGES: &str = "io.eni-operator.image.debian-packages";
/// Label mapping each copied file to its package: `path=package,…`.
pub const LABEL_DEBIAN_FILES: &str = "io.eni-operator.image.debian-files";

/// Reads an input file, turning "not there" into an error that names it and says how
/// to get it.
pub fn read_input(path: &Path, what: &str, hint: &'static str) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(data) => Ok(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::MissingInput {
            what: what.to_owned(),
            path: path.to_owned(),
            hint,
        }),
        Err(e) => Err(io_error("reading", path)(e)),
    }
}

/// The Debian-sourced content of one image.
#[derive(Debug, Default, Clone)]
pub struct DebianFiles {
    by_image_path: BTreeMap<String, Package>,
}

impl DebianFiles {
    /// Copies `host_path` (following symlinks) to `image_path`, recording its package.
    pub fn copy(
        &mut self,
        layer: &mut LayerBuilder,
        image_path: &str,
        host_path: &Path,
        mode: u32,
    ) -> Result<()> {
        let package = debian::owner(host_path)?;
        let data = read_input(host_path, "Debian file", "install its package")?;
        layer.file(image_path, data, mode)?;
        self.by_image_path.insert(image_path.to_owned(), package);
        Ok(())
    }

    /// Records generated content made from `package`'s files.
    pub fn record(&mut self, image_path: &str, package: Package) {
        self.by_image_path.insert(image_path.to_owned(), package);
    }

    /// The two labels; empty when nothing came from Debian.
    pub fn labels(&self) -> BTreeMap<String, String> {
        if self.by_image_path.is_empty() {
            return BTreeMap::new();
        }
        let mut packages: Vec<String> = self
            .by_image_path
            .values()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        packages.sort();
        packages.dedup();
        let files: Vec<String> = self
            .by_image_path
            .iter()
            .map(|(path, p)| format!("{path}={}", p.name))
            .collect();
        BTreeMap::from([
            (LABEL_DEBIAN_PACKAGES.to_owned(), packages.join(",")),
            (LABEL_DEBIAN_FILES.to_owned(), files.join(",")),
        ])
    }
}

/// The Mozilla CA bundle as Debian's ca-certificates package ships it, concatenated in
/// file-name order. Built from the package's files rather than the host's
/// /etc/ssl/certs/ca-certificates.crt, which may hold CAs the host's admin added.
pub fn ca_bundle() -> Result<(Vec<u8>, Package)> {
    const PACKAGE: &str = "ca-certificates";
    let mut certs: Vec<_> = debian::files(PACKAGE)?
        .into_iter()
        .filter(|p| {
            p.starts_with("/usr/share/ca-certificates/")
                && p.extension().is_some_and(|e| e == "crt")
        })
        .collect();
    certs.sort();
    if certs.is_empty() {
        return Err(Error::Command {
            command: format!("dpkg-query -L {PACKAGE}"),
            detail: "lists no certificates".to_owned(),
        });
    }
    let mut bundle = Vec::new();
    for cert in certs {
        let mut pem = read_input(&cert, "CA certificate", "reinstall ca-certificates")?;
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        bundle.extend(pem);
    }
    let package = Package {
        name: PACKAGE.to_owned(),
        version: debian::version(PACKAGE)?,
    };
    Ok((bundle, package))
}

/// uid and gid of the non-root account (distroless' "nonroot"; the chart runs the
/// operator as this id).
pub const NONROOT_ID: u64 = 65532;

/// /etc/passwd, /etc/group and /etc/nsswitch.conf with `root` and `nonroot`, so ids
/// resolve to names inside the container and glibc's resolver reads /etc/hosts before
/// asking DNS; plus a world-writable /tmp and nonroot's home.
pub fn add_accounts(layer: &mut LayerBuilder) -> Result<()> {
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\n\
         nonroot:x:{NONROOT_ID}:{NONROOT_ID}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{NONROOT_ID}:\n");
    layer.file("/etc/passwd", passwd.into_bytes(), 0o644)?;
    layer.file("/etc/group", group.into_bytes(), 0o644)?;
    layer.file(
        "/etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
        0o644,
    )?;
    layer.dir("/tmp", 0o1777, 0, 0)?;
    layer.dir("/root", 0o700, 0, 0)?;
    layer.dir("/home/nonroot", 0o700, NONROOT_ID, NONROOT_ID)?;
    Ok(())
}
