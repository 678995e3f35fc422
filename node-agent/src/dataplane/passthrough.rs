//! Exclusive and Trunk: the pod gets a whole link of its own.
//!
//! Exclusive and Trunk (member ENI as its own link): the ENI link, found by MAC, is
//! moved into the pod and renamed `<ifname>` in one request; its original name is kept
//! in its ifalias so that unwire can give it back. When a Trunk member does not arrive
//! as its own link, [`super::trunk`] relays it as a VLAN sub-interface of the trunk
//! ENI instead. Either way the pod holds `<ip>/<prefix>` and `default via <gateway>
//! onlink`, and a second veth (`v<ifname>` in the pod) reaches the node: `<node ip>/32`
//! and the service CIDRs via 169.254.1.1 with source `<ip>`; the host routes
//! `<ip>/32` back through its end and SNATs what the pod forwards through it
//! (`node_table`). With the node's SNAT on, the pod's default route is the veth too and
//! only the VPC's (and excluded) CIDRs go through its own link.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use eni_crds::Mode;
use ipnet::Ipv4Net;
use tracing::info;

use super::error::DataplaneError;
use super::expect::Expect;
use super::kernel::{Link, Netlink};
use super::naming::{PodLinkMarker, PodLinkOrigin, WiringKind, host_ifname, host_path_ifname};
use super::pod_table::{self, POD_HOST_TABLE};
use super::requests::{self, LINK_LOCAL_GATEWAY, MAIN_TABLE, Route};
use super::veth_pair::{VethPair, ensure_veth, mac_of, require_link};
use super::{Checked, Dataplane, PodRequest, PodRoute, WiredPod, netns, trunk};

const DEFAULT: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);

impl Dataplane {
    pub(super) async fn wire_passthrough(
        &self,
        request: &PodRequest,
        checked: &Checked,
    ) -> Result<WiredPod, DataplaneError> {
        let pod_file = netns::open(&request.netns_path)?;
        let pod = netns::netlink(&request.netns_path).await?;
        let kind = match own_pod_link(&pod, request).await? {
            Some((_, origin)) => kind_of(request.mode, &origin)?,
            None => self.hand_over(request, checked, &pod, &pod_file).await?,
        };
        let pod_link = require_link(&pod, &request.ifname, "pod").await?;
        let pair = ensure_veth(
            &self.host,
            &pod,
            pod_file.as_fd(),
            request,
            kind,
            &host_path_ifname(&request.ifname),
        )
        .await?;
        self.prepare_host(None).await?;
        self.ensure_node_table().await?;
        let (host_side, pod_side) = self.expectations(checked, &pod_link, &pair)?;
        pod_side.apply(&pod).await?;
        pod_table::ensure(&pod, &request.netns_path, &pair.pod.name).await?;
        host_side.apply(&self.host).await?;
        let routes = self
            .pod_routes(checked)
            .into_iter()
            .map(|(destination, gateway)| PodRoute {
                destination,
                gateway: Some(gateway),
            })
            .collect();
        Ok(WiredPod {
            kind,
            host_ifname: pair.host.name.clone(),
            host_mac: mac_of(&pair.host)?,
            pod_ifname: pod_link.name.clone(),
            pod_mac: mac_of(&pod_link)?,
            address: checked.pod_net(),
            gateway: checked.gateway,
            routes,
        })
    }

    /// Puts the pod's own link into its namespace: the ENI (or member ENI) found by
    /// MAC, or else, in Trunk mode, a VLAN sub-interface of the trunk ENI.
    async fn hand_over(
        &self,
        request: &PodRequest,
        checked: &Checked,
        pod: &Netlink,
        pod_file: &std::fs::File,
    ) -> Result<WiringKind, DataplaneError> {
        if pod.link_by_name(&request.ifname).await?.is_some() {
            return Err(DataplaneError::Conflict {
                name: request.ifname.clone(),
                detail: "the pod already has a link of that name".into(),
            });
        }
        if let Some(eni) = self.host.link_by_mac(checked.eni_mac).await? {
            self.lend(&eni, request, pod_file).await?;
            return Ok(if request.mode == Mode::Trunk {
                WiringKind::TrunkMember
            } else {
                WiringKind::Exclusive
            });
        }
        match trunk::vlan_relay(request.mode, checked.trunk_mac, request.allocation.vlan_id) {
            Some(relay) => {
                self.relay_as_vlan(request, checked, relay, pod, pod_file)
                    .await
            }
            None => Err(DataplaneError::EniNotFound {
                mac: checked.eni_mac,
            }),
        }
    }

    /// Marks the ENI link with its name and borrower, then moves it into the pod
    /// under the pod's interface name.
    async fn lend(
        &self,
        eni: &Link,
        request: &PodRequest,
        pod_file: &std::fs::File,
    ) -> Result<(), DataplaneError> {
        // A link that came back from a dead pod namespace still knows its first name.
        let original_name = match eni.alias.as_deref().and_then(PodLinkMarker::parse) {
            Some(PodLinkMarker {
                origin: PodLinkOrigin::Lent { original_name },
                ..
            }) => original_name,
            _ => eni.name.clone(),
        };
        let marker = PodLinkMarker {
            container_id: request.container_id.clone(),
            origin: PodLinkOrigin::Lent { original_name },
        };
        self.host
            .set_link(
                requests::link_alias(eni.index, &marker.encode()?),
                "marking the ENI link",
            )
            .await?;
        let moved = self
            .host
            .set_link(
                requests::move_link(eni.index, pod_file.as_fd(), &request.ifname),
                &format!("moving {} into the pod", eni.name),
            )
            .await;
        if let Err(error) = moved {
            // Leave the ENI as it was found.
            self.host
                .set_link(
                    requests::link_alias(eni.index, eni.alias.as_deref().unwrap_or("")),
                    "unmarking the ENI link",
                )
                .await?;
            return Err(error);
        }
        info!(eni = %eni.name, container = %request.container_id, "ENI link moved into the pod");
        Ok(())
    }

