//! The collector: ENIs this cluster owns that are unattached and in no node's inventory
//! for longer than the grace period are deleted. Only ENIs carrying this cluster's
//! ownership tag are ever looked at.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    cloud::{CloudError, Eni, EniQuery, EniStatus},
    context::Ctx,
    keyed::Failure,
};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("listing owned ENIs: {0}")]
    List(#[source] CloudError),
}

impl Failure for GcError {
    fn label(&self) -> &'static str {
        match self {
            GcError::List(e) => e.kind(),
        }
    }
}

pub async fn run(ctx: Ctx) {
    // First time each candidate was seen unreferenced: a restart starts the clock again,
    // which only ever delays a deletion.
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(ctx.config().gc_interval);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let result = collect(&ctx, &mut first_seen).await;
        ctx.metrics().reconciled(
            "gc",
            result.as_ref().err().map(GcError::label),
            started.elapsed(),
        );
        match result {
            Ok(n) if n > 0 => info!(deleted = n, "collected leaked ENIs"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "collection"),
        }
    }
}

/// Owned ENIs nobody uses: unattached (members are "available" while associated, but the
/// inventory references every live one) and in no inventory. That includes a trunk ENI
/// created but never attached (a leader lost between the create and the attach): no
/// node takes it as its trunk, so nobody else would ever delete it.
fn candidates(owned: &[Eni], referenced: &BTreeSet<String>) -> BTreeSet<String> {
    owned
        .iter()
        .filter(|e| e.attachment.is_none() && e.status == EniStatus::Available)
        .filter(|e| !referenced.contains(&e.id))
        .map(|e| e.id.clone())
        .collect()
}

/// Remembers when each candidate was first seen (forgetting the others) and returns
/// those unreferenced for `grace` at `now`.
fn due(
    first_seen: &mut BTreeMap<String, Instant>,
    candidates: &BTreeSet<String>,
    now: Instant,
    grace: Duration,
) -> Vec<String> {
    first_seen.retain(|id, _| candidates.contains(id));
    for id in candidates {
        first_seen.entry(id.clone()).or_insert(now);
    }
    first_seen
        .iter()
        .filter(|(_, seen)| now.duration_since(**seen) >= grace)
        .map(|(id, _)| id.clone())
        .collect()
}

async fn collect(ctx: &Ctx, first_seen: &mut BTreeMap<String, Instant>) -> Result<usize, GcError> {
    let owned = ctx
        .provider()
        .list_enis(&EniQuery::owned())
        .await
        .map_err(GcError::List)?;
    let referenced: BTreeSet<String> = ctx
        .loaded_nodes()
        .iter()
        .flat_map(|n| n.read(|inv| inv.eni_ids().map(str::to_owned).collect::<Vec<_>>()))
        .collect();
    let now = Instant::now();
    let mut deleted = 0;
    for id in due(
        first_seen,
        &candidates(&owned, &referenced),
        now,
        ctx.config().gc_grace,
    ) {
        match ctx.provider().delete_eni(&id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {
                deleted += 1;
                first_seen.remove(&id);
                ctx.metrics().collected();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Attachment, EniKind};

    fn eni(id: &str, kind: EniKind, status: EniStatus, attached: bool) -> Eni {
        Eni {
            id: id.into(),
            mac: String::new(),
            kind,
            status,
            subnet_id: "s".into(),
            vpc_id: "v".into(),
            availability_zone: "az".into(),
            description: String::new(),
            primary_ip: None,
            secondary_ips: Vec::new(),
            prefixes: Vec::new(),
            security_groups: Vec::new(),
            attachment: attached.then(|| Attachment {
                id: "att".into(),
                instance_id: "i-1".into(),
                device_index: 1,
                status: "attached".into(),
            }),
            tags: Default::default(),
        }
    }

    #[test]
    fn only_unattached_unreferenced_enis_are_candidates() {
        let owned = [
            eni("eni-leak", EniKind::Standard, EniStatus::Available, false),
            eni("eni-attached", EniKind::Standard, EniStatus::InUse, true),
            eni("eni-trunk", EniKind::Trunk, EniStatus::InUse, true),
            eni(
                "eni-trunk-never-attached",
                EniKind::Trunk,
                EniStatus::Available,
                false,
            ),
            eni("eni-member", EniKind::Branch, EniStatus::Available, false),
            eni(
                "eni-orphan-member",
                EniKind::Branch,
                EniStatus::Available,
                false,
            ),
        ];
        let referenced = BTreeSet::from(["eni-member".to_owned()]);
        let got = candidates(&owned, &referenced);
        assert_eq!(
            got,
            BTreeSet::from([
                "eni-leak".to_owned(),
                "eni-orphan-member".to_owned(),
                "eni-trunk-never-attached".to_owned()
            ])
        );
    }

    #[test]
    fn deleted_only_after_the_grace_period_unreferenced() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        let mut seen = BTreeMap::new();
        let c = BTreeSet::from(["a".to_owned(), "b".to_owned()]);
        assert!(due(&mut seen, &c, t0, grace).is_empty());
        // b got referenced (or attached) meanwhile: its clock is dropped.
        let c2 = BTreeSet::from(["a".to_owned()]);
        assert_eq!(due(&mut seen, &c2, t0 + grace, grace), ["a"]);
        assert!(!seen.contains_key("b"));
        assert!(due(&mut seen, &c, t0 + grace, grace).contains(&"a".to_owned()));
        assert!(
            !due(&mut seen, &c, t0 + grace, grace).contains(&"b".to_owned()),
            "b starts over"
        );
    }
}
