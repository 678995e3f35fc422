//! What a node's network namespace holds, read with iproute2: its links (with the
//! ifalias in which eni-agent records whose wiring a link is), the IPv4 routes of every
//! table, the policy rules and the proxy-ARP entries. Trials check with it that a pod's
//! wiring is there, or that nothing of it is left.

use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::netns::{self, NetnsError};

#[derive(Debug, thiserror::Error)]
pub enum NodeNetError {
    #[error(transparent)]
    Ip(#[from] NetnsError),
    #[error("`ip -j link show` in {netns} printed what this reader cannot parse: {source}")]
    Links {
        netns: String,
        source: serde_json::Error,
    },
}

/// A link as `ip -j link show` prints it.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeLink {
    #[serde(rename = "ifname")]
    pub name: String,
    #[serde(rename = "address", default)]
    pub mac: String,
    #[serde(rename = "ifalias", default)]
    pub alias: String,
    #[serde(default)]
    pub flags: Vec<String>,
}

impl NodeLink {
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
}

/// One reading of a node namespace.
#[derive(Clone, Debug)]
pub struct NodeNet {
    pub links: Vec<NodeLink>,
    /// `ip -4 -o route show table all`, one route a line.
    pub routes: Vec<String>,
    /// `ip -4 rule show`.
    pub rules: Vec<String>,
    /// `ip -4 neigh show proxy`.
    pub proxies: Vec<String>,
}

impl NodeNet {
    pub fn read(netns: &str) -> Result<NodeNet, NodeNetError> {
        let lines = |args: &[&str]| -> Result<Vec<String>, NetnsError> {
            let mut all = vec!["-n", netns];
            all.extend_from_slice(args);
            Ok(netns::ip(&all)?.lines().map(str::to_owned).collect())
        };
        let links = netns::ip(&["-n", netns, "-j", "link", "show"])?;
        let links = serde_json::from_str(&links).map_err(|source| NodeNetError::Links {
            netns: netns.to_owned(),
            source,
        })?;
        Ok(NodeNet {
            links,
            routes: lines(&["-4", "-o", "route", "show", "table", "all"])?,
            rules: lines(&["-4", "rule", "show"])?,
            proxies: lines(&["-4", "neigh", "show", "proxy"])?,
        })
    }

    /// Links whose ifalias names container `id`: the agent marks the host end of every
    /// wiring it makes with the container's ID.
    pub fn links_of(&self, container_id: &str) -> Vec<&NodeLink> {
        self.links
            .iter()
            .filter(|l| l.alias.split_whitespace().any(|w| w == container_id))
            .collect()
    }

    /// The link with MAC address `mac`, if the namespace has it.
    pub fn link_with_mac(&self, mac: &str) -> Option<&NodeLink> {
        self.links.iter().find(|l| l.mac.eq_ignore_ascii_case(mac))
    }

    /// Routes, rules and proxy-ARP entries that name `address` (a pod's /32 route, its
    /// `to`/`from` rules, its proxy entry on an ENI).
    pub fn naming(&self, address: Ipv4Addr) -> Vec<String> {
        let address = address.to_string();
        let slash32 = format!("{address}/32");
        self.routes
            .iter()
            .chain(&self.rules)
            .chain(&self.proxies)
            .filter(|line| {
                line.split_whitespace()
                    .any(|w| w == address || w == slash32)
            })
            .cloned()
            .collect()
    }
}
