//! `images.json`: what a build wrote, for scripts and tests to find the layout tars.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, io_error};

pub const FILE_NAME: &str = "images.json";

/// One built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// Local reference (`localhost/<name>:<tag>`), the name containerd imports it as.
    pub reference: String,
    /// Manifest digest.
    pub digest: String,
    /// Absolute path of the OCI layout tar.
    pub layout_tar: PathBuf,
    /// Compressed layers plus config, in bytes.
    pub compressed_size: u64,
    /// Where it was pushed, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<String>,
}

/// Reads `<dir>/images.json`; empty when absent.
pub fn read(dir: &Path) -> Result<Vec<Record>> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error("reading", path)(e)),
    }
}

/// Adds `records` to `<dir>/images.json`, replacing entries of the same name, so the
/// product and the test images can share a directory. Entries whose tar is gone are
/// dropped.
pub fn update(dir: &Path, records: &[Record]) -> Result<Vec<Record>> {
    let mut by_name: BTreeMap<String, Record> = read(dir)?
        .into_iter()
        .filter(|r| r.layout_tar.exists())
        .map(|r| (r.name.clone(), r))
        .collect();
    for record in records {
        by_name.insert(record.name.clone(), record.clone());
    }
    let merged: Vec<Record> = by_name.into_values().collect();
    let path = dir.join(FILE_NAME);
    let mut json = serde_json::to_vec_pretty(&merged)?;
    json.push(b'\n');
    std::fs::write(&path, json).map_err(io_error("writing", path))?;
    Ok(merged)
}
