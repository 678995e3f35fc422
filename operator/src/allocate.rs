//! Allocation: a pod bound to a node gets a unit of its pool from the node's warm
//! inventory and a PodNetwork that records it. A cloud call happens on this path only on
//! a miss (the node's maintenance grows the pool while the pod waits).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use eni_crds::{FINALIZER, PodNetwork, PodNetworkSpec};
use futures::{Stream, StreamExt};
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::{
        events::{Event, EventType},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    finalizer,
    inventory::{PodKey, Taken},
    node::Node,
    operator::{Ctx, MANAGER},
    outcome::{self, Outcome},
    release,
    selector::{self, Candidate},
    settings::PoolSettings,
    sticky,
};

pub use eni_crds::contract::{NODE_LABEL, POOL_LABEL};

type InFlight = Arc<Mutex<HashSet<String>>>;

pub async fn run(op: Ctx, events: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>>) {
    let in_flight: InFlight = Arc::default();
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(op.config.resync);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => on_pod(&op, &in_flight, p),
                Some(Ok(watcher::Event::Delete(p))) => on_pod_deleted(&op, &p),
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "pod watch"),
                None => return,
            },
            _ = tick.tick() => sweep(&op, &in_flight),
        }
    }
}

fn bound_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    if matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    spec.node_name.as_deref()
}

fn has_network(op: &Ctx, pod: &Pod) -> bool {
    let key =
        ObjectRef::<PodNetwork>::new(&pod.name_any()).within(&pod.namespace().unwrap_or_default());
    op.podnetworks
        .get(&key)
        .is_some_and(|pn| Some(pn.spec.pod_uid.as_str()) == pod.metadata.uid.as_deref())
}

fn on_pod(op: &Ctx, in_flight: &InFlight, pod: Pod) {
    if bound_node(&pod).is_none() || has_network(op, &pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            on_pod_deleted(op, &pod);
        }
        return;
    }
    let uid = pod.uid().unwrap_or_default();
    if let Ok(mut f) = in_flight.lock()
        && !f.insert(uid.clone())
    {
        return;
    }
    let (op, in_flight) = (op.clone(), in_flight.clone());
    tokio::spawn(async move {
        let started = Instant::now();
        let result = allocate(&op, &pod).await;
        let label = match &result {
            Ok(Some(_)) => "ok",
            Ok(None) => "skipped",
            Err(e) => e.label(),
        };
        op.metrics.allocated(label, started.elapsed());
        if let Err(e) = result {
            warn!(pod = %pod.name_any(), error = %e, "allocation");
        }
        if let Ok(mut f) = in_flight.lock() {
            f.remove(&uid);
        }
    });
}

/// The PodNetwork of a deleted pod goes too (there is no garbage collector to rely on);
/// its finalizer then cools the address down.
fn on_pod_deleted(op: &Ctx, pod: &Pod) {
    let (op, name, ns, uid) = (
        op.clone(),
        pod.name_any(),
        pod.namespace().unwrap_or_default(),
        pod.uid(),
    );
    tokio::spawn(async move {
        let key = ObjectRef::<PodNetwork>::new(&name).within(&ns);
        let Some(pn) = op.podnetworks.get(&key) else {
            return;
        };
        if Some(&pn.spec.pod_uid) != uid.as_ref() || pn.metadata.deletion_timestamp.is_some() {
            return;
        }
        delete_podnetwork(&op, &pn).await;
    });
}

async fn delete_podnetwork(op: &Ctx, pn: &PodNetwork) {
    let api: Api<PodNetwork> =
        Api::namespaced(op.client.clone(), &pn.namespace().unwrap_or_default());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pn.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pn.name_any(), &dp).await {
        Ok(_) => debug!(pod = %pn.name_any(), "PodNetwork of a deleted pod deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => warn!(pod = %pn.name_any(), error = %e, "deleting PodNetwork"),
    }
}

