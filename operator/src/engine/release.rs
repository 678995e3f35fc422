//! What goes back to the cloud: idle excess (longest free first, past the release
//! delay) and everything that drains (a deleted pool's ENIs, ENIs that no longer fit a
//! changed pool). Pure: the clock comes in as `now`.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use super::{
    eni::{EniRecord, Role, Unit},
    inventory::{Inventory, Taken},
    plan::Op,
    settings::PoolSettings,
};

/// Free units of pool `s` to release: single addresses, whole ENIs (Exclusive/Member)
/// as their primary address, whole prefixes (by their first address) when every
/// address of the prefix is idle (see [`EniRecord::idle_units`]). Taken from the ENIs
/// with the most idle units first, so that few calls give the excess back and an ENI
/// that empties goes whole; on each, longest free first. Only ENIs that serve the pool
/// are considered; the others drain on their own.
pub fn pick_release(inv: &Inventory, s: &PoolSettings, units: u32, now: Instant) -> Vec<Taken> {
    let serving = || {
        inv.pool_enis(&s.name)
            .filter(|e| *e.role() != Role::Trunk && e.serves(s))
    };
    let mut per_eni: Vec<(&EniRecord, Vec<(Instant, Ipv4Addr)>)> = Vec::new();
    for e in serving() {
        let idle: BTreeMap<Ipv4Addr, Instant> =
            e.idle_units(s.release_delay, now).into_iter().collect();
        let mut candidates: Vec<(Instant, Ipv4Addr)> = if e.prefixes().is_empty() {
            idle.iter().map(|(a, since)| (*since, *a)).collect()
        } else {
            e.prefixes()
                .iter()
                .filter(|p| {
                    p.hosts()
                        .chain([p.network(), p.broadcast()])
                        .all(|a| e.unit(a).is_none() || idle.contains_key(&a))
                })
                .map(|p| (now, p.network()))
                .collect()
        };
        if !candidates.is_empty() {
            candidates.sort();
            per_eni.push((e, candidates));
        }
    }
    per_eni.sort_by(|(a, x), (b, y)| y.len().cmp(&x.len()).then_with(|| a.id().cmp(b.id())));
    let per = if serving().any(|e| !e.prefixes().is_empty()) {
        16
    } else {
        1
    };
    per_eni
        .into_iter()
        .flat_map(|(e, candidates)| {
            candidates.into_iter().map(|(_, address)| Taken {
                eni_id: e.id().to_owned(),
                address,
            })
        })
        .take((units / per) as usize)
        .collect()
}

/// ENIs of pool `s` that hold nothing in use, given up so that pods of `others_waiting`
/// other pools get an instance slot when none is left: warm stock yields to pods that
/// wait. None while the pool's own pods wait, and never a trunk (members take no slot).
pub fn yield_slots(
    inv: &Inventory,
    s: &PoolSettings,
    max_enis: u32,
    pending: u32,
    others_waiting: u32,
) -> Vec<Op> {
    if others_waiting == 0 || pending > 0 || inv.free_slots(max_enis) > 0 {
        return Vec::new();
    }
    inv.pool_enis(&s.name)
        .filter(|e| matches!(e.role(), Role::Shared | Role::Exclusive) && e.all_free())
        .take(others_waiting as usize)
        .map(|e| Op::DeleteEni {
            eni_id: e.id().to_owned(),
        })
        .collect()
}

/// The operations that give picked units back: addresses and prefixes per SharedIP ENI
/// (and the ENI itself once that empties it), whole ENIs deleted.
pub fn release_ops(inv: &Inventory, picked: Vec<Taken>) -> Vec<Op> {
    let mut by_eni: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for t in picked {
        by_eni.entry(t.eni_id).or_default().push(t.address);
    }
    let mut ops = Vec::new();
    for (eni_id, units) in by_eni {
        let Some(e) = inv.get(&eni_id) else {
            continue;
        };
        match e.role() {
            // Addresses go back before the ENI that empties: should its delete fail
            // half-way (detached, not deleted), no free unit is left on it for a pod.
            Role::Shared => {
                let empties = covers_all(e, &units);
                ops.push(Op::Release {
                    eni_id: eni_id.clone(),
                    units,
                });
                if empties {
                    ops.push(Op::DeleteEni { eni_id });
                }
            }
            Role::Exclusive | Role::Member { .. } => ops.push(Op::DeleteEni { eni_id }),
            Role::Trunk => {}
        }
    }
    ops
}

/// Whether releasing `units` (addresses, or prefixes by first address) leaves `e` empty.
fn covers_all(e: &EniRecord, units: &[Ipv4Addr]) -> bool {
    if e.prefixes().is_empty() {
        e.units().all(|(a, _)| units.contains(a))
    } else {
        e.prefixes().iter().all(|p| units.contains(&p.network()))
    }
}

/// Draining ENIs: what a pod uses stays; every free unit goes at once (no release
/// delay, no warm target); an ENI goes as soon as nothing on it is in use. A trunk goes
/// last, once no member is left on the node, unless `trunk_pool` (an active trunk pool
/// of the node) takes it over.
pub fn drain<'a>(
    inv: &Inventory,
    draining: impl Iterator<Item = &'a EniRecord>,
    trunk_pool: Option<&str>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut trunk = None;
    for e in draining {
        match e.role() {
            Role::Trunk => trunk = Some(e),
            _ if e.all_free() => ops.push(Op::DeleteEni {
                eni_id: e.id().to_owned(),
            }),
            Role::Shared => {
                let units = free_units(e);
                if !units.is_empty() {
                    ops.push(Op::Release {
                        eni_id: e.id().to_owned(),
                        units,
                    });
                }
            }
            Role::Exclusive | Role::Member { .. } => {}
        }
    }
    if let Some(t) = trunk {
        match trunk_pool {
            Some(pool) => ops.push(Op::AdoptTrunk {
                eni_id: t.id().to_owned(),
                pool: pool.to_owned(),
            }),
            None => {
                let deleted = |id: &str| {
                    ops.iter()
                        .any(|op| matches!(op, Op::DeleteEni { eni_id } if eni_id == id))
                };
                let members_left = inv
                    .enis()
                    .any(|m| matches!(m.role(), Role::Member { .. }) && !deleted(m.id()));
                if !members_left {
                    ops.push(Op::DeleteEni {
                        eni_id: t.id().to_owned(),
                    });
                }
            }
        }
    }
    ops
}

/// The free units of a SharedIP ENI that can go: free addresses, or prefixes whose
/// every address is free.
fn free_units(e: &EniRecord) -> Vec<Ipv4Addr> {
    if e.prefixes().is_empty() {
        return e
            .units()
            .filter(|(_, u)| u.is_free())
            .map(|(a, _)| *a)
            .collect();
    }
    e.prefixes()
        .iter()
        .filter(|p| {
            p.hosts()
                .chain([p.network(), p.broadcast()])
                .all(|a| e.unit(a).is_none_or(Unit::is_free))
        })
        .map(|p| p.network())
        .collect()
}
