//! The dataplane materializer: makes the cloud's ENIs real on the local kernel.
//!
//! - `<prefix>-vpc` is the VPC router namespace. Every attached ENI is a veth pair: the
//!   port (`p<hash>`) in `vpc`, the ENI link (`eth<device index>`, the ENI's MAC) in its
//!   node's namespace.
//! - Each port holds its subnet's gateway as a /32 and answers ARP for any address it
//!   can route elsewhere (proxy ARP), so nodes use `default via <gateway>` or treat the
//!   whole subnet as on-link, as on a real VPC.
//! - Every address (/32) and delegated prefix of an ENI is a route in `vpc` to its port.
//! - nftables in `vpc` (table `<prefix>`): anti-spoofing per port, the security
//!   groups of the destination ENI, and the NAT gateway (see `nft`).
//! - `<prefix>-inet` is the outside world behind the internet gateway (see `internet`).
//!
//! Level-triggered: `apply` compares the kernel with the view and changes only the
//! difference, so applying the same view twice changes nothing, and a restarted
//! vpc-sim converges by applying its latest view. See docs/vpc-sim-dataplane.md.

mod internet;
mod kernel;
mod ledger;
mod names;
mod netns;
mod nft;
mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tracing::{debug, info, warn};

use crate::dataplane_view::DataplaneView;

pub use internet::{INTERNET_HOST, NAT_GATEWAY, PEERED_HOST, PEERED_NET};
pub use names::{internet_netns, node_link, node_netns};

use plan::{Desired, Port};

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("invalid materializer prefix {0:?}: expected a letter then up to 31 letters or digits")]
    InvalidPrefix(String),
    #[error("inconsistent dataplane view: {0}")]
    InvalidView(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netns(#[from] eni_netns::NetnsError),
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("nft in namespace {netns} failed: {stderr}")]
    Nft { netns: String, stderr: String },
    #[error("unexpected kernel state: {0}")]
    Kernel(String),
}

pub struct Materializer {
    prefix: String,
    vpc_netns: String,
    /// Netlink handle inside the `vpc` namespace.
    vpc: Handle,
    /// The nft ruleset last loaded: loading runs a process, so an unchanged ruleset is
    /// not loaded again.
    loaded_ruleset: Option<String>,
}

impl Materializer {
    /// Creates (or adopts, after a restart) the `vpc` router namespace of `prefix`.
    pub async fn new(prefix: &str) -> Result<Self, MaterializeError> {
        names::validate_prefix(prefix)?;
        let vpc_netns = names::vpc_netns(prefix);
        netns::create(&vpc_netns).await?;
        netns::run_in(&vpc_netns, || {
            for (key, value) in [
                ("ipv4/ip_forward", "1"),
                // Anti-spoofing is done by nft per port; the kernel's reverse-path check
                // would also refuse ARP from sources routed via another port.
                ("ipv4/conf/all/rp_filter", "0"),
                ("ipv4/conf/default/rp_filter", "0"),
                // Ports answer ARP for every address routed through another port.
                ("ipv4/conf/all/proxy_arp", "1"),
                // Hosts of one subnet reach each other through the router, by design.
                ("ipv4/conf/all/send_redirects", "0"),
                ("ipv4/conf/default/send_redirects", "0"),
                // The simulated VPC is IPv4 only; keep ports free of IPv6 chatter.
                ("ipv6/conf/default/disable_ipv6", "1"),
            ] {
                netns::write_sysctl(key, value)?;
            }
            Ok(())
        })
        .await?;
        let vpc = netns::netlink(&vpc_netns).await?;
        set_up_by_name(&vpc, "lo").await?;
        internet::ensure(prefix, &vpc).await?;
        info!(netns = %vpc_netns, "VPC router namespace ready");
        Ok(Self {
            prefix: prefix.to_string(),
            vpc_netns,
            vpc,
            loaded_ruleset: None,
        })
    }

    /// Name of the VPC router namespace.
    pub fn vpc_netns(&self) -> &str {
        &self.vpc_netns
    }

