//! The seam between the agent and the dataplane: the dataplane's own operations and
//! types, as a trait so that the request handling is also tested against an in-memory
//! dataplane (`tests/cni_harness`) on machines without network namespaces.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use crate::dataplane::{
    Dataplane, DataplaneError, KernelFeatures, PodRequest, RecoveredPod, UnwireRequest, WiredPod,
};

/// The dataplane as the agent uses it. Implementations must be idempotent: `wire` twice
/// converges to the same state, `unwire` of something already gone succeeds.
pub trait Wiring: Send + Sync + 'static {
    /// Kernel features this node has or lacks (probed once, at start).
    fn features(&self) -> KernelFeatures;

    fn wire(
        &self,
        request: &PodRequest,
    ) -> impl Future<Output = Result<WiredPod, DataplaneError>> + Send;

    fn unwire(
        &self,
        request: &UnwireRequest,
    ) -> impl Future<Output = Result<(), DataplaneError>> + Send;

    /// What differs from what `wire` left, one line each; empty when all is as wired.
    fn check(
        &self,
        request: &PodRequest,
    ) -> impl Future<Output = Result<Vec<String>, DataplaneError>> + Send;

    /// Removes wiring found in the kernel of every container not in `keep`; returns
    /// what it removed.
    fn gc(
        &self,
        keep: &HashSet<String>,
    ) -> impl Future<Output = Result<Vec<RecoveredPod>, DataplaneError>> + Send;
}

impl Wiring for Dataplane {
    fn features(&self) -> KernelFeatures {
        Dataplane::features(self)
    }

    async fn wire(&self, request: &PodRequest) -> Result<WiredPod, DataplaneError> {
        Dataplane::wire(self, request).await
    }

    async fn unwire(&self, request: &UnwireRequest) -> Result<(), DataplaneError> {
        Dataplane::unwire(self, request).await
    }

    async fn check(&self, request: &PodRequest) -> Result<Vec<String>, DataplaneError> {
        Dataplane::check(self, request).await
    }

    async fn gc(&self, keep: &HashSet<String>) -> Result<Vec<RecoveredPod>, DataplaneError> {
        Dataplane::gc(self, keep).await
    }
}

/// Lets the giver of a dataplane keep a handle to it (tests inspect the one the agent uses).
impl<T: Wiring> Wiring for Arc<T> {
    fn features(&self) -> KernelFeatures {
        T::features(self)
    }

    fn wire(
        &self,
        request: &PodRequest,
    ) -> impl Future<Output = Result<WiredPod, DataplaneError>> + Send {
        T::wire(self, request)
    }

    fn unwire(
        &self,
        request: &UnwireRequest,
    ) -> impl Future<Output = Result<(), DataplaneError>> + Send {
        T::unwire(self, request)
    }

    fn check(
        &self,
        request: &PodRequest,
    ) -> impl Future<Output = Result<Vec<String>, DataplaneError>> + Send {
        T::check(self, request)
    }

    fn gc(
        &self,
        keep: &HashSet<String>,
    ) -> impl Future<Output = Result<Vec<RecoveredPod>, DataplaneError>> + Send {
        T::gc(self, keep)
    }
}
