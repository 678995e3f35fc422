//! SharedIP over a veth pair and source policy routing (brief §6).
//!
//! Pod: `<ifname>` holds `<ip>/32`, `default via 169.254.1.1 dev <ifname> onlink`, and a
//! permanent neighbour entry 169.254.1.1 → host veth MAC. Host: `<ip>/32 dev <veth>`
//! in main, rule 512 `to <ip> lookup main`, rule 2048 `from <ip> lookup <ENI table>`,
//! the ENI table with `<subnet> dev <ENI>` and `default via <gateway> dev <ENI> onlink`
//! (with the node's SNAT on: a route via the gateway for each VPC and excluded CIDR
//! instead, so that other destinations fall through to the main table and leave
//! through the primary ENI, SNATed), and a proxy-ARP entry for `<ip>` on the ENI link.
//! Node-wide: the agent's nftables table (`node_table`).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use ipnet::Ipv4Net;

use super::error::DataplaneError;
use super::expect::Expect;
use super::kernel::Link;
use super::naming::{WiringKind, host_ifname};
use super::requests::{LINK_LOCAL_GATEWAY, MAIN_TABLE, Route, Rule};
use super::veth_pair::{VethPair, ensure_veth, mac_of};
use super::{Checked, Dataplane, PodRequest, PodRoute, WiredPod, missing_eni, netns};

const DEFAULT: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);

impl Dataplane {
    pub(super) async fn wire_shared_veth(
        &self,
        request: &PodRequest,
        checked: &Checked,
    ) -> Result<WiredPod, DataplaneError> {
        // Refused before anything changes when the ENI is not there.
        self.eni_link(checked.eni_mac).await?;
        // The pod's own links and namespace: other pods' requests run alongside.
        let pod_file = netns::open(&request.netns_path)?;
        let pod = netns::netlink(&request.netns_path).await?;
        let pair = ensure_veth(
            &self.host,
            &pod,
            pod_file.as_fd(),
            request,
            WiringKind::SharedVeth,
            &request.ifname,
        )
        .await?;
        pod_state(checked, &pair)?.apply(&pod).await?;
        {
            // The ENI's table, rules and link state are shared with other pods and the
            // sweep of every DEL: read and changed under the lock.
            let _guard = self.lock.lock().await;
            let eni = self.eni_link(checked.eni_mac).await?;
            self.prepare_host(Some(&eni)).await?;
            self.ensure_node_table().await?;
            self.host_state(checked, &eni, &pair)
                .apply(&self.host)
                .await?;
        }
        Ok(WiredPod {
            kind: WiringKind::SharedVeth,
            host_ifname: pair.host.name.clone(),
            host_mac: mac_of(&pair.host)?,
            pod_ifname: pair.pod.name.clone(),
            pod_mac: mac_of(&pair.pod)?,
            address: Ipv4Net::from(checked.address),
            gateway: LINK_LOCAL_GATEWAY,
            routes: vec![PodRoute {
                destination: DEFAULT,
                gateway: Some(LINK_LOCAL_GATEWAY),
            }],
        })
    }

    pub(super) async fn check_shared_veth(
        &self,
        request: &PodRequest,
        checked: &Checked,
    ) -> Result<Vec<String>, DataplaneError> {
        let Some(eni) = self.host.link_by_mac(checked.eni_mac).await? else {
            return Ok(vec![missing_eni(checked.eni_mac)]);
        };
        let host_name = host_ifname(&request.container_id, &request.ifname);
        let Some(host_link) = self.host.link_by_name(&host_name).await? else {
            return Ok(vec![format!("host: veth {host_name} is gone")]);
        };
        let pod = netns::netlink(&request.netns_path).await?;
        let Some(pod_link) = pod.link_by_name(&request.ifname).await? else {
            return Ok(vec![format!("pod: link {} is gone", request.ifname)]);
        };
        let pair = VethPair {
            host: host_link,
            pod: pod_link,
        };
        let mut differences = self
            .host_state(checked, &eni, &pair)
            .differences(&self.host, "host")
            .await?;
        differences.extend(self.node_table_differences().await?);
        differences.extend(pod_state(checked, &pair)?.differences(&pod, "pod").await?);
        Ok(differences)
    }

    /// Host-side state of a SharedIP veth pod.
    fn host_state(&self, checked: &Checked, eni: &Link, pair: &VethPair) -> Expect {
        let address = checked.address;
        // What the pod reaches through its ENI; the rest falls through to main.
        let through_eni = self.config.egress.direct().unwrap_or_else(|| vec![DEFAULT]);
        let mut routes: Vec<Route> = through_eni
            .into_iter()
            .map(|to| Route::via_onlink(checked.table, to, checked.gateway, eni.index))
            .collect();
        routes.push(Route::direct(checked.table, checked.subnet, eni.index));
        routes.push(Route::direct(
            MAIN_TABLE,
            Ipv4Net::from(address),
            pair.host.index,
        ));
        Expect {
            up: vec![eni.clone(), pair.host.clone()],
            routes,
            rules: vec![
                Rule::to_pod(address),
                Rule::from_pod(address, checked.table),
            ],
            proxies: vec![(eni.clone(), address)],
            ..Expect::default()
        }
    }
}

/// Pod-side state of a SharedIP veth pod.
fn pod_state(checked: &Checked, pair: &VethPair) -> Result<Expect, DataplaneError> {
    Ok(Expect {
        up: vec![pair.pod.clone()],
        addresses: vec![(pair.pod.clone(), Ipv4Net::from(checked.address))],
        neighbours: vec![(pair.pod.clone(), LINK_LOCAL_GATEWAY, mac_of(&pair.host)?)],
        routes: vec![Route::via_onlink(
            MAIN_TABLE,
            DEFAULT,
            LINK_LOCAL_GATEWAY,
            pair.pod.index,
        )],
        ..Expect::default()
    })
}
