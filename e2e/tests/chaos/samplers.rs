//! Invariants read continuously while the churn runs, each from its own source: the API
//! server (no unit in two PodNetworks) and the cloud (every PodNetwork's address is on
//! the ENI it names; vpc-sim's own invariants). They stop when `stop` is set.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use eni_crds::{Mode, PodNetwork};
use eni_e2e::{bed::Bed, vpc};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

/// What the API-server sampler saw.
#[derive(Debug, Default)]
pub struct ApiSamples {
    pub attempts: u64,
    pub errors: u64,
    /// Lists that came back and were checked.
    pub samples: u64,
    /// Units held by two PodNetworks in one list.
    pub doubles: Vec<String>,
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

/// The units held twice in one list of PodNetworks.
pub fn doubles(pns: &[PodNetwork]) -> Vec<String> {
    let mut holder: BTreeMap<String, String> = BTreeMap::new();
    let mut found = Vec::new();
    for pn in pns {
        for unit in units(pn) {
            if let Some(other) = holder.insert(unit.clone(), pn.name_any()) {
                found.push(format!("{unit}: {other} and {}", pn.name_any()));
            }
        }
    }
    found
}

/// Lists every PodNetwork every 250 ms until `stop`.
pub async fn api(client: Client, stop: &AtomicBool) -> ApiSamples {
    let api: Api<PodNetwork> = Api::all(client);
    let mut seen = ApiSamples::default();
    while !stop.load(Ordering::Relaxed) {
        seen.attempts += 1;
        match api.list(&Default::default()).await {
            Ok(list) => {
                seen.samples += 1;
                seen.doubles.extend(doubles(&list.items));
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
