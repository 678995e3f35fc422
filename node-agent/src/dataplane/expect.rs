//! Building blocks shared by the datapaths: the expected state of one namespace (used
//! both to wire and to check), and the veth pair between host and pod.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

use ipnet::Ipv4Net;

use super::error::DataplaneError;
use super::kernel::{Link, Netlink};
use super::naming::PodMarker;
use super::requests::{self, PROTO, Route, Rule, format_mac};

/// What one namespace must hold for a pod; applied in dependency order (links up,
/// addresses, neighbours, routes, rules, proxy entries), each step idempotent.
#[derive(Debug, Default)]
pub struct Expect {
    pub up: Vec<Link>,
    pub addresses: Vec<(Link, Ipv4Net)>,
    pub neighbours: Vec<(Link, Ipv4Addr, [u8; 6])>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    pub proxies: Vec<(Link, Ipv4Addr)>,
}

impl Expect {
    pub async fn apply(&self, nl: &Netlink) -> Result<(), DataplaneError> {
        for link in &self.up {
            if !link.up {
                nl.set_link(
                    requests::link_up(link.index),
                    &format!("setting {} up", link.name),
                )
                .await?;
            }
        }
        for (link, address) in &self.addresses {
            nl.add_address(link.index, *address).await?;
        }
        for (link, ip, mac) in &self.neighbours {
            nl.set_neighbour(requests::permanent_neighbour(link.index, *ip, *mac))
                .await?;
        }
        for route in &self.routes {
            nl.replace_route(route).await?;
        }
        for rule in &self.rules {
            nl.add_rule(rule).await?;
        }
        for (link, ip) in &self.proxies {
            nl.add_proxy(link.index, *ip).await?;
        }
        Ok(())
    }

    /// What differs from the expectation, one line each (empty: all as wired).
    pub async fn differences(
        &self,
        nl: &Netlink,
        side: &str,
    ) -> Result<Vec<String>, DataplaneError> {
        let mut found = Vec::new();
        let links = nl.links().await?;
        for wanted in &self.up {
            match links.iter().find(|l| l.index == wanted.index) {
                None => found.push(format!("{side}: link {} is gone", wanted.name)),
                Some(link) if !link.up => found.push(format!("{side}: link {} is down", link.name)),
                Some(_) => {}
            }
        }
        for (link, address) in &self.addresses {
            if !nl.addresses(link.index).await?.contains(address) {
                found.push(format!(
                    "{side}: address {address} missing on {}",
                    link.name
                ));
            }
        }
        for (link, ip, mac) in &self.neighbours {
            let entry = nl.neighbour(link.index, *ip).await?;
            if entry.as_deref() != Some(mac.as_slice()) {
                found.push(format!(
                    "{side}: neighbour {ip} on {} is {}, expected {}",
                    link.name,
                    entry.map_or_else(|| "missing".to_string(), |m| format_mac(&m)),
                    format_mac(mac)
                ));
            }
        }
        if !self.routes.is_empty() {
            let present: BTreeSet<Route> = nl.routes().await?.into_iter().map(|(r, _)| r).collect();
            for route in &self.routes {
                if !present.contains(route) {
                    found.push(format!(
                        "{side}: route missing: {}",
                        describe_route(route, &links)
                    ));
                }
            }
        }
        if !self.rules.is_empty() {
            let present: BTreeSet<Rule> = nl
                .rules()
                .await?
                .into_iter()
                .filter(|(_, proto)| *proto == PROTO)
                .map(|(r, _)| r)
                .collect();
            for rule in &self.rules {
                if !present.contains(rule) {
                    found.push(format!("{side}: rule missing: {}", describe_rule(rule)));
                }
            }
        }
        if !self.proxies.is_empty() {
            let present = nl.proxies().await?;
            for (link, ip) in &self.proxies {
                if !present
                    .iter()
                    .any(|p| p.ifindex == link.index && p.address == *ip)
                {
                    found.push(format!(
                        "{side}: proxy ARP entry for {ip} on {} missing",
                        link.name
                    ));
                }
            }
        }
        Ok(found)
    }
}

