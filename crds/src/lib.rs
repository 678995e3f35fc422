//! The `eni-operator.io/v1alpha1` API.
//!
//! Three kinds: [`ENIPool`] (what users write), [`TrunkENI`] (one per trunk-mode node,
//! written by the operator) and [`PodNetwork`] (one per pod: spec by the operator, status
//! by the node agent). Schema rules that a JSON schema alone cannot express are CEL rules
//! on the types, so the API server refuses bad objects with a message a user understands.
//! [`contract`] holds what the operator and the node agent agree on beyond the types.

pub mod contract;
mod enipool;
mod mac;
mod manifest;
mod mode;
mod podnetwork;
mod selector;
mod trunkeni;

pub use contract::FINALIZER;
pub use enipool::{
    AddressCounts, ENIPool, ENIPoolSpec, ENIPoolStatus, StickyIPs, SubnetPolicy, SubnetSelection,
    WarmTargets,
};
pub use mac::{Mac, MacParseError};
pub use manifest::{ManifestError, crd_manifests};
pub use mode::{Datapath, Mode};
pub use podnetwork::{Allocation, PodNetwork, PodNetworkPhase, PodNetworkSpec, PodNetworkStatus};
pub use trunkeni::{MemberState, PodRef, TrunkENI, TrunkENISpec, TrunkENIStatus, TrunkMember};

/// API group of every kind in this crate.
pub const GROUP: &str = "eni-operator.io";
