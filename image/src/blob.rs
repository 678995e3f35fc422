//! Content addressing: digests in the form OCI descriptors use, and the canonical JSON
//! bytes that get digested.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::Result;

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The hex part of a `sha256:<hex>` digest, which names the blob file in a layout.
pub fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// JSON with every object's keys sorted. The oci-spec types keep labels and annotations
/// in HashMaps, whose order changes from run to run; sorting makes the digest depend on
/// the content only.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut value = serde_json::to_value(value)?;
    value.sort_all_objects();
    Ok(serde_json::to_vec(&value)?)
}
