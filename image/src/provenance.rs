//! What an image says about where it came from: version, commit, source repository and
//! the build epoch, which also stamps every timestamp in the image.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Version label and tag of the product images.
    pub version: String,
    /// The git commit the binaries were built from.
    pub revision: String,
    /// Where the source lives (never guessed: "unknown" when nothing says).
    pub source: String,
    /// Seconds since 1970 used for every mtime and for `created`.
    pub epoch: u64,
}

impl Provenance {
    /// `created` of configs and labels: the epoch in RFC 3339.
    pub fn created(&self) -> Result<String> {
        let seconds = i64::try_from(self.epoch).map_err(|_| Error::Epoch {
            epoch: self.epoch,
            reason: "does not fit a timestamp".to_owned(),
        })?;
        let timestamp = jiff::Timestamp::from_second(seconds).map_err(|e| Error::Epoch {
            epoch: self.epoch,
            reason: e.to_string(),
        })?;
        Ok(timestamp.to_string())
    }
}

/// Fills what the caller did not give from the git checkout at `repo`:
/// - revision: `git rev-parse HEAD`, with `-dirty` when tracked files differ from it;
/// - source: `git remote get-url origin`, else the `repository` of Cargo.toml, else "unknown";
/// - epoch: `git log -1 --format=%ct`, else 0.
pub fn discover(
    repo: &Path,
    version: Option<String>,
    source: Option<String>,
    epoch: Option<u64>,
) -> Provenance {
    let revision = match git(repo, &["rev-parse", "HEAD"]) {
        Some(head) => {
            let dirty = git(repo, &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{head}-dirty") } else { head }
        }
        None => "unknown".to_owned(),
    };
    let source = source
        .or_else(|| git(repo, &["remote", "get-url", "origin"]))
        .or_else(|| Some(env!("CARGO_PKG_REPOSITORY").to_owned()).filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    let epoch = epoch
        .or_else(|| git(repo, &["log", "-1", "--format=%ct"]).and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    Provenance {
        version: version.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        revision,
        source,
        epoch,
    }
}

/// Trimmed stdout of a successful git command, `None` otherwise (no git, no checkout, no
/// such remote).
fn git(repo: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        tracing::debug!(
            ?args,
            "git failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
