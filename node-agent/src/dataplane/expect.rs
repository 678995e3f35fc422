//! The expected state of one namespace for a pod, shared by every datapath: applied to
//! wire the pod, compared with the kernel to check it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use eni_crds::Mac;
use ipnet::Ipv4Net;

use super::error::DataplaneError;
use super::kernel::{Link, Netlink};
use super::requests::{self, PROTO, Route, Rule};

/// What one namespace must hold for a pod; applied in dependency order (links up,
/// addresses, neighbours, routes, rules, proxy entries), each step idempotent.
#[derive(Debug, Default)]
pub struct Expect {
    pub up: Vec<Link>,
    pub addresses: Vec<(Link, Ipv4Net)>,
    pub neighbours: Vec<(Link, Ipv4Addr, Mac)>,
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
            nl.set_neighbour(requests::permanent_neighbour(link.index, *ip, mac.octets()))
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
            if entry.as_deref() != Some(mac.octets().as_slice()) {
                let present = match entry.as_deref() {
                    None => "missing".to_string(),
                    Some(bytes) => <[u8; 6]>::try_from(bytes)
                        .map_or_else(|_| format!("{bytes:02x?}"), |o| Mac::new(o).to_string()),
                };
                found.push(format!(
                    "{side}: neighbour {ip} on {} is {present}, expected {mac}",
                    link.name,
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
