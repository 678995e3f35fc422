//! The seam between the agent and the dataplane: what the agent asks of the kernel side.
//!
//! The agent depends on this trait, not on netlink, so its request handling is tested
//! against any implementation and the dataplane module plugs in underneath.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use eni_crds::{Allocation, Mode};
use serde::{Deserialize, Serialize};

use crate::protocol::{PodRef, Route};

/// Everything needed to wire one pod, also kept in the state dir so DEL works after the
/// PodNetwork is gone.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodWiring {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub network: String,
    pub pod: PodRef,
    pub netns: String,
    pub ifname: String,
    pub mode: Mode,
    pub allocation: Allocation,
}

/// A link the wiring created or moved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub mac: Option<String>,
}

/// What the pod got, as wired.
#[derive(Debug, Clone, PartialEq)]
pub struct Wired {
    pub pod_interface: Link,
    /// The host side (veth peer), if the datapath has one.
    pub host_interface: Option<Link>,
    /// Pod address with prefix length, e.g. `10.0.1.5/32`.
    pub address: String,
    /// Next hop the pod's default route uses.
    pub gateway: String,
    pub routes: Vec<Route>,
}

/// What DEL knows about a container: always its id and interface, the wiring when the
/// state dir or the PodNetwork still has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwire {
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<String>,
    pub wiring: Option<PodWiring>,
}

/// A wiring failure, with whether it is the kernel lacking a feature.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WiringError {
    pub message: String,
    /// Set when the node's kernel cannot do what the mode needs; nothing was changed.
    pub unsupported: bool,
}

/// A kernel feature probed at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub available: bool,
}

/// The dataplane as the agent uses it. Implementations must be idempotent: `wire` twice
/// converges to the same state, `unwire` of something already gone succeeds.
pub trait Wiring: Send + Sync + 'static {
    /// Kernel features this node has or lacks (probed once, at start).
    fn features(&self) -> Vec<Feature>;

    /// Why this node cannot wire `mode`/`allocation`, if it cannot.
    fn unsupported(&self, mode: Mode, allocation: &Allocation) -> Option<String>;

    fn wire(&self, wiring: &PodWiring) -> impl Future<Output = Result<Wired, WiringError>> + Send;

    fn unwire(&self, unwire: &Unwire) -> impl Future<Output = Result<(), WiringError>> + Send;

    /// Verifies addresses, routes and rules are still as `wire` left them.
    fn check(&self, wiring: &PodWiring) -> impl Future<Output = Result<(), WiringError>> + Send;

    /// Removes wiring found in the kernel (recognised by its link and rule names) of
    /// every container not in `keep`; returns the container ids removed.
    fn gc(
        &self,
        keep: &HashSet<String>,
    ) -> impl Future<Output = Result<Vec<String>, WiringError>> + Send;
}

/// Lets the giver of a dataplane keep a handle to it (tests inspect the one the agent uses).
impl<T: Wiring> Wiring for Arc<T> {
    fn features(&self) -> Vec<Feature> {
        T::features(self)
    }

    fn unsupported(&self, mode: Mode, allocation: &Allocation) -> Option<String> {
        T::unsupported(self, mode, allocation)
    }

    fn wire(&self, wiring: &PodWiring) -> impl Future<Output = Result<Wired, WiringError>> + Send {
        T::wire(self, wiring)
    }

    fn unwire(&self, unwire: &Unwire) -> impl Future<Output = Result<(), WiringError>> + Send {
        T::unwire(self, unwire)
    }

    fn check(&self, wiring: &PodWiring) -> impl Future<Output = Result<(), WiringError>> + Send {
        T::check(self, wiring)
    }

    fn gc(
        &self,
        keep: &HashSet<String>,
    ) -> impl Future<Output = Result<Vec<String>, WiringError>> + Send {
        T::gc(self, keep)
    }
}
