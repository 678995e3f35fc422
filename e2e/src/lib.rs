//! The local test bed: a real control plane, vpc-sim, nodes as network namespaces, and
//! the product's binaries as child processes.

pub mod api_relay;
pub mod bed;
pub mod binaries;
pub mod cluster;
pub mod control_plane;
pub mod identities;
pub mod images;
pub mod kubelet;
pub mod mgmt;
pub mod netns;
pub mod node_net;
pub mod process;
pub mod real_bed;
pub mod real_node;
pub mod security_groups;
pub mod traffic;
pub mod trial;
pub mod vpc;

pub use control_plane::{ControlPlane, ControlPlaneError, Options};

use std::path::PathBuf;

/// The repository root (this crate lives in `<root>/e2e`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Picks rustls' process-wide crypto provider. Both ring (kube) and aws-lc-rs (the AWS
/// SDK) are linked, so rustls cannot choose on its own; a second call is a no-op.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
