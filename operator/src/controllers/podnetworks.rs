//! Release: a deleted PodNetwork's unit cools down (or, for a StatefulSet pod of a sticky
//! pool, stays reserved for the pod's successor), returns to the warm pool, and only then
//! does the finalizer go. The hold is measured from the PodNetwork's deletionTimestamp,
//! so a restarted operator resumes it where it was. Each release is a job of the keyed
//! runner, due at the end of its hold; a changed hold moves it.

use std::time::Duration;

use eni_crds::{PodNetwork, contract::STATEFUL_LABEL};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt, runtime::watcher};
use tracing::{debug, warn};

use crate::{
    context::Ctx,
    engine::{
        eni::PodKey,
        settings::PoolSettings,
        sticky::{self, Successor},
    },
    finalizer,
    keyed::{Failure, Keyed},
};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

impl Failure for ReleaseError {
    fn label(&self) -> &'static str {
        match self {
            ReleaseError::Kube(_) => "kube",
        }
    }
}

type Runner = Keyed<String, ReleaseError>;

pub async fn run(
    ctx: Ctx,
    events: impl Stream<Item = Result<watcher::Event<PodNetwork>, watcher::Error>>,
) {
    let runner: Runner = Keyed::new("release", Duration::from_secs(60), ctx.metrics().clone());
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(ctx.config().resync);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(pn) | watcher::Event::InitApply(pn))) => on_change(&ctx, &runner, pn),
                // Gone (its finalizer removed: by a sticky hand-over, or by hand): what it
                // still reserved is settled now rather than at its deadline.
                Some(Ok(watcher::Event::Delete(pn))) => runner.run_now(&pn.uid().unwrap_or_default()),
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "podnetwork watch"),
                None => return,
            },
            _ = tick.tick() => {
                for pn in ctx.podnetworks() {
                    if pn.metadata.deletion_timestamp.is_some() {
                        on_change(&ctx, &runner, (*pn).clone());
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

/// How long the unit of a deleted PodNetwork stays out of the warm pool.
fn hold(ctx: &Ctx, pn: &PodNetwork) -> Duration {
    let settings = ctx.settings_of(&pn.spec.pool);
    let settings = settings.as_ref();
    let cooldown = settings.map_or(Duration::from_secs(30), |s: &PoolSettings| s.cooldown);
    let stateful = pn.labels().get(STATEFUL_LABEL).is_some_and(|v| v == "true");
    let window = sticky::window(settings.and_then(|s| s.sticky_release_after), stateful);
    let successor = match ctx.pod(&pn.namespace().unwrap_or_default(), &pn.name_any()) {
        Some(p) if *p.uid != *pn.spec.pod_uid => match p.node.as_deref() {
            Some(n) if n == pn.spec.node_name => Successor::SameNode,
            Some(_) => Successor::OtherNode,
            None => Successor::None,
        },
        _ => Successor::None,
    };
    sticky::hold(cooldown, window, successor)
}

fn on_change(ctx: &Ctx, runner: &Runner, pn: PodNetwork) {
    let node = ctx.node(&pn.spec.node_name);
    let key = pod_key(&pn);
    let addr = pn.spec.allocation.address;
    let eni = &pn.spec.allocation.eni_id;
    let Some(deleted_at) = pn.metadata.deletion_timestamp.clone() else {
        // Live: make sure the inventory agrees (a PodNetwork written before a restart, or
        // by a previous leader).
        if let Some(node) = node
            && !node.claim(eni, addr, &key, false)
        {
            warn!(pod = %key.name, address = %addr, "PodNetwork holds a unit the inventory gives to another pod");
        }
        return;
    };
    if !finalizer::has(&pn) {
        return;
    }
    if let Some(node) = &node {
        node.claim(eni, addr, &key, true);
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let remaining = hold(ctx, &pn).saturating_sub(sticky::since_deletion(&deleted_at, &now));
    let due = tokio::time::Instant::now() + remaining;
    let ctx = ctx.clone();
    runner.schedule_at(pn.uid().unwrap_or_default(), due, move || {
        async move { finish(&ctx, &pn).await }.boxed()
    });
}

/// The finalizer goes first, the unit second: while the PodNetwork exists it names the
/// unit, so freeing the unit earlier would let a new pod's PodNetwork name it too (a
/// failed finalizer patch, retried with backoff, kept that window open for seconds). A
/// crash in between loses nothing: a new leader sees no PodNetwork and the unit as free.
async fn finish(ctx: &Ctx, pn: &PodNetwork) -> Result<(), ReleaseError> {
    let api: Api<PodNetwork> =
        Api::namespaced(ctx.client().clone(), &pn.namespace().unwrap_or_default());
    // Re-read: the finalizer patch must carry the current resourceVersion.
    if let Some(current) = api.get_opt(&pn.name_any()).await?
        && current.uid() == pn.uid()
    {
        finalizer::remove(&api, &current).await?;
        debug!(pod = %pn.name_any(), "released");
    }
    if let Some(node) = ctx.node(&pn.spec.node_name) {
        // Only the unit this pod holds goes back (free() matches the pod's uid).
        node.free(&pn.spec.pod_uid);
        node.kick.notify_one();
    }
    Ok(())
}