/// `ip route`-like text of a route, for reports.
pub fn describe_route(route: &Route, links: &[Link]) -> String {
    let dev = links
        .iter()
        .find(|l| l.index == route.oif)
        .map_or_else(|| format!("if{}", route.oif), |l| l.name.clone());
    let mut text = format!("{}", route.destination);
    if let Some(gateway) = route.gateway {
        text.push_str(&format!(" via {gateway}"));
    }
    text.push_str(&format!(" dev {dev}"));
    if route.onlink {
        text.push_str(" onlink");
    }
    if let Some(source) = route.source {
        text.push_str(&format!(" src {source}"));
    }
    text.push_str(&format!(" table {}", route.table));
    text
}

/// `ip rule`-like text of a rule, for reports.
pub fn describe_rule(rule: &Rule) -> String {
    let selector = match rule.selector {
        requests::RuleSelector::To(a) => format!("to {a}"),
        requests::RuleSelector::From(a) => format!("from {a}"),
    };
    format!("{}: {selector} lookup {}", rule.priority, rule.table)
}

/// The two ends of a pod's veth pair.
pub struct VethPair {
    pub host: Link,
    pub pod: Link,
}

/// Makes sure the veth pair `host_name` (host) / `pod_name` (pod) exists and is the
/// pod's: reuses it when already wired (ADD twice), recreates it when only the host
/// end is left, refuses names held by something else.
pub async fn ensure_veth(
    host: &Netlink,
    pod: &Netlink,
    pod_netns: BorrowedFd<'_>,
    host_name: &str,
    pod_name: &str,
    marker: &PodMarker,
) -> Result<VethPair, DataplaneError> {
    let host_link = host.link_by_name(host_name).await?;
    let pod_link = pod.link_by_name(pod_name).await?;
    if let Some(link) = &host_link {
        let ours = link
            .alias
            .as_deref()
            .and_then(PodMarker::parse)
            .is_some_and(|m| {
                m.container_id == marker.container_id
                    && m.ifname == marker.ifname
                    && m.kind == marker.kind
            });
        if !ours {
            return Err(DataplaneError::Conflict {
                name: host_name.to_string(),
                detail: format!("host link has alias {:?}", link.alias),
            });
        }
        if let Some(pod_link) = pod_link {
            return Ok(VethPair {
                host: link.clone(),
                pod: pod_link,
            });
        }
        // A host end whose pod end is gone is a leftover: start again.
        host.delete_link(link.index).await?;
    } else if pod_link.is_some() {
        return Err(DataplaneError::Conflict {
            name: pod_name.to_string(),
            detail: "the pod already has a link of that name".into(),
        });
    }
    host.add_link(
        requests::veth_pair(host_name, pod_name, pod_netns),
        &format!("creating veth {host_name}/{pod_name}"),
    )
    .await?;
    let host_link = require_link(host, host_name, "host").await?;
    host.set_link(
        requests::link_alias(host_link.index, &marker.encode()?),
        &format!("marking {host_name}"),
    )
    .await?;
    let pod_link = require_link(pod, pod_name, "pod").await?;
    Ok(VethPair {
        host: host_link,
        pod: pod_link,
    })
}

/// The link `name`, which must exist (it was just created or checked).
pub async fn require_link(nl: &Netlink, name: &str, side: &str) -> Result<Link, DataplaneError> {
    nl.link_by_name(name)
        .await?
        .ok_or_else(|| DataplaneError::Conflict {
            name: name.to_string(),
            detail: format!("vanished from the {side} namespace while wiring"),
        })
}

/// MAC of a link that must have one (veth, ENI).
pub fn mac_of(link: &Link) -> Result<[u8; 6], DataplaneError> {
    link.mac.ok_or_else(|| DataplaneError::Conflict {
        name: link.name.clone(),
        detail: "link has no Ethernet address".into(),
    })
}
