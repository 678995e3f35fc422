//! Which node namespaces a prefix created, on disk so that a crashed run's namespaces
//! are found again even when their names do not start with the prefix.
//!
//! One empty file per namespace in `/run/vpc-sim/<prefix>/` (tmpfs, gone on reboot
//! together with the namespaces themselves). An entry is written before the namespace
//! is created and removed after it is deleted, so a crash in between can only leave an
//! entry for a namespace that does not exist, which deleting handles.

use std::io;
use std::path::PathBuf;

use super::MaterializeError;

const LEDGER_DIR: &str = "/run/vpc-sim";

fn dir(prefix: &str) -> PathBuf {
    PathBuf::from(LEDGER_DIR).join(prefix)
}

pub fn record(prefix: &str, netns: &str) -> Result<(), MaterializeError> {
    let dir = dir(prefix);
    std::fs::create_dir_all(&dir).map_err(|source| error(&dir, source))?;
    let entry = dir.join(netns);
    std::fs::write(&entry, b"").map_err(|source| error(&entry, source))
}

pub fn forget(prefix: &str, netns: &str) -> Result<(), MaterializeError> {
    let entry = dir(prefix).join(netns);
    match std::fs::remove_file(&entry) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(error(&entry, source)),
    }
}

pub fn list(prefix: &str) -> Result<Vec<String>, MaterializeError> {
    let dir = dir(prefix);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(error(&dir, source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| error(&dir, source))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Removes the (empty) ledger directory of a prefix.
pub fn remove(prefix: &str) -> Result<(), MaterializeError> {
    let dir = dir(prefix);
    match std::fs::remove_dir(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(error(&dir, source)),
    }
}

fn error(path: &std::path::Path, source: io::Error) -> MaterializeError {
    MaterializeError::Io {
        context: format!("ledger {}", path.display()),
        source,
    }
}
