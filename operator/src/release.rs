//! Release: a deleted PodNetwork's unit cools down, returns to the warm pool, and only
//! then does the finalizer go. The cooldown is measured from the PodNetwork's
//! deletionTimestamp, so a restarted operator resumes it where it was.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use eni_crds::PodNetwork;
use futures::{Stream, StreamExt};
use kube::{Api, ResourceExt, runtime::watcher};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::{finalizer, inventory::PodKey, operator::Ctx, settings::PoolSettings};

type Timers = Arc<Mutex<BTreeMap<String, JoinHandle<()>>>>;

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

fn on_change(op: &Ctx, timers: &Timers, pn: PodNetwork) {
    let node = op.node(&pn.spec.node_name);
    let key = pod_key(&pn);
    let addr = pn.spec.allocation.address.parse::<Ipv4Addr>().ok();
    let Some(deleted_at) = pn.metadata.deletion_timestamp.clone() else {
        // Live: make sure the inventory agrees (a PodNetwork written before a restart, or
        // by a previous leader).
        if let (Some(node), Some(addr)) = (node, addr)
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
    if let Ok(mut t) = timers.lock() {
        if t.get(&uid).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let cooldown = op
            .pool_settings()
            .get(&pn.spec.pool)
            .map(|s: &PoolSettings| s.cooldown)
            .unwrap_or(Duration::from_secs(30));
        if let (Some(node), Some(addr)) = (&node, addr) {
            node.claim(&pn.spec.allocation.eni_id, addr, &key, true);
        }
        // Elapsed since deletion by the API server's clock; the local clock only adds.
        let since = (unix_now() - deleted_at.0.as_second()).max(0) as u64;
        let remaining = cooldown.saturating_sub(Duration::from_secs(since));
        let (op, timers_c) = (op.clone(), timers.clone());
        let handle = tokio::spawn(async move {
            tokio::time::sleep(remaining).await;
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
        t.insert(uid, handle);
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
