//! The collector: ENIs this cluster owns that are unattached and in no node's inventory
//! for longer than the grace period are deleted. Only ENIs carrying this cluster's
//! ownership tag are ever looked at.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use tracing::{info, warn};

use crate::{
    cloud::{CloudError, EniKind, EniQuery, EniStatus},
    operator::Ctx,
};

pub async fn run(op: Ctx) {
    // First time each candidate was seen unreferenced: a restart starts the clock again,
    // which only ever delays a deletion.
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(op.config.gc_interval);
    loop {
        tick.tick().await;
        match collect(&op, &mut first_seen).await {
            Ok(n) if n > 0 => info!(deleted = n, "collected leaked ENIs"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "collection"),
        }
    }
}

async fn collect(
    op: &Ctx,
    first_seen: &mut BTreeMap<String, Instant>,
) -> Result<usize, CloudError> {
    let owned = op.cloud.list_enis(&EniQuery::owned()).await?;
    let referenced: BTreeSet<String> = op
        .loaded_nodes()
        .iter()
        .flat_map(|n| n.inventory().enis.into_keys())
        .collect();
    let now = Instant::now();
    let mut candidates = BTreeSet::new();
    for eni in &owned {
        // Members are "available" while associated; the trunk association is what
        // attaches them, and the node inventory references every live one.
        let unattached = eni.attachment.is_none() && eni.status == EniStatus::Available;
        let candidate =
            unattached && !referenced.contains(&eni.id) && !(eni.kind == EniKind::Trunk);
        if candidate {
            candidates.insert(eni.id.clone());
            first_seen.entry(eni.id.clone()).or_insert(now);
        }
    }
    first_seen.retain(|id, _| candidates.contains(id));
    let mut deleted = 0;
    for (id, seen) in first_seen.clone() {
        if now.duration_since(seen) < op.config.gc_grace {
            continue;
        }
        match op.cloud.delete_eni(&id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {
                deleted += 1;
                first_seen.remove(&id);
                op.metrics.collected();
                info!(eni = %id, "deleted leaked ENI");
            }
            // Attached meanwhile (someone is using it after all): look again next time.
            Err(CloudError::InvalidState { .. }) => {
                first_seen.remove(&id);
            }
            Err(e) => warn!(eni = %id, error = %e, "deleting leaked ENI"),
        }
    }
    Ok(deleted)
}
