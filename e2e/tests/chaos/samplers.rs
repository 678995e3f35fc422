//! Invariants read continuously while the churn runs, each from its own source: the API
//! server (no unit in two PodNetworks) and the cloud (every PodNetwork's address is on
//! the ENI it names; vpc-sim's own invariants). They stop when `stop` is set.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use eni_crds::{Mode, PodNetwork};
use eni_e2e::{bed::Bed, vpc};
use eni_operator::context::WRITER_ANNOTATION;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

/// What the API-server sampler saw.
#[derive(Debug, Default)]
pub struct ApiSamples {
    pub attempts: u64,
    pub errors: u64,
    /// Lists that came back and were checked.
    pub samples: u64,
    /// Units held by two PodNetworks, each pair once, with when it was seen.
    pub doubles: BTreeMap<(String, String, String), Double>,
}

/// A unit two PodNetworks held at once: who they are and for how long it was seen.
#[derive(Debug)]
pub struct Double {
    /// Seconds into the run of the first and the last list that showed it.
    pub first_seen: f64,
    pub last_seen: f64,
    pub samples: u64,
    /// Each PodNetwork as the first list showed it.
    pub holders: [String; 2],
}

impl std::fmt::Display for Double {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seen {:.1}s..{:.1}s in {} lists; {} | {}",
            self.first_seen, self.last_seen, self.samples, self.holders[0], self.holders[1]
        )
    }
}

impl ApiSamples {
    /// One line per pair, for the failure message.
    pub fn doubles_report(&self) -> Vec<String> {
        self.doubles
            .iter()
            .map(|((unit, a, b), d)| format!("{unit}: {a} and {b}: {d}"))
            .collect()
    }
}

/// What a PodNetwork holds that no other may: its address; a Trunk pod's member ENI and
/// an Exclusive pod's ENI.
fn units(pn: &PodNetwork) -> Vec<String> {
    let a = &pn.spec.allocation;
    let mut units = vec![format!("address {}", a.address)];
    match pn.spec.mode {
        Mode::Exclusive => units.push(format!("ENI {}", a.eni_id)),
        Mode::Trunk => units.push(format!("member ENI {}", a.eni_id)),
        Mode::SharedIp => {}
    }
    units
}

/// A PodNetwork as a failure names it: mode, pool, node, the pod it is for, when it was
/// created, by which operator replica, and whether it is being deleted.
fn describe(pn: &PodNetwork) -> String {
    let meta = &pn.metadata;
    format!(
        "{} {:?} pool {} on {} for pod uid {} (owner {}), created {}, allocated by {}{}",
        pn.name_any(),
        pn.spec.mode,
        pn.spec.pool,
        pn.spec.node_name,
        pn.spec.pod_uid,
        meta.owner_references
            .iter()
            .flatten()
            .map(|o| format!("{}/{}", o.name, o.uid))
            .collect::<Vec<_>>()
            .join(","),
        meta.creation_timestamp
            .as_ref()
            .map_or("?".into(), |t| t.0.to_string()),
        pn.annotations()
            .get(WRITER_ANNOTATION)
            .map_or("?", String::as_str),
        meta.deletion_timestamp
            .as_ref()
            .map_or(String::new(), |t| format!(", deleting since {}", t.0)),
    )
}

/// Records the units held twice in one list of PodNetworks, taken `at` seconds into
/// the run.
pub fn record_doubles(
    pns: &[PodNetwork],
    at: f64,
    seen: &mut BTreeMap<(String, String, String), Double>,
) {
    let mut holder: BTreeMap<String, &PodNetwork> = BTreeMap::new();
    for pn in pns {
        for unit in units(pn) {
            let Some(other) = holder.insert(unit.clone(), pn) else {
                continue;
            };
            let d = seen
                .entry((unit, other.name_any(), pn.name_any()))
                .or_insert_with(|| Double {
                    first_seen: at,
                    last_seen: at,
                    samples: 0,
                    holders: [describe(other), describe(pn)],
                });
            d.last_seen = at;
            d.samples += 1;
        }
    }
}

/// Lists every PodNetwork every 250 ms until `stop`.
pub async fn api(client: Client, stop: &AtomicBool) -> ApiSamples {
    let api: Api<PodNetwork> = Api::all(client);
    let mut seen = ApiSamples::default();
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        seen.attempts += 1;
        match api.list(&Default::default()).await {
            Ok(list) => {
                seen.samples += 1;
                let at = started.elapsed().as_secs_f64();
                record_doubles(&list.items, at, &mut seen.doubles);
            }
            Err(_) => seen.errors += 1,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

/// What the cloud sampler saw.
#[derive(Debug, Default)]
pub struct CloudSamples {
    /// Rounds in which both the PodNetworks and the cloud's state were read.
    pub samples: u64,
    /// PodNetworks whose address was looked up on their ENI.
    pub checked: u64,
    pub violations: Vec<String>,
}

/// The addresses of each ENI in vpc-sim's state dump.
fn addresses_by_eni(state: &Value) -> BTreeMap<String, Vec<String>> {
    vpc::enis_in(state)
        .into_iter()
        .map(|e| {
            let mut held = e.secondary;
            held.push(e.primary_ip);
            (e.id, held)
        })
        .collect()
}

/// Every second until `stop`: the PodNetworks, then the cloud's state. A PodNetwork
/// whose address is not on the ENI it names is a violation if it still exists, the same
/// object and not being deleted, after the state was read (so it existed throughout).
pub async fn cloud(bed: &Bed, stop: &AtomicBool) -> CloudSamples {
    let api: Api<PodNetwork> = Api::all(bed.client.clone());
    let mut seen = CloudSamples::default();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(list) = api.list(&Default::default()).await else {
            continue;
        };
        let Ok(state) = bed.vpc.state().await else {
            continue;
        };
        seen.samples += 1;
        if let Some(found) = state["invariant_violations"].as_array() {
            seen.violations
                .extend(found.iter().map(|v| format!("vpc-sim: {v}")));
        }
        let on_eni = addresses_by_eni(&state);
        for pn in list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            seen.checked += 1;
            let a = &pn.spec.allocation;
            let address = a.address.to_string();
            if on_eni
                .get(&a.eni_id)
                .is_some_and(|held| held.contains(&address))
            {
                continue;
            }
            let Some(namespace) = pn.namespace() else {
                continue;
            };
            let now: Api<PodNetwork> = Api::namespaced(bed.client.clone(), &namespace);
            if let Ok(Some(again)) = now.get_opt(&pn.name_any()).await
                && again.uid() == pn.uid()
                && again.metadata.deletion_timestamp.is_none()
            {
                seen.violations.push(format!(
                    "PodNetwork {namespace}/{}: address {address} is not on {} (it holds {:?})",
                    pn.name_any(),
                    a.eni_id,
                    on_eni.get(&a.eni_id)
                ));
            }
        }
    }
    seen
}
