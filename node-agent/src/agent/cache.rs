//! The in-memory cache of this node's PodNetworks: a kube reflector store plus a signal
//! on every change, so an ADD that arrives before the operator's allocation can wait for
//! it without polling the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eni_crds::PodNetwork;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::Notify;

use crate::protocol::PodRef;

/// Read side, shared by request handlers and the health endpoint.
#[derive(Clone)]
pub struct PodNetworkCache {
    store: Store<PodNetwork>,
    changed: Arc<Notify>,
    synced: Arc<AtomicBool>,
}

/// Write side, fed by the watcher (or by tests with fixture objects).
pub struct CacheWriter {
    writer: reflector::store::Writer<PodNetwork>,
    changed: Arc<Notify>,
    synced: Arc<AtomicBool>,
}

/// Why no PodNetwork could be used for a pod.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    #[error(
        "no PodNetwork for pod {pod} after {waited:?}: the operator has not allocated its address yet"
    )]
    NotAllocated { pod: String, waited: Duration },
    #[error(
        "PodNetwork {pod} belongs to pod UID {found}, not {wanted}: the operator has not allocated for this pod yet"
    )]
    OtherPod {
        pod: String,
        found: String,
        wanted: String,
    },
}

pub fn cache() -> (PodNetworkCache, CacheWriter) {
    let (store, writer) = reflector::store();
    let changed = Arc::new(Notify::new());
    let synced = Arc::new(AtomicBool::new(false));
    (
        PodNetworkCache {
            store,
            changed: changed.clone(),
            synced: synced.clone(),
        },
        CacheWriter {
            writer,
            changed,
            synced,
        },
    )
}

impl CacheWriter {
    pub fn apply(&mut self, event: &watcher::Event<PodNetwork>) {
        self.writer.apply_watcher_event(event);
        if matches!(event, watcher::Event::InitDone) {
            self.synced.store(true, Ordering::Release);
        }
        self.changed.notify_waiters();
    }
}

impl PodNetworkCache {
    /// True once the first full list arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.store.state().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodNetwork>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// The PodNetwork of `pod` that is usable now: same UID (when the runtime gave one)
    /// and not being deleted.
    pub fn lookup(&self, pod: &PodRef) -> Result<Arc<PodNetwork>, LookupError> {
        let not_allocated = || LookupError::NotAllocated {
            pod: pod.to_string(),
            waited: Duration::ZERO,
        };
        let pn = self
            .get(&pod.namespace, &pod.name)
            .ok_or_else(not_allocated)?;
        if pn.metadata.deletion_timestamp.is_some() {
            return Err(not_allocated());
        }
        match &pod.uid {
            Some(uid) if *uid != pn.spec.pod_uid => Err(LookupError::OtherPod {
                pod: pod.to_string(),
                found: pn.spec.pod_uid.clone(),
                wanted: uid.clone(),
            }),
            _ => Ok(pn),
        }
    }

    /// Waits up to `timeout` for `pod`'s PodNetwork to appear (or be replaced by the one
    /// for the right UID).
    pub async fn wait_for(
        &self,
        pod: &PodRef,
        timeout: Duration,
    ) -> Result<Arc<PodNetwork>, LookupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a change between the look and the
            // wait is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let last = match self.lookup(pod) {
                Ok(pn) => return Ok(pn),
                Err(e) => e,
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(match last {
                    LookupError::NotAllocated { pod, .. } => LookupError::NotAllocated {
                        pod,
                        waited: timeout,
                    },
                    other => other,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eni_crds::{Allocation, Mac, Mode, PodNetworkSpec};

    fn pn(name: &str, uid: &str) -> PodNetwork {
        let mut pn = PodNetwork::new(
            name,
            PodNetworkSpec {
                pod_uid: uid.into(),
                node_name: "node-a".into(),
                pool: "pool".into(),
                mode: Mode::SharedIp,
                allocation: Allocation {
                    address: "10.0.1.5".parse().unwrap(),
                    prefix_length: 32,
                    gateway: "10.0.1.1".parse().unwrap(),
                    subnet_cidr: "10.0.1.0/24".parse().unwrap(),
                    subnet_id: "subnet-1".into(),
                    eni_id: "eni-1".into(),
                    eni_mac: Mac::new([2, 0, 0, 0, 0, 1]),
                    device_index: 1,
                    ..Allocation::default()
                },
            },
        );
        pn.metadata.namespace = Some("ns".into());
        pn
    }

    fn pod(name: &str, uid: &str) -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: name.into(),
            uid: Some(uid.into()),
        }
    }

    #[tokio::test]
    async fn sync_and_lookup() {
        let (cache, mut writer) = cache();
        assert!(!cache.is_synced());
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(pn("a", "u1")));
        writer.apply(&watcher::Event::InitDone);
        assert!(cache.is_synced());
        assert_eq!(cache.len(), 1);
        assert!(cache.lookup(&pod("a", "u1")).is_ok());
        assert!(matches!(
            cache.lookup(&pod("a", "u2")),
            Err(LookupError::OtherPod { .. })
        ));
        assert!(matches!(
            cache.lookup(&pod("b", "u1")),
            Err(LookupError::NotAllocated { .. })
        ));
    }

    #[tokio::test]
    async fn waits_for_a_late_allocation() {
        let (cache, mut writer) = cache();
        writer.apply(&watcher::Event::InitDone);
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .wait_for(&pod("a", "u1"), Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply(&watcher::Event::Apply(pn("a", "u1")));
        let found = waiter.await.unwrap().unwrap();
        assert_eq!(found.spec.pod_uid, "u1");
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let (cache, mut writer) = cache();
        writer.apply(&watcher::Event::InitDone);
        let err = cache
            .wait_for(&pod("a", "u1"), Duration::from_millis(30))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            LookupError::NotAllocated {
                pod: "ns/a".into(),
                waited: Duration::from_millis(30)
            }
        );
    }
}