/// Catches what events missed: bound pods without a network, networks without a pod.
fn sweep(op: &Ctx, in_flight: &InFlight) {
    if op.pods.state().is_empty() && op.podnetworks.state().is_empty() {
        return;
    }
    for pod in op.pods.state() {
        on_pod(op, in_flight, (*pod).clone());
    }
    for pn in op.podnetworks.state() {
        if pn.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let key = ObjectRef::<Pod>::new(&pn.name_any()).within(&pn.namespace().unwrap_or_default());
        let alive = op
            .pods
            .get(&key)
            .is_some_and(|p| p.uid().as_deref() == Some(&pn.spec.pod_uid));
        if !alive {
            let (op, pn) = (op.clone(), pn.clone());
            tokio::spawn(async move { delete_podnetwork(&op, &pn).await });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("node {0} is not managed yet (no inventory)")]
    NodeNotReady(String),
    #[error("no unit of pool {pool} became free on {node} within {secs}s")]
    Timeout {
        pool: String,
        node: String,
        secs: u64,
    },
    #[error("pool {0} gave a unit the inventory cannot describe")]
    Inconsistent(String),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

impl AllocateError {
    fn label(&self) -> &'static str {
        match self {
            AllocateError::NodeNotReady(_) => "node_not_ready",
            AllocateError::Timeout { .. } => "timeout",
            AllocateError::Inconsistent(_) => "inconsistent",
            AllocateError::Kube(_) => "kube",
        }
    }
}

/// The pool for a pod on a node, or None (with an event on the pod) when none matches.
async fn pool_for(op: &Ctx, pod: &Pod, node: &str) -> Option<PoolSettings> {
    let settings = op.pool_settings();
    let pools = op.pools.state();
    let candidates: Vec<Candidate> = pools
        .iter()
        .filter_map(|p| {
            Some(Candidate {
                settings: settings.get(&p.name_any())?,
                node_selector: &p.spec.node_selector,
                pod_selector: p.spec.pod_selector.as_ref(),
                namespace_selector: p.spec.namespace_selector.as_ref(),
            })
        })
        .collect();
    let node_labels = op
        .k8s_nodes
        .get(&ObjectRef::new(node))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let ns_labels = op
        .namespaces
        .get(&ObjectRef::new(&pod.namespace().unwrap_or_default()))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let chosen = selector::choose(&candidates, &node_labels, pod.labels(), &ns_labels).cloned();
    if chosen.is_none() {
        let event = Event {
            type_: EventType::Warning,
            reason: "NoENIPool".into(),
            note: Some(format!(
                "no ENIPool selects this pod on node {node}: check the pools' nodeSelector, podSelector and namespaceSelector"
            )),
            action: "Allocate".into(),
            secondary: None,
        };
        if let Err(e) = op.recorder.publish(&event, &pod.object_ref(&())).await {
            warn!(error = %e, "publishing event");
        }
    }
    chosen
}

async fn allocate(op: &Ctx, pod: &Pod) -> Result<Option<PodNetwork>, AllocateError> {
    let Some(node_name) = bound_node(pod) else {
        return Ok(None);
    };
    let Some(settings) = pool_for(op, pod, node_name).await else {
        return Ok(None);
    };
    let node = op
        .node(node_name)
        .ok_or_else(|| AllocateError::NodeNotReady(node_name.to_owned()))?;
    let key = PodKey {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
    };
    let api: Api<PodNetwork> = Api::namespaced(op.client.clone(), &key.namespace);
    let taken = match existing(op, &api, &key).await? {
        // Written already (the cache had not seen it yet).
        Existing::Own(pn) => return Ok(Some(pn)),
        // The PodNetwork of a previous pod of this name is being released: its unit may
        // be reserved for this pod (sticky); otherwise this pod waits for the name (the
        // next sweep retries).
        Existing::Predecessor(old) => match take_over(&api, &node, &old, &key, &settings).await? {
            Some(t) => t,
            None => {
                debug!(pod = %key.name, "previous PodNetwork of this name still present");
                return Ok(None);
            }
        },
        Existing::None => match wait_for_unit(op, pod, &node, &settings, &key).await? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let Some(allocation) = node.allocation(&taken, &settings) else {
        node.free(&key.uid);
        return Err(AllocateError::Inconsistent(settings.name.clone()));
    };
    let mut pn = PodNetwork::new(
        &key.name,
        PodNetworkSpec {
            pod_uid: key.uid.clone(),
            node_name: node_name.to_owned(),
            pool: settings.name.clone(),
            mode: settings.mode,
            allocation,
        },
    );
    pn.metadata.namespace = Some(key.namespace.clone());
    let mut labels: BTreeMap<String, String> = [
        (NODE_LABEL.to_owned(), node_name.to_owned()),
        (POOL_LABEL.to_owned(), settings.name.clone()),
    ]
    .into();
    if sticky::owned_by_statefulset(pod.owner_references()) {
        labels.insert(sticky::STATEFUL_LABEL.to_owned(), "true".to_owned());
    }
    pn.metadata.labels = Some(labels);
    pn.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    pn.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: key.name.clone(),
        uid: key.uid.clone(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }]);
    // Gone while it waited: nothing to write, the unit goes back.
    if !alive(op, pod) {
        node.free(&key.uid);
        return Ok(None);
    }
    let stored = write(op, &api, &pn).await;
    match stored {
        Ok(pn) => {
            info!(pod = %key.name, ns = %key.namespace, node = node_name, pool = %settings.name, address = %taken.address, "allocated");
            node.kick.notify_one();
            Ok(Some(pn))
        }
        Err(e) => {
            node.free(&key.uid);
            Err(e.into())
        }
    }
}