    /// Converges the kernel to `view`. An inconsistent view is refused before anything
    /// changes; a kernel error stops the pass, and the next `apply` resumes from
    /// whatever state it left.
    pub async fn apply(&mut self, view: &DataplaneView) -> Result<(), MaterializeError> {
        let desired = Desired::from_view(&self.prefix, view)?;
        for name in &desired.netns {
            self.ensure_node_netns(name).await?;
        }
        let ports = self.converge_ports(&desired).await?;
        self.converge_gateways(&desired, &ports).await?;
        self.converge_routes(&desired, &ports).await?;
        let ruleset = nft::ruleset(&self.prefix, &desired, &view.security_groups);
        if self.loaded_ruleset.as_deref() != Some(ruleset.as_str()) {
            // Forget first: if loading fails, the next apply must retry it.
            self.loaded_ruleset = None;
            nft::load(&self.vpc_netns, &ruleset).await?;
            self.loaded_ruleset = Some(ruleset);
        }
        self.remove_stale_netns(&desired)
    }

    /// Removes everything `prefix` created: namespaces named `<prefix>-*` (the `vpc`
    /// namespace takes its ports, routes and nft table with it; removing a veth end
    /// removes its peer in the node) and the node namespaces recorded in the ledger.
    /// Works on the leftovers of a crashed run, since it needs no in-memory state.
    pub async fn cleanup(prefix: &str) -> Result<(), MaterializeError> {
        names::validate_prefix(prefix)?;
        let mut doomed: BTreeSet<String> = ledger::list(prefix)?.into_iter().collect();
        doomed.extend(
            netns::list()?
                .into_iter()
                .filter(|name| names::has_prefix(prefix, name)),
        );
        for name in &doomed {
            netns::delete(name)?;
            ledger::forget(prefix, name)?;
            debug!(netns = %name, "namespace removed");
        }
        ledger::remove(prefix)?;
        info!(prefix, namespaces = doomed.len(), "dataplane cleaned up");
        Ok(())
    }

    async fn ensure_node_netns(&self, name: &str) -> Result<(), MaterializeError> {
        if netns::exists(name) {
            return Ok(());
        }
        if !names::has_prefix(&self.prefix, name) {
            warn!(netns = %name, prefix = %self.prefix, "node namespace outside the prefix; tracked in the ledger");
        }
        // Ledger first: a crash right after creating must not lose the namespace.
        ledger::record(&self.prefix, name)?;
        netns::create(name).await?;
        let handle = netns::netlink(name).await?;
        set_up_by_name(&handle, "lo").await?;
        info!(netns = %name, "node namespace created");
        Ok(())
    }

    /// Removes unwanted ports, creates missing ones; returns port name to link index.
    async fn converge_ports(
        &self,
        desired: &Desired,
    ) -> Result<BTreeMap<String, u32>, MaterializeError> {
        let existing: Vec<kernel::Link> = kernel::links(&self.vpc)
            .await?
            .into_iter()
            .filter(|link| names::is_port(&link.name))
            .collect();
        let mut ports = BTreeMap::new();
        for link in existing {
            match desired.ports.get(&link.name) {
                None => {
                    kernel::delete_link(&self.vpc, link.index).await?;
                    info!(port = %link.name, "port removed");
                }
                // A port that is still down was left half-done by an earlier pass.
                Some(spec) if !link.up => {
                    self.finish_port(&link.name, link.index, spec).await?;
                    ports.insert(link.name, link.index);
                }
                Some(_) => {
                    ports.insert(link.name, link.index);
                }
            }
        }
        for (name, spec) in &desired.ports {
            if ports.contains_key(name) {
                continue;
            }
            let index = self.create_port(name, spec).await?;
            ports.insert(name.clone(), index);
        }
        Ok(ports)
    }

    async fn create_port(&self, name: &str, spec: &Port) -> Result<u32, MaterializeError> {
        let node_ns =
            File::open(netns::path(&spec.node_netns)).map_err(|source| MaterializeError::Io {
                context: format!("opening network namespace {}", spec.node_netns),
                source,
            })?;
        kernel::create_veth(&self.vpc, name, &spec.node_link, spec.mac, &node_ns).await?;
        let index = kernel::link_index(&self.vpc, name).await?.ok_or_else(|| {
            MaterializeError::Kernel(format!("port {name} vanished after creation"))
        })?;
        self.finish_port(name, index, spec).await?;
        info!(port = name, eni = %spec.eni_id, netns = %spec.node_netns, link = %spec.node_link, "ENI attached");
        Ok(index)
    }

