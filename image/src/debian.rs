//! Which Debian package (and version) a host file comes from, via dpkg-query, so an
//! image can say what it was built from.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// An installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
}

fn dpkg_query(args: &[&str]) -> Result<std::process::Output> {
    Command::new("dpkg-query")
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: format!("dpkg-query {}", args.join(" ")),
            detail: e.to_string(),
        })
}

/// The paths under which dpkg may have recorded `path`: on merged-/usr systems
/// (Debian 12) a file can be listed as /lib/... while it lives in /usr/lib/..., or the
/// path we hold may be a symlink to the listed file.
fn candidate_paths(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_owned()];
    if let Ok(without_usr) = path.strip_prefix("/usr") {
        out.push(Path::new("/").join(without_usr));
    } else if path.is_absolute() {
        out.push(Path::new("/usr").join(path.strip_prefix("/").unwrap_or(path)));
    }
    if let Ok(real) = path.canonicalize()
        && !out.contains(&real)
    {
        if let Ok(without_usr) = real.strip_prefix("/usr") {
            out.push(Path::new("/").join(without_usr));
        }
        out.push(real);
    }
    out
}

/// The package that installed `path`, with its installed version.
pub fn owner(path: &Path) -> Result<Package> {
    let mut tried = Vec::new();
    for candidate in candidate_paths(path) {
        let shown = candidate.to_string_lossy().into_owned();
        let output = dpkg_query(&["-S", &shown])?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"; "diversion by ..." lines skipped.
        let name = stdout
            .lines()
            .filter(|l| !l.starts_with("diversion "))
            .find_map(|l| l.split_once(": ").map(|(pkgs, _)| pkgs.to_owned()));
        if output.status.success()
            && let Some(pkgs) = name
        {
            // Shared paths list several packages: the first is as good as any.
            let name = pkgs.split(", ").next().unwrap_or(&pkgs).to_owned();
            let version = version(&name)?;
            let name = name.split(':').next().unwrap_or(&name).to_owned();
            return Ok(Package { name, version });
        }
        tried.push(shown);
    }
    Err(Error::NotFromPackage {
        path: path.to_owned(),
        detail: format!("dpkg-query -S found none of {}", tried.join(", ")),
    })
}

/// The installed version of `package`.
pub fn version(package: &str) -> Result<String> {
    let output = dpkg_query(&["-W", "-f", "${Version}", package])?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || version.is_empty() {
        return Err(Error::Command {
            command: format!("dpkg-query -W {package}"),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(version)
}

/// The files `package` installed, as dpkg lists them.
pub fn files(package: &str) -> Result<Vec<PathBuf>> {
    let output = dpkg_query(&["-L", package])?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("dpkg-query -L {package}"),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .collect())
}
