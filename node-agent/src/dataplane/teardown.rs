//! Taking wiring down: unwire, sweep leftovers and collect garbage, all from what the
//! kernel shows is wired ([`Dataplane::recover`]). Nothing here needs memory of
//! earlier calls.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::error::DataplaneError;
use super::kernel::{Link, Netlink};
use super::naming::{
    IPVLAN_HOST_ALIAS, PodLinkMarker, PodLinkOrigin, PodMarker, WiringKind, host_ifname,
    ipvlan_host_ifname,
};
use super::pod_table;
use super::requests::{self, MAIN_TABLE, PROTO, Route, Rule};
use super::{Dataplane, netns};

/// A pod wiring found in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredPod {
    pub kind: WiringKind,
    /// Container id and pod interface name; `None` for ipvlan pods, which leave no
    /// per-pod link in the host namespace (match them by address).
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    /// The pod's namespace as given when it was wired.
    pub netns: Option<PathBuf>,
    /// Host-side link (veth end, or the shared ipvlan slave).
    pub host_ifname: String,
    /// Pod addresses routed to that link.
    pub addresses: Vec<Ipv4Addr>,
    /// ENI tables the pod's `from` rules point at (SharedIP veth).
    pub tables: Vec<u32>,
}

impl Dataplane {
    /// Every pod wiring present in the host namespace.
    pub async fn recover(&self) -> Result<Vec<RecoveredPod>, DataplaneError> {
        let rules = self.host.rules().await?;
        let routes = self.host.routes().await?;
        let links = self.host.links().await?;
        let mut by_link: BTreeMap<u32, Vec<Ipv4Addr>> = BTreeMap::new();
        for (route, proto) in &routes {
            if *proto == PROTO && route.table == MAIN_TABLE && route.destination.prefix_len() == 32
            {
                by_link
                    .entry(route.oif)
                    .or_default()
                    .push(route.destination.addr());
            }
        }
        let tables_of = |address: Ipv4Addr| -> Vec<u32> {
            rules
                .iter()
                .filter(|(rule, proto)| {
                    *proto == PROTO && rule.address() == address && rule.table != MAIN_TABLE
                })
                .map(|(rule, _)| rule.table)
                .collect()
        };
        let mut pods = Vec::new();
        for link in &links {
            let addresses = by_link.get(&link.index).cloned().unwrap_or_default();
            let alias = link.alias.as_deref().unwrap_or("");
            if let Some(marker) = PodMarker::parse(alias) {
                let tables = addresses.iter().flat_map(|a| tables_of(*a)).collect();
                pods.push(RecoveredPod {
                    kind: marker.kind,
                    container_id: Some(marker.container_id),
                    ifname: Some(marker.ifname),
                    netns: Some(marker.netns),
                    host_ifname: link.name.clone(),
                    addresses,
                    tables,
                });
            } else if alias == IPVLAN_HOST_ALIAS {
                pods.extend(addresses.into_iter().map(|address| RecoveredPod {
                    kind: WiringKind::SharedIpvlan,
                    container_id: None,
                    ifname: None,
                    netns: None,
                    host_ifname: link.name.clone(),
                    addresses: vec![address],
                    tables: Vec::new(),
                }));
            }
        }
        Ok(pods)
    }

    /// Removes the wiring of every pod whose container id is not in `valid`, then
    /// whatever is left over; returns what was removed.
    pub async fn gc(&self, valid: &HashSet<String>) -> Result<Vec<RecoveredPod>, DataplaneError> {
        let _guard = self.lock.lock().await;
        let doomed: Vec<RecoveredPod> = self
            .recover()
            .await?
            .into_iter()
            .filter(|pod| {
                pod.container_id
                    .as_ref()
                    .is_some_and(|id| !valid.contains(id))
            })
            .collect();
        for pod in &doomed {
            if let (Some(id), Some(ifname)) = (&pod.container_id, &pod.ifname) {
                info!(container = %id, ifname, "collecting wiring of a container that is gone");
                self.remove_pod_locked(id, ifname, pod.netns.as_deref(), None)
                    .await?;
            }
        }
        self.sweep().await?;
        Ok(doomed)
    }

    /// Removes everything wired for (`container_id`, `ifname`), then sweeps what that
    /// left over.
    pub(super) async fn unwire_locked(
        &self,
        container_id: &str,
        ifname: &str,
        netns_path: Option<&Path>,
        address: Option<Ipv4Addr>,
    ) -> Result<(), DataplaneError> {
        self.remove_pod_locked(container_id, ifname, netns_path, address)
            .await?;
        self.sweep().await
    }

