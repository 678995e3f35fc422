//! ENIPool status: counts from the nodes' inventories and conditions from their
//! health, written by server-side apply only when something changed.

use std::collections::BTreeMap;

use eni_crds::{AddressCounts, ENIPool, ENIPoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tracing::warn;

use crate::{
    nodes::pool_counts,
    operator::{Ctx, MANAGER},
};

pub async fn run(op: Ctx) {
    let mut last: BTreeMap<String, ENIPoolStatus> = BTreeMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        let nodes = op.loaded_nodes();
        for pool in op.pools.state() {
            let name = pool.name_any();
            let c = pool_counts(&nodes, &name);
            let health: Vec<_> = nodes.iter().map(|n| n.health(&name)).collect();
            let exhausted = health.iter().any(|h| h.subnet_exhausted);
            let throttled = health.iter().any(|h| h.throttled);
            let errors: Vec<String> = health.iter().filter_map(|h| h.last_error.clone()).collect();
            let prev = last.get(&name);
            let cond = |type_: &str, on: bool, reason: &str, message: String| {
                let status = if on { "True" } else { "False" };
                // Keep the transition time while the status stays the same.
                let since = prev
                    .and_then(|p| {
                        p.conditions
                            .iter()
                            .find(|c| c.type_ == type_ && c.status == status)
                    })
                    .map(|c| c.last_transition_time.clone())
                    .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
                Condition {
                    type_: type_.into(),
                    status: status.into(),
                    reason: reason.into(),
                    message,
                    observed_generation: pool.metadata.generation,
                    last_transition_time: since,
                }
            };
            let status = ENIPoolStatus {
                nodes: c["nodes"],
                enis: c["enis"],
                addresses: AddressCounts {
                    total: c["total"],
                    used: c["used"],
                    warm: c["warm"],
                    cooling: c["cooling"],
                },
                conditions: vec![
                    cond(
                        "Ready",
                        errors.is_empty(),
                        if errors.is_empty() {
                            "Converged"
                        } else {
                            "Errors"
                        },
                        errors
                            .first()
                            .cloned()
                            .unwrap_or_else(|| "warm targets met or being met".into()),
                    ),
                    cond(
                        "SubnetExhausted",
                        exhausted,
                        if exhausted {
                            "NoFreeAddresses"
                        } else {
                            "AddressesAvailable"
                        },
                        if exhausted {
                            "no subnet of the pool has free addresses; growth is paused until one does (add a subnet to spec.subnets)".into()
                        } else {
                            "subnets have free addresses".into()
                        },
                    ),
                    cond(
                        "Throttled",
                        throttled,
                        if throttled {
                            "RequestLimitExceeded"
                        } else {
                            "NotThrottled"
                        },
                        if throttled {
                            "the cloud is throttling this pool's calls".into()
                        } else {
                            "no throttling".into()
                        },
                    ),
                ],
                observed_generation: pool.metadata.generation,
            };
            if prev == Some(&status) {
                continue;
            }
            let api: Api<ENIPool> = Api::all(op.client.clone());
            let body = json!({"apiVersion": "eni-operator.io/v1alpha1", "kind": "ENIPool", "status": status});
            match api
                .patch_status(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                Ok(_) => {
                    op.metrics.pool_gauges(&name, &status.addresses);
                    last.insert(name, status);
                }
                Err(e) => warn!(pool = %name, error = %e, "writing pool status"),
            }
        }
    }
}