    /// Completes a port: tunes it, configures a primary ENI inside the node as the
    /// instance's OS would, and only then sets the port up. "Up" thus marks a finished
    /// port, so a pass interrupted before it is redone by the next one.
    async fn finish_port(
        &self,
        name: &str,
        index: u32,
        spec: &Port,
    ) -> Result<(), MaterializeError> {
        let key = format!("ipv4/neigh/{name}/proxy_delay");
        // Proxy ARP answers are otherwise delayed by up to 0.8 s.
        netns::run_in(&self.vpc_netns, move || netns::write_sysctl(&key, "0")).await?;
        if let Some(primary) = spec.primary {
            let node = netns::netlink(&spec.node_netns).await?;
            match kernel::link_index(&node, &spec.node_link).await? {
                Some(link) => {
                    kernel::set_up(&node, link).await?;
                    kernel::add_address(&node, link, primary.address).await?;
                    kernel::replace_default_route(&node, primary.gateway, link).await?;
                }
                None => warn!(
                    netns = %spec.node_netns,
                    link = %spec.node_link,
                    "primary ENI link not in its node namespace; left unconfigured"
                ),
            }
        }
        kernel::set_up(&self.vpc, index).await
    }

    /// Each port holds exactly its subnet gateway (/32).
    async fn converge_gateways(
        &self,
        desired: &Desired,
        ports: &BTreeMap<String, u32>,
    ) -> Result<(), MaterializeError> {
        let wanted: BTreeMap<u32, Ipv4Net> = ports
            .iter()
            .filter_map(|(name, index)| {
                let gateway = desired.ports.get(name)?.gateway;
                Some((*index, Ipv4Net::from(gateway)))
            })
            .collect();
        let mut present = BTreeSet::new();
        for (index, net, message) in kernel::addresses(&self.vpc).await? {
            let Some(gateway) = wanted.get(&index) else {
                continue; // not a port (lo)
            };
            if *gateway == net {
                present.insert(index);
            } else {
                kernel::delete_address(&self.vpc, message).await?;
            }
        }
        for (index, gateway) in &wanted {
            if !present.contains(index) {
                kernel::add_address(&self.vpc, *index, *gateway).await?;
            }
        }
        Ok(())
    }

    /// Every address and prefix routes to the port of the ENI holding it.
    async fn converge_routes(
        &self,
        desired: &Desired,
        ports: &BTreeMap<String, u32>,
    ) -> Result<(), MaterializeError> {
        let mut wanted: BTreeMap<Ipv4Net, u32> = BTreeMap::new();
        for (net, port) in &desired.routes {
            if let Some(index) = ports.get(port) {
                wanted.insert(*net, *index);
            }
        }
        let existing: BTreeMap<Ipv4Net, u32> =
            kernel::own_routes(&self.vpc).await?.into_iter().collect();
        for (net, index) in &existing {
            if !wanted.contains_key(net) {
                kernel::delete_route(&self.vpc, *net, *index).await?;
                debug!(%net, "route removed");
            }
        }
        for (net, index) in &wanted {
            if existing.get(net) != Some(index) {
                kernel::replace_route(&self.vpc, *net, *index).await?;
                debug!(%net, index, "route set");
            }
        }
        Ok(())
    }

    /// Deletes node namespaces this prefix created whose node left the view.
    fn remove_stale_netns(&self, desired: &Desired) -> Result<(), MaterializeError> {
        for name in ledger::list(&self.prefix)? {
            if !desired.netns.contains(&name) {
                netns::delete(&name)?;
                ledger::forget(&self.prefix, &name)?;
                info!(netns = %name, "node namespace removed");
            }
        }
        Ok(())
    }
}

async fn set_up_by_name(handle: &Handle, name: &str) -> Result<(), MaterializeError> {
    if let Some(index) = kernel::link_index(handle, name).await? {
        kernel::set_up(handle, index).await?;
    }
    Ok(())
}
