//! What must hold once the churn has stopped and everything converged, each read from
//! its own source: the cloud's ENIs against the PodNetworks and the pools' bounds, each
//! node's kernel, the pods' sandboxes, and traffic from a VPC host.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use eni_crds::{ENIPool, Mode, PodNetwork};
use eni_e2e::{
    bed::{Bed, BedError},
    netns,
    node_net::NodeNet,
    trial::check,
};
use eni_test_support::probe;

/// A pod alive at the end: name, node, address.
pub type LivePod = (String, String, Ipv4Addr);

/// Warm ENIs an Exclusive or Trunk pool keeps per node beyond its pods.
pub struct EniBounds<'a> {
    pub pool: &'a str,
    pub warm_enis: usize,
}

const POOL_TAG: &str = "eni-operator.io/pool";
const NODE_TAG: &str = "eni-operator.io/node";

/// The cloud against the PodNetworks: no owned ENI is detached; every Exclusive or Trunk
/// ENI is a live pod's or within its pool's warm bound on its node; the SharedIP pool's
/// addresses in the cloud are exactly the ones its status counts (used, warm, cooling),
/// and its idle ones stay within `warm_ips` plus one ENI's batch per node.
pub async fn cloud(
    bed: &Bed,
    pns: &[PodNetwork],
    bounds: &[EniBounds<'_>],
    shared: (&str, usize, usize),
    failures: &mut Vec<String>,
) -> Result<(), BedError> {
    let owned = bed.vpc.owned_enis(&bed.name).await?;
    let detached: Vec<&str> = owned
        .iter()
        .filter(|e| e.attached_to.is_none() && e.trunk.is_none())
        .map(|e| e.id.as_str())
        .collect();
    check(
        &format!(
            "{} owned ENIs detached (leaked) {detached:?}",
            detached.len()
        ),
        detached.is_empty(),
        failures,
    );
    let held: BTreeSet<&str> = pns
        .iter()
        .filter(|p| p.spec.mode != Mode::SharedIp)
        .map(|p| p.spec.allocation.eni_id.as_str())
        .collect();
    for bound in bounds {
        let mut idle: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut trunks: BTreeMap<String, usize> = BTreeMap::new();
        for e in owned
            .iter()
            .filter(|e| e.tags[POOL_TAG].as_str() == Some(bound.pool))
        {
            let node = e.tags[NODE_TAG].as_str().unwrap_or("?").to_owned();
            if e.interface_type == "trunk" {
                *trunks.entry(node).or_default() += 1;
            } else if !held.contains(e.id.as_str()) {
                idle.entry(node).or_default().push(e.id.as_str());
            }
        }
        let over: Vec<_> = idle
            .iter()
            .filter(|(_, ids)| ids.len() > bound.warm_enis)
            .collect();
        check(
            &format!(
                "pool {}: ENIs no pod holds, per node, within warmENIs {} {idle:?}",
                bound.pool, bound.warm_enis
            ),
            over.is_empty(),
            failures,
        );
        check(
            &format!(
                "pool {}: at most one trunk ENI per node {trunks:?}",
                bound.pool
            ),
            trunks.values().all(|n| *n <= 1),
            failures,
        );
    }
    let (pool, warm_ips, batch) = shared;
    let used: BTreeSet<String> = pns
        .iter()
        .filter(|p| p.spec.pool == pool)
        .map(|p| p.spec.allocation.address.to_string())
        .collect();
    let shared_enis: Vec<_> = owned
        .iter()
        .filter(|e| e.tags[POOL_TAG].as_str() == Some(pool))
        .collect();
    let secondaries: Vec<&String> = shared_enis
        .iter()
        .flat_map(|e| e.secondary.iter())
        .collect();
    let nodes: BTreeSet<&str> = shared_enis
        .iter()
        .filter_map(|e| e.tags[NODE_TAG].as_str())
        .collect();
    let idle = secondaries
        .iter()
        .filter(|a| !used.contains(a.as_str()))
        .count();
    let status = kube::Api::<ENIPool>::all(bed.client.clone())
        .get(pool)
        .await?
        .status
        .map(|s| s.addresses)
        .unwrap_or_default();
    check(
        &format!(
            "pool {pool}: {} addresses in the cloud = its status total {} = used {} + warm {} + cooling {}",
            secondaries.len(),
            status.total,
            status.used,
            status.warm,
            status.cooling
        ),
        secondaries.len() as u32 == status.total
            && status.total == status.used + status.warm + status.cooling,
        failures,
    );
    let bound = nodes.len() * (warm_ips + batch);
    check(
        &format!(
            "pool {pool}: {idle} idle addresses on {} nodes, within {bound}",
            nodes.len()
        ),
        idle <= bound,
        failures,
    );
    Ok(())
}

/// Pod addresses a node's kernel wires: `to`/`from` rules (priorities 512, 2048), host
/// routes the agent made (protocol 225) and proxy-ARP entries.
fn wired_addresses(net: &NodeNet) -> BTreeSet<Ipv4Addr> {
    let mut found = BTreeSet::new();
    for rule in &net.rules {
        let prio = rule.split(':').next().unwrap_or_default().trim();
        if prio != "512" && prio != "2048" {
            continue;
        }
        let words: Vec<&str> = rule.split_whitespace().collect();
        for pair in words.windows(2) {
            if matches!(pair[0], "to" | "from")
                && let Ok(ip) = pair[1].trim_end_matches("/32").parse()
            {
                found.insert(ip);
            }
        }
    }
    for route in net.routes.iter().filter(|r| r.contains("proto 225")) {
        if let Some(Ok(ip)) = route.split_whitespace().next().map(str::parse) {
            found.insert(ip);
        }
    }
    for proxy in &net.proxies {
        if let Some(Ok(ip)) = proxy.split_whitespace().next().map(str::parse) {
            found.insert(ip);
        }
    }
    found
}

/// Each node's kernel: every wired pod address is a live pod's on that node, and every
/// live pod's address is wired there.
pub fn kernel(bed: &Bed, live: &[LivePod], failures: &mut Vec<String>) -> Result<(), BedError> {
    for node in bed.nodes() {
        let net = NodeNet::read(&node.netns).map_err(|e| BedError::Other(e.to_string()))?;
        let wired = wired_addresses(&net);
        let here: BTreeSet<Ipv4Addr> = live
            .iter()
            .filter(|(_, n, _)| *n == node.name)
            .map(|(_, _, ip)| *ip)
            .collect();
        let stale: Vec<_> = wired.difference(&here).collect();
        let unwired: Vec<_> = here.difference(&wired).collect();
        check(
            &format!(
                "node {}: {} pod addresses wired for {} live pods; stale {stale:?}, unwired {unwired:?}",
                node.name,
                wired.len(),
                here.len()
            ),
            stale.is_empty() && unwired.is_empty(),
            failures,
        );
    }
    Ok(())
}

/// The pods' sandboxes: one per live pod, and no address in two of them.
pub fn sandboxes(bed: &Bed, live: &[LivePod], failures: &mut Vec<String>) -> Result<(), BedError> {
    let all = netns::list(&format!("{}k", bed.prefix));
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sandbox in &all {
        let out = netns::ip(&["-n", sandbox, "-4", "-o", "addr", "show", "scope", "global"])?;
        for line in out.lines() {
            if let Some(cidr) = line.split_whitespace().skip_while(|w| *w != "inet").nth(1) {
                let ip = cidr.split('/').next().unwrap_or_default().to_owned();
                holders.entry(ip).or_default().push(sandbox.clone());
            }
        }
    }
    let twice: Vec<_> = holders.iter().filter(|(_, s)| s.len() > 1).collect();
    check(
        &format!(
            "{} sandboxes for {} live pods; addresses in two sandboxes {twice:?}",
            all.len(),
            live.len()
        ),
        all.len() == live.len() && twice.is_empty(),
        failures,
    );
    Ok(())
}

/// Every live pod answers a VPC host.
pub fn traffic(vm_netns: &str, live: &[LivePod], failures: &mut Vec<String>) {
    let unreachable: Vec<String> = live
        .iter()
        .filter(|(_, _, ip)| !probe::ping(vm_netns, *ip))
        .map(|(name, _, ip)| format!("{name} {ip}"))
        .collect();
    check(
        &format!(
            "{} live pods, {} unreachable from a VPC host {unreachable:?}",
            live.len(),
            unreachable.len()
        ),
        unreachable.is_empty(),
        failures,
    );
}
