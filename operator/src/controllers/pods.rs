//! Pods: a bound pod without a PodNetwork is allocated one (see `allocation`); the
//! PodNetwork of a pod that is gone is deleted (its finalizer then cools the unit down).
//! Both run per pod uid on one runner, so they never race for the same pod.

use std::time::{Duration, Instant};

use eni_crds::PodNetwork;
use futures::{FutureExt, Stream, StreamExt};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Preconditions},
    runtime::{reflector::ObjectRef, watcher},
};
use tracing::{debug, warn};

use crate::{
    context::Ctx,
    keyed::{Failure, Keyed},
    pod_record::PodRecord,
};

use super::allocation::{self, AllocateError};

type Runner = Keyed<String, AllocateError>;

pub async fn run(
    ctx: Ctx,
    events: impl Stream<Item = Result<watcher::Event<PodRecord>, watcher::Error>>,
) {
    // Longer than a pod's wait for a unit, which allocation bounds itself.
    let limit = ctx.config().allocation_timeout + Duration::from_secs(60);
    let runner: Runner = Keyed::new("pod", limit, ctx.metrics().clone());
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(ctx.config().resync);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => on_pod(&ctx, &runner, p),
                Some(Ok(watcher::Event::Delete(p))) => on_pod_deleted(&ctx, &runner, &p),
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "pod watch"),
                None => return,
            },
            _ = tick.tick() => sweep(&ctx, &runner),
        }
    }
}

pub(super) fn has_network(ctx: &Ctx, pod: &PodRecord) -> bool {
    let key = ObjectRef::<PodNetwork>::new(&pod.name).within(&pod.namespace);
    ctx.podnetwork(&key)
        .is_some_and(|pn| *pn.spec.pod_uid == *pod.uid)
}

fn on_pod(ctx: &Ctx, runner: &Runner, pod: PodRecord) {
    if pod.bound_node().is_none() || has_network(ctx, &pod) {
        if pod.deleting {
            on_pod_deleted(ctx, runner, &pod);
        }
        return;
    }
    let uid = pod.uid.to_string();
    // An allocation in flight (or backing off) for this pod is not started again; the
    // next sweep looks once more.
    if runner.is_busy(&uid) {
        return;
    }
    let ctx = ctx.clone();
    runner.schedule(uid, move || {
        async move {
            let started = Instant::now();
            let result = allocation::allocate(&ctx, &pod).await;
            let label = match &result {
                Ok(Some(_)) => "ok",
                Ok(None) => "skipped",
                Err(e) => e.label(),
            };
            ctx.metrics().allocated(label, started.elapsed());
            result.map(drop)
        }
        .boxed()
    });
}

/// The PodNetwork of a deleted pod goes too (there is no garbage collector to rely on);
/// its finalizer then cools the address down.
fn on_pod_deleted(ctx: &Ctx, runner: &Runner, pod: &PodRecord) {
    let key = ObjectRef::<PodNetwork>::new(&pod.name).within(&pod.namespace);
    let Some(pn) = ctx.podnetwork(&key) else {
        return;
    };
    if *pod.uid != *pn.spec.pod_uid || pn.metadata.deletion_timestamp.is_some() {
        return;
    }
    schedule_delete(ctx, runner, (*pn).clone());
}

fn schedule_delete(ctx: &Ctx, runner: &Runner, pn: PodNetwork) {
    let ctx = ctx.clone();
    runner.schedule(pn.spec.pod_uid.clone(), move || {
        async move {
            delete_podnetwork(&ctx, &pn)
                .await
                .map_err(AllocateError::Kube)
        }
        .boxed()
    });
}

pub(super) async fn delete_podnetwork(ctx: &Ctx, pn: &PodNetwork) -> Result<(), kube::Error> {
    let api: Api<PodNetwork> =
        Api::namespaced(ctx.client().clone(), &pn.namespace().unwrap_or_default());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pn.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pn.name_any(), &dp).await {
        Ok(_) => {
            debug!(pod = %pn.name_any(), "PodNetwork of a deleted pod deleted");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Catches what events missed: bound pods without a network, networks without a pod.
fn sweep(ctx: &Ctx, runner: &Runner) {
    let pods = ctx.pods();
    let pns = ctx.podnetworks();
    if pods.is_empty() && pns.is_empty() {
        return;
    }
    for pod in pods {
        on_pod(ctx, runner, (*pod).clone());
    }
    for pn in pns {
        if pn.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let alive = ctx
            .pod(&pn.namespace().unwrap_or_default(), &pn.name_any())
            .is_some_and(|p| *p.uid == *pn.spec.pod_uid);
        if !alive {
            schedule_delete(ctx, runner, (*pn).clone());
        }
    }
}