    /// Removes the pod's links and routes; anything already gone (namespace deleted,
    /// links missing) is fine. `address` lets an ipvlan pod whose namespace is gone be
    /// cleaned from the host too. What no pod needs any more is left to a sweep.
    pub(super) async fn remove_pod_locked(
        &self,
        container_id: &str,
        ifname: &str,
        netns_path: Option<&Path>,
        address: Option<Ipv4Addr>,
    ) -> Result<(), DataplaneError> {
        let mut ipvlan_addresses: BTreeSet<Ipv4Addr> = address.into_iter().collect();
        if let Some(path) = netns_path.filter(|p| p.exists()) {
            match netns::netlink(path).await {
                Ok(pod) => {
                    ipvlan_addresses.extend(self.release_pod_links(&pod, container_id).await?);
                    // A passthrough pod's answers-through-the-veth rule and table.
                    pod_table::remove(&pod, path).await?;
                }
                // The namespace went away between the check and the open.
                Err(DataplaneError::Netns { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        match self.host_end(container_id, ifname).await? {
            Some((link, Some(_))) => self.delete_host_end(&link).await?,
            Some((link, None)) => {
                warn!(link = %link.name, alias = ?link.alias, "host link of that name is not this pod's; left alone");
            }
            None => {}
        }
        self.drop_ipvlan_routes(&ipvlan_addresses).await
    }

    /// Deletes the host end of (`container_id`, `ifname`)'s veth pair (and with it the
    /// pod end and the routes through them) when it is that container's, wired as
    /// `kind`; anything else is left to [`Dataplane::unwire_locked`].
    pub(super) async fn delete_own_veth(
        &self,
        container_id: &str,
        ifname: &str,
        kind: WiringKind,
    ) -> Result<(), DataplaneError> {
        if let Some((link, Some(wired_as))) = self.host_end(container_id, ifname).await?
            && wired_as == kind
        {
            self.delete_host_end(&link).await?;
        }
        Ok(())
    }

    /// The host link named for (`container_id`, `ifname`), with the kind it was wired
    /// as when its marker names that container (None: another's, or no marker).
    async fn host_end(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<(Link, Option<WiringKind>)>, DataplaneError> {
        let Some(link) = self
            .host
            .link_by_name(&host_ifname(container_id, ifname))
            .await?
        else {
            return Ok(None);
        };
        let kind = link
            .alias
            .as_deref()
            .and_then(PodMarker::parse)
            .filter(|m| m.container_id == container_id && m.ifname == ifname)
            .map(|m| m.kind);
        Ok(Some((link, kind)))
    }

    async fn delete_host_end(&self, link: &Link) -> Result<(), DataplaneError> {
        self.host.delete_link(link.index).await?;
        debug!(link = %link.name, "host link deleted");
        Ok(())
    }

    /// Gives lent ENI links back to the host under their first names and deletes the
    /// VLAN and ipvlan links made for the container; returns the ipvlan addresses.
    async fn release_pod_links(
        &self,
        pod: &Netlink,
        container_id: &str,
    ) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        let mut ipvlan_addresses = Vec::new();
        for link in pod.links().await? {
            let Some(marker) = link.alias.as_deref().and_then(PodLinkMarker::parse) else {
                continue;
            };
            if marker.container_id != container_id {
                continue;
            }
            match marker.origin {
                PodLinkOrigin::Lent { original_name } => {
                    pod.set_link(
                        requests::move_link(link.index, self.host_file.as_fd(), &original_name),
                        &format!("returning {original_name} to the host"),
                    )
                    .await?;
                    if let Some(eni) = self.host.link_by_name(&original_name).await? {
                        self.host
                            .set_link(
                                requests::link_alias(eni.index, ""),
                                "unmarking the returned ENI link",
                            )
                            .await?;
                    }
                    info!(eni = %original_name, container = container_id, "ENI link returned to the host");
                }
                PodLinkOrigin::Vlan => pod.delete_link(link.index).await?,
                PodLinkOrigin::Ipvlan => {
                    ipvlan_addresses
                        .extend(pod.addresses(link.index).await?.iter().map(|a| a.addr()));
                    pod.delete_link(link.index).await?;
                }
            }
        }
        Ok(ipvlan_addresses)
    }

    async fn drop_ipvlan_routes(
        &self,
        addresses: &BTreeSet<Ipv4Addr>,
    ) -> Result<(), DataplaneError> {
        if addresses.is_empty() {
            return Ok(());
        }
        let slaves: BTreeSet<u32> = self
            .host
            .links()
            .await?
            .iter()
            .filter(|l| l.alias.as_deref() == Some(IPVLAN_HOST_ALIAS))
            .map(|l| l.index)
            .collect();
        for (route, proto) in self.host.routes().await? {
            if proto == PROTO
                && route.table == MAIN_TABLE
                && slaves.contains(&route.oif)
                && addresses.contains(&route.destination.addr())
            {
                self.host.delete_route(&route).await?;
            }
        }
        Ok(())
    }

    /// Removes host state no live pod needs: rules and proxy entries of addresses no
    /// longer routed to a pod, ENI tables no rule points at, unused ipvlan host slaves,
    /// and the alias and borrowed name of ENI links come back from a dead pod.
    pub(super) async fn sweep(&self) -> Result<(), DataplaneError> {
        // Rules are read before routes: a rule only exists once its route does.
        let rules: Vec<Rule> = own(self.host.rules().await?);
        let routes: Vec<Route> = own(self.host.routes().await?);
        let links = self.host.links().await?;
        let pod_links: BTreeSet<u32> = links
            .iter()
            .filter(|l| is_pod_host_link(l))
            .map(|l| l.index)
            .collect();
        let live: BTreeSet<Ipv4Addr> = routes
            .iter()
            .filter(|r| {
                r.table == MAIN_TABLE
                    && r.destination.prefix_len() == 32
                    && pod_links.contains(&r.oif)
            })
            .map(|r| r.destination.addr())
            .collect();
        let mut tables_in_use = BTreeSet::new();
        for rule in &rules {
            if live.contains(&rule.address()) {
                tables_in_use.insert(rule.table);
            } else {
                self.host.delete_rule(rule).await?;
                debug!(?rule, "stale rule removed");
            }
        }
        for proxy in self.host.proxies().await? {
            if proxy.protocol == PROTO && !live.contains(&proxy.address) {
                self.host.delete_proxy(proxy.ifindex, proxy.address).await?;
            }
        }
        let mut idle_enis = BTreeSet::new();
        for route in &routes {
            if route.table != MAIN_TABLE && !tables_in_use.contains(&route.table) {
                self.host.delete_route(route).await?;
                idle_enis.insert(route.oif);
                debug!(
                    table = route.table,
                    "ENI table route removed: no pod uses the table"
                );
            }
        }
        for index in idle_enis {
            self.rest_eni(index, &links, &routes, &tables_in_use)
                .await?;
        }
        for link in &links {
            let alias = link.alias.as_deref().unwrap_or("");
            if alias == IPVLAN_HOST_ALIAS
                && !routes
                    .iter()
                    .any(|r| r.oif == link.index && r.table == MAIN_TABLE)
            {
                self.host.delete_link(link.index).await?;
            } else if let Some(PodLinkMarker {
                origin: PodLinkOrigin::Lent { original_name },
                ..
            }) = PodLinkMarker::parse(alias)
            {
                self.restore_returned_eni(link, &original_name).await?;
            }
        }
        Ok(())
    }

    /// Sets an ENI link down once its last pod left, as it was before its first pod
    /// came, unless something else still uses it: an address on the host (the
    /// primary ENI), a table in use, or an ipvlan host slave.
    async fn rest_eni(
        &self,
        index: u32,
        links: &[Link],
        routes: &[Route],
        tables_in_use: &BTreeSet<u32>,
    ) -> Result<(), DataplaneError> {
        let Some(eni) = links.iter().find(|l| l.index == index) else {
            return Ok(());
        };
        let in_use = routes
            .iter()
            .any(|r| r.oif == index && (r.table == MAIN_TABLE || tables_in_use.contains(&r.table)))
            || links.iter().any(|l| l.name == ipvlan_host_ifname(index))
            || !self.host.addresses(index).await?.is_empty();
        if eni.up && !in_use {
            self.host
                .set_link(
                    requests::link_down(index),
                    &format!("setting idle ENI link {} down", eni.name),
                )
                .await?;
            info!(eni = %eni.name, "last pod left the ENI; link set down");
        }
        Ok(())
    }

    /// An ENI link whose pod namespace died came back to the host (as physical
    /// devices do) still carrying the pod's name: give it its first name back.
    async fn restore_returned_eni(
        &self,
        link: &Link,
        original_name: &str,
    ) -> Result<(), DataplaneError> {
        self.host
            .set_link(
                requests::link_down(link.index),
                "setting a returned ENI link down",
            )
            .await?;
        self.host
            .set_link(
                requests::rename_and_unmark(link.index, original_name),
                &format!("renaming {} back to {original_name}", link.name),
            )
            .await?;
        info!(from = %link.name, to = original_name, "returned ENI link renamed back");
        Ok(())
    }
}

/// Host link carrying a pod's identity, or the shared ipvlan slave.
fn is_pod_host_link(link: &Link) -> bool {
    let alias = link.alias.as_deref().unwrap_or("");
    alias == IPVLAN_HOST_ALIAS || PodMarker::parse(alias).is_some()
}

fn own<T>(items: Vec<(T, netlink_packet_route::route::RouteProtocol)>) -> Vec<T> {
    items
        .into_iter()
        .filter(|(_, proto)| *proto == PROTO)
        .map(|(item, _)| item)
        .collect()
}