fn alive(op: &Ctx, pod: &Pod) -> bool {
    op.pods
        .get(&ObjectRef::from_obj(pod))
        .is_some_and(|p| p.uid() == pod.uid())
}

/// What the API holds under the pod's name.
enum Existing {
    None,
    Own(PodNetwork),
    /// Another pod's (a previous pod of this name; only a deleting one can be taken over).
    Predecessor(PodNetwork),
}

async fn existing(op: &Ctx, api: &Api<PodNetwork>, key: &PodKey) -> Result<Existing, kube::Error> {
    let Some(found) = api.get_opt(&key.name).await? else {
        return Ok(Existing::None);
    };
    if found.spec.pod_uid == key.uid {
        return Ok(Existing::Own(found));
    }
    if found.metadata.deletion_timestamp.is_some() {
        return Ok(Existing::Predecessor(found));
    }
    // Still live. If this pod is the one the API holds now, the PodNetwork's pod is gone
    // (a name is unique): its release starts now rather than at the next sweep, so this
    // pod can take over or wait it out. A stale event of an older pod deletes nothing.
    let current = Api::<Pod>::namespaced(op.client.clone(), &key.namespace)
        .get_opt(&key.name)
        .await?
        .and_then(|p| p.metadata.uid);
    if current.as_deref() != Some(key.uid.as_str()) {
        return Ok(Existing::Predecessor(found));
    }
    delete_podnetwork(op, &found).await;
    Ok(match api.get_opt(&key.name).await? {
        None => Existing::None,
        Some(pn) if pn.spec.pod_uid == key.uid => Existing::Own(pn),
        Some(pn) => Existing::Predecessor(pn),
    })
}

