//! The kernel's own cost of a veth pod path, measured beside ours: five plain namespaces
//! `pod a – node a – router – node b – pod b` joined by veths, with /32 routes and proxy
//! ARP, conntrack on at both nodes (as on any node kube-proxy runs on), and none of the
//! product's rules. Its pod-to-pod over node-to-node ratio is what a veth datapath can
//! reach on this machine at best; the gap between it and `shared_veth` is ours.

use std::{net::Ipv4Addr, process::Command};

use eni_e2e::netns;

use super::{BenchError, dataplane::wire_pod_end};

pub struct Reference {
    namespaces: Vec<String>,
}

/// Address of node `n` (1 or 2) and of its pod.
fn node_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 251, 0, 10 * n)
}
fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 251, 0, 10 * n + 1)
}

impl Reference {
    pub const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 20);
    pub const POD_B: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 21);

    /// Namespaces of (node a, node b, pod a, pod b).
    pub fn ends(&self) -> [&str; 4] {
        let n = &self.namespaces;
        [&n[1], &n[2], &n[3], &n[4]]
    }

    pub async fn build(prefix: &str) -> Result<Reference, BenchError> {
        let name = |s: &str| format!("{prefix}ref{s}");
        let router = name("r");
        let namespaces = vec![
            router.clone(),
            name("na"),
            name("nb"),
            name("pa"),
            name("pb"),
        ];
        let reference = Reference { namespaces };
        for ns in &reference.namespaces {
            netns::add(ns).await?;
        }
        sysctl(&router, &["net.ipv4.ip_forward=1"])?;
        for n in [1u8, 2] {
            let (node, pod) = (
                &reference.namespaces[n as usize],
                &reference.namespaces[n as usize + 2],
            );
            let (port, node_addr, pod_addr) = (
                format!("p{n}"),
                node_ip(n).to_string(),
                pod_ip(n).to_string(),
            );
            let host_veth = format!("v{n}");
            for args in [
                // node's uplink to the router, the router answering for everyone
                vec![
                    "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                    "netns", &router,
                ],
                vec!["-n", &router, "addr", "add", "10.251.0.1/32", "dev", &port],
                vec!["-n", &router, "link", "set", &port, "up"],
                vec![
                    "-n",
                    &router,
                    "route",
                    "add",
                    &format!("{node_addr}/32"),
                    "dev",
                    &port,
                ],
                vec![
                    "-n",
                    &router,
                    "route",
                    "add",
                    &format!("{pod_addr}/32"),
                    "dev",
                    &port,
                ],
                vec![
                    "-n",
                    node,
                    "addr",
                    "add",
                    &format!("{node_addr}/24"),
                    "dev",
                    "eth0",
                ],
                vec!["-n", node, "link", "set", "eth0", "up"],
                // the pod behind its node, as a veth CNI wires it
                vec![
                    "-n", node, "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0",
                    "netns", pod,
                ],
                vec![
                    "-n",
                    node,
                    "addr",
                    "add",
                    "169.254.1.1/32",
                    "dev",
                    &host_veth,
                ],
                vec!["-n", node, "link", "set", &host_veth, "up"],
                vec![
                    "-n",
                    node,
                    "route",
                    "add",
                    &format!("{pod_addr}/32"),
                    "dev",
                    &host_veth,
                ],
            ] {
                netns::ip(&args)?;
            }
            wire_pod_end(pod, &format!("{pod_addr}/32"), "169.254.1.1")?;
            sysctl(&router, &[&format!("net.ipv4.conf.{port}.proxy_arp=1")])?;
            sysctl(
                node,
                &["net.ipv4.ip_forward=1", "net.ipv4.conf.eth0.proxy_arp=1"],
            )?;
            // Conntrack at the node: a ct expression turns it on for the namespace.
            for args in [
                vec!["add", "table", "ip", "node"],
                vec![
                    "add",
                    "chain",
                    "ip",
                    "node",
                    "forward",
                    "{ type filter hook forward priority 0 ; }",
                ],
                vec![
                    "add",
                    "rule",
                    "ip",
                    "node",
                    "forward",
                    "ct",
                    "state",
                    "established,related",
                    "accept",
                ],
            ] {
                netns::run(
                    Command::new("ip")
                        .args(["netns", "exec", node, "nft"])
                        .args(args),
                )?;
            }
        }
        Ok(reference)
    }

    pub fn remove(self) {
        for ns in &self.namespaces {
            let _ = netns::delete(ns);
        }
    }
}

fn sysctl(ns: &str, settings: &[&str]) -> Result<(), BenchError> {
    netns::run(
        Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-qw"])
            .args(settings),
    )?;
    Ok(())
}
