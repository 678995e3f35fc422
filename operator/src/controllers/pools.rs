//! ENIPools: the operator's finalizer on every pool, the status from the nodes'
//! inventories (written only when it changed), and deletion. A deleted pool drains on
//! its nodes (see `nodes`); its finalizer goes once the cloud holds no ENI of it. The
//! pool's subnets and security groups are looked up in the cloud on every change of its
//! spec and every minute; what the cloud refuses makes the pool `Ready=False` with the
//! reason and a Warning event.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use eni_crds::{ENIPool, ENIPoolStatus};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    cloud::{CloudError, CloudProvider, EniQuery, SubnetQuery},
    context::{Ctx, MANAGER},
    engine::{
        inventory::PoolCounts,
        references::{Found, Lookup, Problem, judge},
        selector,
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

/// How often a pool's references are looked up again while its spec stays the same.
const RECHECK: Duration = Duration::from_secs(60);

/// The last look-up of a pool's subnets and security groups.
struct Checked {
    generation: Option<i64>,
    at: Instant,
    problems: Vec<Problem>,
}

type Checks = Arc<Mutex<BTreeMap<String, Checked>>>;

pub async fn run(ctx: Ctx) {
    let runner: Keyed<String, PoolError> = Keyed::new(
        "pool_status",
        Duration::from_secs(60),
        ctx.metrics().clone(),
    );
    let written: Written = Arc::default();
    let checks: Checks = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        for pool in ctx.pools() {
            let (ctx, written, checks) = (ctx.clone(), written.clone(), checks.clone());
            runner.schedule(pool.name_any(), move || {
                async move { reconcile(&ctx, &pool, &written, &checks).await }.boxed()
            });
        }
    }
}

async fn reconcile(
    ctx: &Ctx,
    pool: &ENIPool,
    written: &Written,
    checks: &Checks,
) -> Result<(), PoolError> {
    let name = pool.name_any();
    let api: Api<ENIPool> = Api::all(ctx.client().clone());
    let deleting = pool.metadata.deletion_timestamp.is_some();
    if !deleting {
        finalizer::add(&api, pool).await?;
    }
    let problems = if deleting {
        Vec::new()
    } else {
        problems(ctx, pool, checks).await
    };
    let selected_nodes = ctx
        .k8s_nodes()
        .iter()
        .filter(|n| selector::matches(&pool.spec.node_selector, n.labels()))
        .count() as u32;
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
        problems: &problems,
        selected_nodes,
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

fn lock<T>(w: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pool's reference problems: looked up again when its spec changed or the last
/// look-up is a minute old, else the last answer. A look-up the cloud fails (throttled,
/// unavailable) keeps the last answer. New problems are announced with an event.
async fn problems(ctx: &Ctx, pool: &ENIPool, checks: &Checks) -> Vec<Problem> {
    let name = pool.name_any();
    let generation = pool.metadata.generation;
    let previous = lock(checks)
        .get(&name)
        .filter(|c| c.generation == generation && c.at.elapsed() < RECHECK)
        .map(|c| c.problems.clone());
    if let Some(problems) = previous {
        return problems;
    }
    let vpcs: BTreeSet<String> = ctx
        .loaded_nodes()
        .iter()
        .map(|n| n.instance.vpc_id.clone())
        .collect();
    let problems = match look_up(ctx.provider(), pool).await {
        Ok(lookup) => judge(&lookup, &vpcs),
        Err(e) => {
            warn!(pool = %name, error = %e, "looking up the pool's subnets and security groups");
            return lock(checks)
                .get(&name)
                .map(|c| c.problems.clone())
                .unwrap_or_default();
        }
    };
    let before = lock(checks).insert(
        name.clone(),
        Checked {
            generation,
            at: Instant::now(),
            problems: problems.clone(),
        },
    );
    let known: Vec<&Problem> = before
        .as_ref()
        .map(|c| c.problems.iter().collect())
        .unwrap_or_default();
    for problem in problems.iter().filter(|p| !known.contains(p)) {
        warn!(pool = %name, reason = problem.reason, message = %problem.message, "pool refers to what the cloud does not have");
        let event = Event {
            type_: EventType::Warning,
            reason: problem.reason.into(),
            note: Some(problem.message.clone()),
            action: "CheckReferences".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder().publish(&event, &pool.object_ref(&())).await {
            warn!(error = %e, "publishing event");
        }
    }
    problems
}

/// What the cloud says about the pool's subnets and security groups.
async fn look_up(provider: &dyn CloudProvider, pool: &ENIPool) -> Result<Lookup, CloudError> {
    let subnets = &pool.spec.subnets;
    let tagged = if subnets.tags.is_empty() {
        None
    } else {
        let query = SubnetQuery::Tagged(subnets.tags.clone());
        Some(provider.describe_subnets(&query).await?.len())
    };
    Ok(Lookup {
        subnets: each(&subnets.ids, |ids| async move {
            let query = SubnetQuery::Ids(ids);
            Ok(provider
                .describe_subnets(&query)
                .await?
                .into_iter()
                .map(|s| (s.id, s.vpc_id))
                .collect())
        })
        .await?,
        tagged,
        groups: each(&pool.spec.security_groups, |ids| async move {
            Ok(provider
                .describe_security_groups(&ids)
                .await?
                .into_iter()
                .map(|g| (g.id, g.vpc_id))
                .collect())
        })
        .await?,
    })
}

/// `(id, vpc)` of each of `ids` through `describe`. One call for all; when the cloud
/// says one is missing (it names only the first), one call per id finds which.
async fn each<F, Fut>(ids: &[String], describe: F) -> Result<Vec<(String, Found)>, CloudError>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(String, String)>, CloudError>>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found_in = |found: &[(String, String)], id: &str| {
        found
            .iter()
            .find(|(f, _)| f == id)
            .map_or(Found::Missing, |(_, vpc)| Found::In(vpc.clone()))
    };
    match describe(ids.to_vec()).await {
        Ok(found) => Ok(ids
            .iter()
            .map(|id| (id.clone(), found_in(&found, id)))
            .collect()),
        Err(CloudError::NotFound { .. }) => {
            let mut out = Vec::new();
            for id in ids {
                let one = match describe(vec![id.clone()]).await {
                    Ok(found) => found_in(&found, id),
                    Err(CloudError::NotFound { .. }) => Found::Missing,
                    Err(e) => return Err(e),
                };
                out.push((id.clone(), one));
            }
            Ok(out)
        }
        Err(e) => Err(e),
    }
}
