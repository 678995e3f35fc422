//! ENIPools: the operator's finalizer on every pool, the status from the nodes'
//! inventories (written only when it changed), and deletion. A deleted pool drains on
//! its nodes (see `nodes`); its finalizer goes once the cloud holds no ENI of it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use eni_crds::{ENIPool, ENIPoolStatus};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tracing::info;

use crate::{
    cloud::{CloudError, EniQuery},
    context::{Ctx, MANAGER},
    engine::{
        inventory::PoolCounts,
        status::{StatusInput, pool_status},
    },
    finalizer,
    keyed::{Failure, Keyed},
};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("listing the pool's ENIs: {0}")]
    Cloud(#[from] CloudError),
}

impl Failure for PoolError {
    fn label(&self) -> &'static str {
        match self {
            PoolError::Kube(_) => "kube",
            PoolError::Cloud(e) => e.kind(),
        }
    }
}

/// The status last written per pool: nothing is written while it stays the same.
type Written = Arc<Mutex<BTreeMap<String, ENIPoolStatus>>>;

pub async fn run(ctx: Ctx) {
    let runner: Keyed<String, PoolError> = Keyed::new(
        "pool_status",
        Duration::from_secs(60),
        ctx.metrics().clone(),
    );
    let written: Written = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        for pool in ctx.pools() {
            let (ctx, written) = (ctx.clone(), written.clone());
            runner.schedule(pool.name_any(), move || {
                async move { reconcile(&ctx, &pool, &written).await }.boxed()
            });
        }
    }
}

async fn reconcile(ctx: &Ctx, pool: &ENIPool, written: &Written) -> Result<(), PoolError> {
    let name = pool.name_any();
    let api: Api<ENIPool> = Api::all(ctx.client().clone());
    let deleting = pool.metadata.deletion_timestamp.is_some();
    if !deleting {
        finalizer::add(&api, pool).await?;
    }
    let nodes = ctx.loaded_nodes();
    let mut counts = PoolCounts::default();
    let mut holding = 0;
    for n in &nodes {
        let c = n.counts(&name);
        if c.enis > 0 {
            holding += 1;
        }
        counts.add(&c);
    }
    if deleting {
        // Drain now rather than at the nodes' next resync.
        for n in nodes.iter().filter(|n| n.counts(&name).enis > 0) {
            n.kick.notify_one();
        }
    }
    let health: Vec<_> = nodes.iter().map(|n| n.health(&name)).collect();
    let previous = lock(written)
        .get(&name)
        .cloned()
        .or_else(|| pool.status.clone());
    let status = pool_status(&StatusInput {
        nodes: holding,
        counts,
        health: &health,
        deleting,
        generation: pool.metadata.generation,
        previous: previous.as_ref(),
        now: Time(k8s_openapi::jiff::Timestamp::now()),
    });
    if previous.as_ref() != Some(&status) {
        let body =
            json!({"apiVersion": "eni-operator.io/v1alpha1", "kind": "ENIPool", "status": status});
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        ctx.metrics().pool_gauges(&name, &status);
        lock(written).insert(name.clone(), status);
    }
    if deleting && counts.enis == 0 && finalizer::has(pool) {
        // The inventories hold nothing of it; the cloud decides (an ENI of a node the
        // operator has not loaded, one still detaching).
        let left = ctx
            .provider()
            .list_enis(&EniQuery::Owned {
                pool: Some(name.clone()),
                node: None,
                instance_id: None,
            })
            .await?;
        if left.is_empty() {
            finalizer::remove(&api, pool).await?;
            lock(written).remove(&name);
            info!(pool = %name, "pool drained and deleted");
        }
    }
    Ok(())
}

fn lock(w: &Written) -> std::sync::MutexGuard<'_, BTreeMap<String, ENIPoolStatus>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}
