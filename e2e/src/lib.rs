//! The local test bed: a real control plane, and (in later layers) vpc-sim, nodes as
//! network namespaces, and the product's binaries as child processes.

pub mod binaries;
pub mod control_plane;
pub mod process;

pub use control_plane::{ControlPlane, ControlPlaneError, Identity, Options};

use std::path::PathBuf;

/// The repository root (this crate lives in `<root>/e2e`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
