//! Allocation: a pod bound to a node gets a unit of its pool from the node's warm
//! inventory and a PodNetwork that records it. A cloud call happens on this path only on
//! a miss (the node's maintenance grows the pool while the pod waits). A pool being
//! deleted is no candidate: its units stay with the pods that have them.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use eni_crds::{
    FINALIZER, PodNetwork, PodNetworkSpec,
    contract::{NODE_LABEL, POOL_LABEL, STATEFUL_LABEL},
};
use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    context::{Ctx, MANAGER, WRITER_ANNOTATION},
    engine::{
        eni::PodKey,
        inventory::Taken,
        outcome::{self, Outcome},
        selector::{self, Candidate},
        settings::PoolSettings,
        sticky,
    },
    finalizer,
    keyed::Failure,
    node::Node,
    pod_record::PodRecord,
};

use super::pods::{delete_podnetwork, has_network};

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

impl Failure for AllocateError {
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
async fn pool_for(ctx: &Ctx, pod: &PodRecord, node: &str) -> Option<PoolSettings> {
    let settings = ctx.pool_settings();
    let pools = ctx.pools();
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
    let node_labels = ctx.node_labels(node).unwrap_or_default();
    let ns_labels = ctx.namespace_labels(&pod.namespace);
    let chosen = selector::choose(&candidates, &node_labels, &pod.labels, &ns_labels).cloned();
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
        if let Err(e) = ctx.recorder().publish(&event, &pod.object_ref()).await {
            warn!(error = %e, "publishing event");
        }
    }
    chosen
}

pub(super) async fn allocate(
    ctx: &Ctx,
    pod: &PodRecord,
) -> Result<Option<PodNetwork>, AllocateError> {
    let Some(node_name) = pod.bound_node() else {
        return Ok(None);
    };
    // Allocated meanwhile (a run scheduled before the PodNetwork reached the cache).
    if has_network(ctx, pod) {
        return Ok(None);
    }
    let Some(settings) = pool_for(ctx, pod, node_name).await else {
        return Ok(None);
    };
    let node = ctx
        .node(node_name)
        .ok_or_else(|| AllocateError::NodeNotReady(node_name.to_owned()))?;
    let key = PodKey {
        namespace: pod.namespace.to_string(),
        name: pod.name.to_string(),
        uid: pod.uid.to_string(),
    };
    let api: Api<PodNetwork> = Api::namespaced(ctx.client().clone(), &key.namespace);
    let taken = match existing(ctx, &api, &key).await? {
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
        Existing::None => match wait_for_unit(ctx, pod, &node, &settings, &key).await? {
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
    if pod.stateful {
        labels.insert(STATEFUL_LABEL.to_owned(), "true".to_owned());
    }
    pn.metadata.labels = Some(labels);
    pn.metadata.annotations =
        Some([(WRITER_ANNOTATION.to_owned(), ctx.config().writer.clone())].into());
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
    if !alive(ctx, pod) {
        node.free(&key.uid);
        return Ok(None);
    }
    let stored = write(ctx, &api, &pn).await;
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

fn alive(ctx: &Ctx, pod: &PodRecord) -> bool {
    ctx.pod(&pod.namespace, &pod.name)
        .is_some_and(|p| p.uid == pod.uid)
}

/// What the API holds under the pod's name.
enum Existing {
    None,
    Own(PodNetwork),
    /// Another pod's (a previous pod of this name; only a deleting one can be taken over).
    Predecessor(PodNetwork),
}

async fn existing(ctx: &Ctx, api: &Api<PodNetwork>, key: &PodKey) -> Result<Existing, kube::Error> {
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
    let current = Api::<Pod>::namespaced(ctx.client().clone(), &key.namespace)
        .get_opt(&key.name)
        .await?
        .and_then(|p| p.metadata.uid);
    if current.as_deref() != Some(key.uid.as_str()) {
        return Ok(Existing::Predecessor(found));
    }
    delete_podnetwork(ctx, &found).await?;
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
        .get(STATEFUL_LABEL)
        .is_some_and(|v| v == "true");
    let window = sticky::window(settings.sticky_release_after, stateful);
    // Another finalizer would keep the old object, and the new write would land on it.
    let only_ours = old.finalizers().iter().all(|f| f == FINALIZER);
    let eligible = sticky::hands_over(
        window,
        sticky::since_deletion(deleted_at, &Time(k8s_openapi::jiff::Timestamp::now())),
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
    ctx: &Ctx,
    pod: &PodRecord,
    node: &Node,
    settings: &PoolSettings,
    key: &PodKey,
) -> Result<Option<Taken>, AllocateError> {
    let deadline = Instant::now() + ctx.config().allocation_timeout;
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
                secs: ctx.config().allocation_timeout.as_secs(),
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), added).await;
        if !alive(ctx, pod) {
            node.forget_pending(&settings.name, &key.uid);
            return Ok(None);
        }
    }
}

/// Writes the PodNetwork (server-side apply). When the answer is lost the write may have
/// landed: the PodNetwork is re-read until the API server answers, and only a definite
/// "not stored" lets the caller free the unit; until then the unit stays claimed.
async fn write(
    ctx: &Ctx,
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
                delay = (delay * 2).min(ctx.config().resync);
            }
        }
    }
}
