//! SharedIP over ipvlan (needs the ipvlan module; only unit-tested where it is absent).
//!
//! Pod: `<ifname>` is an L2 ipvlan slave of the ENI link holding `<ip>/<prefix>`, with
//! `default via <gateway> onlink` and `<node ip>/32 dev <ifname>`. Host: one slave of
//! the same ENI, `ipvl<ENI index>`, holds `<node ip>/32` so that ipvlan delivers
//! pod-to-node traffic to it, and main routes `<ip>/32 dev ipvl<ENI index>` back.
//! Service traffic, which ipvlan would send past the host's netfilter, is redirected
//! into the host slave by a filter on the ENI (`service_redirect`).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use ipnet::Ipv4Net;

use super::error::{DataplaneError, KernelFeature};
use super::expect::Expect;
use super::kernel::{Link, Netlink};
use super::naming::{
    IPVLAN_HOST_ALIAS, PodLinkMarker, PodLinkOrigin, WiringKind, ipvlan_host_ifname,
};
use super::requests::{self, MAIN_TABLE, Route};
use super::veth_pair::{mac_of, mark_pod_link, require_link};
use super::{
    Checked, Dataplane, PodRequest, PodRoute, WiredPod, missing_eni, netns, service_redirect,
};

const DEFAULT: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);

impl Dataplane {
    pub(super) async fn wire_ipvlan(
        &self,
        request: &PodRequest,
        checked: &Checked,
    ) -> Result<WiredPod, DataplaneError> {
        if !self.features.ipvlan {
            return Err(DataplaneError::FeatureMissing {
                feature: KernelFeature::IpVlan,
                needed_by: "SharedIP with datapath IPVlan",
            });
        }
        let eni = self.eni_link(checked.eni_mac).await?;
        let pod_file = netns::open(&request.netns_path)?;
        let pod = netns::netlink(&request.netns_path).await?;
        let pod_link = match own_slave(&pod, request).await? {
            Some(link) => link,
            None => {
                if pod.link_by_name(&request.ifname).await?.is_some() {
                    return Err(DataplaneError::Conflict {
                        name: request.ifname.clone(),
                        detail: "the pod already has a link of that name".into(),
                    });
                }
                self.host
                    .add_link(
                        requests::ipvlan_link(&request.ifname, eni.index, Some(pod_file.as_fd())),
                        &format!("creating an ipvlan slave of {} in the pod", eni.name),
                    )
                    .await?;
                mark_pod_link(
                    &pod,
                    request,
                    PodLinkOrigin::Ipvlan,
                    "marking the ipvlan slave",
                )
                .await?
            }
        };
        let host_slave = self.ensure_host_slave(&eni).await?;
        service_redirect::ensure(&self.host, &eni, &self.config.service_cidrs, &host_slave).await?;
        self.prepare_host(None).await?;
        let (host_side, pod_side) = self.ipvlan_expectations(checked, &eni, &host_slave, &pod_link);
        pod_side.apply(&pod).await?;
        host_side.apply(&self.host).await?;
        Ok(WiredPod {
            kind: WiringKind::SharedIpvlan,
            host_ifname: host_slave.name.clone(),
            host_mac: mac_of(&eni)?,
            pod_ifname: pod_link.name.clone(),
            // ipvlan slaves share their parent's MAC.
            pod_mac: mac_of(&eni)?,
            address: checked.pod_net(),
            gateway: checked.gateway,
            routes: vec![
                PodRoute {
                    destination: DEFAULT,
                    gateway: Some(checked.gateway),
                },
                PodRoute {
                    destination: Ipv4Net::from(self.config.node_ip),
                    gateway: None,
                },
            ],
        })
    }

    async fn ensure_host_slave(&self, eni: &Link) -> Result<Link, DataplaneError> {
        let name = ipvlan_host_ifname(eni.index);
        if let Some(link) = self.host.link_by_name(&name).await? {
            return Ok(link);
        }
        self.host
            .add_link(
                requests::ipvlan_link(&name, eni.index, None),
                &format!("creating the host ipvlan slave of {}", eni.name),
            )
            .await?;
        let link = require_link(&self.host, &name, "host").await?;
        self.host
            .set_link(
                requests::link_alias(link.index, IPVLAN_HOST_ALIAS),
                "marking the host ipvlan slave",
            )
            .await?;
        Ok(link)
    }

    pub(super) async fn check_ipvlan(
        &self,
        request: &PodRequest,
        checked: &Checked,
    ) -> Result<Vec<String>, DataplaneError> {
        let Some(eni) = self.host.link_by_mac(checked.eni_mac).await? else {
            return Ok(vec![missing_eni(checked.eni_mac)]);
        };
        let name = ipvlan_host_ifname(eni.index);
        let Some(host_slave) = self.host.link_by_name(&name).await? else {
            return Ok(vec![format!("host: ipvlan slave {name} is gone")]);
        };
        let pod = netns::netlink(&request.netns_path).await?;
        let Some(pod_link) = own_slave(&pod, request).await? else {
            return Ok(vec![format!(
                "pod: no ipvlan slave {} for this container",
                request.ifname
            )]);
        };
        let (host_side, pod_side) = self.ipvlan_expectations(checked, &eni, &host_slave, &pod_link);
        let mut differences = host_side.differences(&self.host, "host").await?;
        differences.extend(
            service_redirect::differences(
                &self.host,
                &eni,
                &self.config.service_cidrs,
                &host_slave,
            )
            .await?,
        );
        differences.extend(pod_side.differences(&pod, "pod").await?);
        Ok(differences)
    }

    fn ipvlan_expectations(
        &self,
        checked: &Checked,
        eni: &Link,
        host_slave: &Link,
        pod_link: &Link,
    ) -> (Expect, Expect) {
        let node = Ipv4Net::from(self.config.node_ip);
        let host = Expect {
            up: vec![eni.clone(), host_slave.clone()],
            addresses: vec![(host_slave.clone(), node)],
            routes: vec![
                Route::direct(MAIN_TABLE, Ipv4Net::from(checked.address), host_slave.index)
                    .with_source(self.config.node_ip),
            ],
            ..Expect::default()
        };
        let pod = Expect {
            up: vec![pod_link.clone()],
            addresses: vec![(pod_link.clone(), checked.pod_net())],
            routes: vec![
                Route::via_onlink(MAIN_TABLE, DEFAULT, checked.gateway, pod_link.index),
                Route::direct(MAIN_TABLE, node, pod_link.index),
            ],
            ..Expect::default()
        };
        (host, pod)
    }
}

async fn own_slave(pod: &Netlink, request: &PodRequest) -> Result<Option<Link>, DataplaneError> {
    let Some(link) = pod.link_by_name(&request.ifname).await? else {
        return Ok(None);
    };
    let ours = link
        .alias
        .as_deref()
        .and_then(PodLinkMarker::parse)
        .is_some_and(|m| {
            m.container_id == request.container_id && m.origin == PodLinkOrigin::Ipvlan
        });
    Ok(ours.then_some(link))
}