    pub(super) async fn check_passthrough(
        &self,
        request: &PodRequest,
        checked: &Checked,
    ) -> Result<Vec<String>, DataplaneError> {
        let pod = netns::netlink(&request.netns_path).await?;
        let Some((pod_link, _)) = own_pod_link(&pod, request).await? else {
            return Ok(vec![format!(
                "pod: no link {} handed over for this container",
                request.ifname
            )]);
        };
        let host_name = host_ifname(&request.container_id, &request.ifname);
        let Some(host_link) = self.host.link_by_name(&host_name).await? else {
            return Ok(vec![format!("host: veth {host_name} is gone")]);
        };
        let path_name = host_path_ifname(&request.ifname);
        let Some(path_link) = pod.link_by_name(&path_name).await? else {
            return Ok(vec![format!("pod: veth {path_name} is gone")]);
        };
        let pair = VethPair {
            host: host_link,
            pod: path_link,
        };
        let (host_side, pod_side) = self.expectations(checked, &pod_link, &pair)?;
        let mut differences = host_side.differences(&self.host, "host").await?;
        differences.extend(self.node_table_differences().await?);
        differences.extend(pod_side.differences(&pod, "pod").await?);
        differences.extend(pod_table::check(&pod, &request.netns_path, &pair.pod.name).await?);
        Ok(differences)
    }

    /// A passthrough pod's routes, destination → gateway: through its own link
    /// (`checked.gateway`) to the VPC, and to everything when the node does not SNAT;
    /// through its veth to the host (169.254.1.1) for the node, the Services, and with
    /// the node's SNAT on, everything outside the VPC.
    fn pod_routes(&self, checked: &Checked) -> Vec<(Ipv4Net, Ipv4Addr)> {
        let mut routes = match self.config.egress.direct() {
            None => vec![(DEFAULT, checked.gateway)],
            Some(direct) => direct
                .into_iter()
                .map(|to| (to, checked.gateway))
                .chain([(DEFAULT, LINK_LOCAL_GATEWAY)])
                .collect(),
        };
        routes.extend(
            std::iter::once(Ipv4Net::from(self.config.node_ip))
                .chain(self.config.service_cidrs.iter().copied())
                .map(|to| (to, LINK_LOCAL_GATEWAY)),
        );
        routes
    }

    fn expectations(
        &self,
        checked: &Checked,
        pod_link: &Link,
        pair: &VethPair,
    ) -> Result<(Expect, Expect), DataplaneError> {
        let host = Expect {
            up: vec![pair.host.clone()],
            routes: vec![Route::direct(
                MAIN_TABLE,
                Ipv4Net::from(checked.address),
                pair.host.index,
            )],
            ..Expect::default()
        };
        let mut routes: Vec<Route> = self
            .pod_routes(checked)
            .into_iter()
            .map(|(to, gateway)| {
                if gateway == LINK_LOCAL_GATEWAY {
                    Route::via_onlink(MAIN_TABLE, to, gateway, pair.pod.index)
                        .with_source(checked.address)
                } else {
                    Route::via_onlink(MAIN_TABLE, to, gateway, pod_link.index)
                }
            })
            .collect();
        // Answers to connections that came in through the veth (`pod_table`).
        routes.push(
            Route::via_onlink(POD_HOST_TABLE, DEFAULT, LINK_LOCAL_GATEWAY, pair.pod.index)
                .with_source(checked.address),
        );
        let pod = Expect {
            up: vec![pod_link.clone(), pair.pod.clone()],
            addresses: vec![(pod_link.clone(), checked.pod_net())],
            neighbours: vec![(pair.pod.clone(), LINK_LOCAL_GATEWAY, mac_of(&pair.host)?)],
            routes,
            ..Expect::default()
        };
        Ok((host, pod))
    }
}

/// The link `<ifname>` in the pod if this container's wiring put it there.
async fn own_pod_link(
    pod: &Netlink,
    request: &PodRequest,
) -> Result<Option<(Link, PodLinkOrigin)>, DataplaneError> {
    let Some(link) = pod.link_by_name(&request.ifname).await? else {
        return Ok(None);
    };
    match link.alias.as_deref().and_then(PodLinkMarker::parse) {
        Some(marker) if marker.container_id == request.container_id => {
            Ok(Some((link, marker.origin)))
        }
        _ => Ok(None),
    }
}

fn kind_of(mode: Mode, origin: &PodLinkOrigin) -> Result<WiringKind, DataplaneError> {
    match (mode, origin) {
        (Mode::Exclusive, PodLinkOrigin::Lent { .. }) => Ok(WiringKind::Exclusive),
        (Mode::Trunk, PodLinkOrigin::Lent { .. }) => Ok(WiringKind::TrunkMember),
        (Mode::Trunk, PodLinkOrigin::Vlan) => Ok(WiringKind::TrunkVlan),
        _ => Err(DataplaneError::InvalidRequest(format!(
            "the pod is already wired as {origin:?}, not for mode {mode:?}"
        ))),
    }
}
