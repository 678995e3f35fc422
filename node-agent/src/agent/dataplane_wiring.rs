//! The agent's [`Wiring`] seam implemented by the rtnetlink [`Dataplane`].

use std::collections::HashSet;
use std::path::PathBuf;

use eni_crds::{Allocation, Datapath, Mode};

use crate::dataplane::{Dataplane, DataplaneError, PodRequest, UnwireRequest};
use crate::protocol::Route;

use super::wiring::{Feature, Link, PodWiring, Unwire, Wired, Wiring, WiringError};

impl From<DataplaneError> for WiringError {
    fn from(error: DataplaneError) -> Self {
        WiringError {
            unsupported: error.feature_missing().is_some(),
            message: error.to_string(),
        }
    }
}

fn pod_request(wiring: &PodWiring) -> PodRequest {
    PodRequest {
        container_id: wiring.container_id.clone(),
        netns_path: PathBuf::from(&wiring.netns),
        ifname: wiring.ifname.clone(),
        pod_key: wiring.pod.to_string(),
        mode: wiring.mode,
        allocation: wiring.allocation.clone(),
    }
}

impl Wiring for Dataplane {
    fn features(&self) -> Vec<Feature> {
        let features = Dataplane::features(self);
        vec![
            Feature {
                name: "ipvlan".into(),
                available: features.ipvlan,
            },
            Feature {
                name: "vlan".into(),
                available: features.vlan,
            },
        ]
    }

    fn unsupported(&self, mode: Mode, allocation: &Allocation) -> Option<String> {
        // Trunk needs VLAN only when the member ENI does not arrive as its own device,
        // which only wiring can tell; the dataplane reports that case itself.
        let ipvlan = mode == Mode::SharedIp && allocation.datapath == Some(Datapath::IpVlan);
        (ipvlan && !Dataplane::features(self).ipvlan).then(|| {
            "the node's kernel lacks ipvlan, which SharedIP with datapath IPVlan needs; use datapath VethPolicyRouting for this pool".to_string()
        })
    }

    async fn wire(&self, wiring: &PodWiring) -> Result<Wired, WiringError> {
        let wired = Dataplane::wire(self, &pod_request(wiring)).await?;
        Ok(Wired {
            pod_interface: Link {
                name: wired.pod_ifname,
                mac: Some(wired.pod_mac),
            },
            host_interface: Some(Link {
                name: wired.host_ifname,
                mac: Some(wired.host_mac),
            }),
            address: wired.address.to_string(),
            gateway: wired.gateway.to_string(),
            routes: wired
                .routes
                .into_iter()
                .map(|r| Route {
                    dst: r.destination.to_string(),
                    gw: r.gateway.map(|g| g.to_string()),
                })
                .collect(),
        })
    }

    async fn unwire(&self, unwire: &Unwire) -> Result<(), WiringError> {
        let request = UnwireRequest {
            container_id: unwire.container_id.clone(),
            ifname: unwire.ifname.clone(),
            netns_path: unwire
                .netns
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            address: unwire
                .wiring
                .as_ref()
                .and_then(|w| w.allocation.address.parse().ok()),
        };
        Ok(Dataplane::unwire(self, &request).await?)
    }

    async fn check(&self, wiring: &PodWiring) -> Result<(), WiringError> {
        let differences = Dataplane::check(self, &pod_request(wiring)).await?;
        if differences.is_empty() {
            Ok(())
        } else {
            Err(WiringError {
                message: differences.join("; "),
                unsupported: false,
            })
        }
    }

    async fn gc(&self, keep: &HashSet<String>) -> Result<Vec<String>, WiringError> {
        let removed = Dataplane::gc(self, keep).await?;
        Ok(removed.into_iter().filter_map(|p| p.container_id).collect())
    }
}