/// The unit a deleting PodNetwork reserves for its pod's successor, moved to `key`: the
/// old PodNetwork's finalizer goes, and the new one is written with the same address.
async fn take_over(
    api: &Api<PodNetwork>,
    node: &Node,
    old: &PodNetwork,
    key: &PodKey,
    settings: &PoolSettings,
) -> Result<Option<Taken>, kube::Error> {
    let Some(deleted_at) = &old.metadata.deletion_timestamp else {
        return Ok(None);
    };
    let stateful = old
        .labels()
        .get(sticky::STATEFUL_LABEL)
        .is_some_and(|v| v == "true");
    let window = sticky::window(settings.sticky_release_after, stateful);
    // Another finalizer would keep the old object, and the new write would land on it.
    let only_ours = old.finalizers().iter().all(|f| f == FINALIZER);
    let eligible = sticky::hands_over(
        window,
        release::since_deletion(deleted_at),
        old.spec.node_name == node.name,
        old.spec.pool == settings.name,
    );
    let address = old.spec.allocation.address;
    let eni = &old.spec.allocation.eni_id;
    if !only_ours || !eligible || !node.hand_over(eni, address, &old.spec.pod_uid, key, false) {
        return Ok(None);
    }
    if let Err(e) = finalizer::remove(api, old).await {
        // Undone: the reservation stays with the old PodNetwork (if the removal did land,
        // its delete event ends the reservation through the release path).
        let prev = PodKey {
            uid: old.spec.pod_uid.clone(),
            ..key.clone()
        };
        node.hand_over(eni, address, &key.uid, &prev, true);
        return Err(e);
    }
    info!(pod = %key.name, ns = %key.namespace, %address, "sticky address handed to the pod's successor");
    Ok(Some(Taken {
        eni_id: eni.clone(),
        address,
    }))
}

/// A unit from the node's warm inventory, waiting (and raising the node's demand) on a
/// miss. None when the pod went away meanwhile.
async fn wait_for_unit(
    op: &Ctx,
    pod: &Pod,
    node: &Node,
    settings: &PoolSettings,
    key: &PodKey,
) -> Result<Option<Taken>, AllocateError> {
    let deadline = Instant::now() + op.config.allocation_timeout;
    loop {
        // Register interest before looking, so a unit added in between is not missed.
        let added = node.capacity_added.notified();
        if let Some(t) = node.take(settings, key) {
            return Ok(Some(t));
        }
        node.kick.notify_one();
        if Instant::now() > deadline {
            node.forget_pending(&settings.name, &key.uid);
            return Err(AllocateError::Timeout {
                pool: settings.name.clone(),
                node: node.name.clone(),
                secs: op.config.allocation_timeout.as_secs(),
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), added).await;
        if !alive(op, pod) {
            node.forget_pending(&settings.name, &key.uid);
            return Ok(None);
        }
    }
}

/// Writes the PodNetwork (server-side apply). When the answer is lost the write may have
/// landed: the PodNetwork is re-read until the API server answers, and only a definite
/// "not stored" lets the caller free the unit; until then the unit stays claimed.
async fn write(
    op: &Ctx,
    api: &Api<PodNetwork>,
    pn: &PodNetwork,
) -> Result<PodNetwork, kube::Error> {
    let body = serde_json::to_value(pn).map_err(kube::Error::SerdeError)?;
    let body = json!({"apiVersion": "eni-operator.io/v1alpha1", "kind": "PodNetwork", "metadata": body["metadata"], "spec": body["spec"]});
    let name = pn.name_any();
    let err = match api
        .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&body))
        .await
    {
        Ok(stored) => return Ok(stored),
        Err(e) => e,
    };
    if outcome::of_error(&err) != Outcome::Unknown {
        return Err(err);
    }
    warn!(pod = %name, error = %err, "PodNetwork write unanswered; its unit stays claimed until a re-read tells");
    // A first pause lets a write still in flight land before the read.
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::time::sleep(delay).await;
        match api.get_opt(&name).await {
            Ok(found) => {
                return match (
                    outcome::settle(found.as_ref().map(|f| &f.spec), &pn.spec),
                    found,
                ) {
                    (Outcome::Stored, Some(stored)) => {
                        info!(pod = %name, "unanswered PodNetwork write had landed");
                        Ok(stored)
                    }
                    _ => Err(err),
                };
            }
            Err(e) => {
                warn!(pod = %name, error = %e, "re-reading an unanswered PodNetwork write");
                delay = (delay * 2).min(op.config.resync);
            }
        }
    }
}
