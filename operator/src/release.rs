//! Release: a deleted PodNetwork's unit cools down (or, for a StatefulSet pod of a sticky
//! pool, stays reserved for the pod's successor), returns to the warm pool, and only then
//! does the finalizer go. The hold is measured from the PodNetwork's deletionTimestamp,
//! so a restarted operator resumes it where it was.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use eni_crds::PodNetwork;
use futures::{Stream, StreamExt};
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, ResourceExt,
    runtime::{reflector::ObjectRef, watcher},
};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, warn};

use crate::{
    finalizer,
    inventory::PodKey,
    operator::Ctx,
    settings::PoolSettings,
    sticky::{self, Successor},
};

/// A release waiting for its deadline; the deadline moves when the hold changes (the
/// pod came back on another node, the pool changed, the PodNetwork went away).
struct Timer {
    deadline: watch::Sender<tokio::time::Instant>,
    task: JoinHandle<()>,
}

type Timers = Arc<Mutex<BTreeMap<String, Timer>>>;

pub async fn run(
    op: Ctx,
    events: impl Stream<Item = Result<watcher::Event<PodNetwork>, watcher::Error>>,
) {
    let timers: Timers = Arc::default();
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(op.config.resync);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(pn) | watcher::Event::InitApply(pn))) => on_change(&op, &timers, pn),
                Some(Ok(watcher::Event::Delete(pn))) => on_gone(&timers, &pn),
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "podnetwork watch"),
                None => return,
            },
            _ = tick.tick() => {
                for pn in op.podnetworks.state() {
                    if pn.metadata.deletion_timestamp.is_some() {
                        on_change(&op, &timers, (*pn).clone());
                    }
                }
            }
        }
    }
}

fn pod_key(pn: &PodNetwork) -> PodKey {
    PodKey {
        namespace: pn.namespace().unwrap_or_default(),
        name: pn.name_any(),
        uid: pn.spec.pod_uid.clone(),
    }
}

/// Time since the API server stamped `deleted_at` (its clock; the local one only adds).
pub fn since_deletion(deleted_at: &Time) -> Duration {
    Duration::from_secs((unix_now() - deleted_at.0.as_second()).max(0) as u64)
}

/// How long the unit of a deleted PodNetwork stays out of the warm pool.
fn hold(op: &Ctx, pn: &PodNetwork) -> Duration {
    let settings = op.pool_settings();
    let settings = settings.get(&pn.spec.pool);
    let cooldown = settings.map_or(Duration::from_secs(30), |s: &PoolSettings| s.cooldown);
    let stateful = pn
        .labels()
        .get(sticky::STATEFUL_LABEL)
        .is_some_and(|v| v == "true");
    let window = sticky::window(settings.and_then(|s| s.sticky_release_after), stateful);
    let pod = ObjectRef::<Pod>::new(&pn.name_any()).within(&pn.namespace().unwrap_or_default());
    let successor = match op.pods.get(&pod) {
        Some(p) if p.uid().as_deref() != Some(pn.spec.pod_uid.as_str()) => {
            match p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                Some(n) if n == pn.spec.node_name => Successor::SameNode,
                Some(_) => Successor::OtherNode,
                None => Successor::None,
            }
        }
        _ => Successor::None,
    };
    sticky::hold(cooldown, window, successor)
}

fn on_change(op: &Ctx, timers: &Timers, pn: PodNetwork) {
    let node = op.node(&pn.spec.node_name);
    let key = pod_key(&pn);
    let addr = pn.spec.allocation.address;
    let Some(deleted_at) = pn.metadata.deletion_timestamp.clone() else {
        // Live: make sure the inventory agrees (a PodNetwork written before a restart, or
        // by a previous leader).
        if let Some(node) = node
            && !node.claim(&pn.spec.allocation.eni_id, addr, &key, false)
        {
            warn!(pod = %key.name, address = %addr, "PodNetwork holds a unit the inventory gives to another pod");
        }
        return;
    };
    if !finalizer::has(&pn) {
        return;
    }
    let uid = pn.uid().unwrap_or_default();
    let remaining = hold(op, &pn).saturating_sub(since_deletion(&deleted_at));
    let deadline = tokio::time::Instant::now() + remaining;
    let Ok(mut t) = timers.lock() else {
        return;
    };
    if let Some(timer) = t.get(&uid)
        && !timer.task.is_finished()
    {
        // Deadlines come from whole seconds: move only on a real change.
        timer.deadline.send_if_modified(|d| {
            let gap = if *d > deadline {
                *d - deadline
            } else {
                deadline - *d
            };
            let moved = gap > Duration::from_secs(1);
            if moved {
                *d = deadline;
            }
            moved
        });
        return;
    }
    if let Some(node) = &node {
        node.claim(&pn.spec.allocation.eni_id, addr, &key, true);
    }
    let (tx, mut rx) = watch::channel(deadline);
    let (op, timers_c) = (op.clone(), timers.clone());
    let task = tokio::spawn(async move {
        loop {
            let until = *rx.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                changed = rx.changed() => if changed.is_err() { break },
            }
        }
        let started = Instant::now();
        let result = finish(&op, &pn).await;
        op.metrics.reconciled(
            "release",
            result.as_ref().err().map(|_| "kube"),
            started.elapsed(),
        );
        if let Err(e) = result {
            warn!(pod = %pn.name_any(), error = %e, "finishing release; retried on resync");
        }
        if let Ok(mut t) = timers_c.lock() {
            t.remove(&pn.uid().unwrap_or_default());
        }
    });
    t.insert(uid, Timer { deadline: tx, task });
}

/// The PodNetwork is gone (its finalizer removed: by a sticky hand-over, or by hand):
/// whatever it still reserved is settled now rather than at its deadline.
fn on_gone(timers: &Timers, pn: &PodNetwork) {
    if let Ok(t) = timers.lock()
        && let Some(timer) = t.get(&pn.uid().unwrap_or_default())
    {
        timer.deadline.send_replace(tokio::time::Instant::now());
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn finish(op: &Ctx, pn: &PodNetwork) -> Result<(), kube::Error> {
    if let Some(node) = op.node(&pn.spec.node_name) {
        // Only the unit this pod holds goes back (free() matches the pod's uid).
        node.free(&pn.spec.pod_uid);
        node.kick.notify_one();
    }
    let api: Api<PodNetwork> =
        Api::namespaced(op.client.clone(), &pn.namespace().unwrap_or_default());
    // Re-read: the finalizer patch must carry the current resourceVersion.
    if let Some(current) = api.get_opt(&pn.name_any()).await?
        && current.uid() == pn.uid()
    {
        finalizer::remove(&api, &current).await?;
        debug!(pod = %pn.name_any(), "released");
    }
    Ok(())
}
