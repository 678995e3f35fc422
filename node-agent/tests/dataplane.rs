//! The dataplane against the real kernel, in a fake VPC made by vpc-sim's materializer:
//! a node namespace whose ENIs are veth ends with the ENI's MAC, named as on an
//! instance (`eth<device index>`, `vlan<id>` for a trunk member), and a VPC router
//! namespace holding each subnet's gateway and routing each ENI's addresses to it.
//! Needs root.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eni_crds::{Allocation, Datapath, Mac, Mode};
use eni_node_agent::dataplane::{
    Dataplane, DataplaneConfig, DataplaneError, Egress, KernelFeature, PodRequest, UnwireRequest,
    WiringKind,
};
use eni_node_agent::protocol::Bandwidth;
use eni_test_support::command::must;
use eni_test_support::transfer::transfer;
use eni_test_support::{AllocationBuilder, FakeEni, FakeEniKind, FakeVpc, probe};
use ipnet::Ipv4Net;

const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

/// An ENI of subnet `10.0.<subnet>.0/24`; pods take addresses from its lower half.
const fn eni(id: &'static str, index: u8, subnet: u8, kind: FakeEniKind) -> FakeEni {
    FakeEni {
        id,
        mac: MACS[index as usize],
        device_index: index as u32,
        subnet: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, subnet, 0), 24),
        block: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, subnet, 0), 25),
        kind,
    }
}

const MACS: [Mac; 5] = [
    Mac::new([2, 0, 0, 0, 0, 4]),
    Mac::new([2, 0, 0, 0, 0, 5]),
    Mac::new([2, 0, 0, 0, 0, 6]),
    Mac::new([2, 0, 0, 0, 0, 7]),
    Mac::new([2, 0, 0, 0, 0, 8]),
];

/// The node's own ENI: its address and default route are set at boot.
const PRIMARY: FakeEni = FakeEni {
    block: Ipv4Net::new_assert(NODE_IP, 32),
    ..eni("eni-0004", 0, 0, FakeEniKind::Primary)
};
const SHARED: FakeEni = eni("eni-0005", 1, 1, FakeEniKind::Secondary);
const EXCLUSIVE: FakeEni = eni("eni-0006", 2, 2, FakeEniKind::Secondary);
const MEMBER: FakeEni = eni(
    "eni-0007",
    3,
    3,
    FakeEniKind::Member {
        trunk: TRUNK.id,
        vlan_id: 7,
    },
);
const TRUNK: FakeEni = eni("eni-0008", 4, 4, FakeEniKind::Trunk);

/// The fake VPC of one test and its pod namespaces; all removed on drop, also when the
/// test panics.
struct Bed {
    vpc: FakeVpc,
    host: String,
}

impl Bed {
    fn new() -> Self {
        let vpc =
            FakeVpc::node("dpt", &[PRIMARY, SHARED, EXCLUSIVE, MEMBER, TRUNK]).expect("fake VPC");
        let host = vpc.host();
        Bed { vpc, host }
    }

    fn host_path(&self) -> PathBuf {
        self.vpc.host_path()
    }

    fn pod(&mut self) -> (String, PathBuf) {
        self.vpc.pod().expect("pod namespace")
    }

    async fn dataplane(&self) -> Dataplane {
        Dataplane::new(DataplaneConfig {
            host_netns: Some(self.host_path()),
            node_ip: NODE_IP,
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            // Pods keep their address everywhere (no SNAT: the tests' VPC has no
            // outside).
            egress: Egress {
                external_snat: true,
                ..Egress::default()
            },
        })
        .await
        .expect("dataplane")
    }

    /// Rules, every route table, proxy entries and links (name, MAC, alias, up) of a
    /// namespace: what must be identical before wiring and after unwiring.
    fn snapshot(&self, ns: &str) -> String {
        let links: serde_json::Value =
            serde_json::from_str(&must(&["ip", "-j", "-n", ns, "link", "show"])).unwrap();
        let mut link_lines: Vec<String> = links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
                format!("{} {} {} up={up}", l["ifname"], l["address"], l["ifalias"])
            })
            .collect();
        link_lines.sort();
        format!(
            "rules:\n{}routes:\n{}proxies:\n{}addresses:\n{}links:\n{}",
            must(&["ip", "-n", ns, "rule"]),
            must(&["ip", "-4", "-n", ns, "route", "show", "table", "all"]),
            must(&["ip", "-n", ns, "neigh", "show", "proxy"]),
            must(&["ip", "-n", ns, "-4", "-o", "addr"]),
            link_lines.join("\n")
        )
    }

    fn ping(&self, ns: &str, target: &str) -> bool {
        probe::ping(ns, target.parse().expect("an IPv4 address"))
    }
}

/// Kills a background process when the test ends, also on panic.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Address `10.0.<subnet>.<host>/<prefix_length>` on `eni`.
fn allocation(eni: &FakeEni, host: u8, prefix_length: u8) -> AllocationBuilder {
    let [a, b, c, _] = eni.subnet.network().octets();
    eni_test_support::allocation(eni, Ipv4Addr::new(a, b, c, host)).prefix_length(prefix_length)
}

fn request(id: &str, netns: &Path, mode: Mode, allocation: Allocation) -> PodRequest {
    PodRequest {
        container_id: id.into(),
        netns_path: netns.to_path_buf(),
        ifname: "eth0".into(),
        mode,
        allocation,
        bandwidth: None,
    }
}

fn unwire_request(id: &str, netns: &Path) -> UnwireRequest {
    UnwireRequest {
        container_id: id.into(),
        ifname: "eth0".into(),
        netns_path: Some(netns.to_path_buf()),
        address: None,
    }
}

fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn shared_ip_veth_policy_routing() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = bed.dataplane().await;
    let (pod_a, ns_a) = bed.pod();
    let (pod_b, ns_b) = bed.pod();

    let req_a = request(
        "ctr-a",
        &ns_a,
        Mode::SharedIp,
        allocation(&SHARED, 20, 32).build(),
    );
    let wired = dp.wire(&req_a).await.expect("wire a");
    assert_eq!(wired.kind, WiringKind::SharedVeth);
    assert_eq!(wired.pod_ifname, "eth0");
    assert!(wired.host_ifname.starts_with("eni") && wired.host_ifname.len() <= 15);
    assert_eq!(wired.address.to_string(), "10.0.1.20/32");
    assert_eq!(wired.gateway, Ipv4Addr::new(169, 254, 1, 1));

    // The pod reaches its gateway through the ENI, the node, and the VPC reaches it.
    assert!(bed.ping(&pod_a, "10.0.1.1"), "pod -> subnet gateway");
    assert!(bed.ping(&pod_a, "10.0.0.10"), "pod -> node");
    assert!(bed.ping(bed.vpc.router(), "10.0.1.20"), "VPC router -> pod");

    let rules = must(&["ip", "-n", &bed.host, "rule"]);
    assert_eq!(
        lines_with(&rules, "10.0.1.20"),
        vec![
            "512: from all to 10.0.1.20 lookup main proto 225",
            "2048: from 10.0.1.20 lookup 1001 proto 225",
        ]
    );
    let shared = SHARED.link();
    assert_eq!(
        must(&["ip", "-n", &bed.host, "route", "show", "table", "1001"]),
        format!(
            "default via 10.0.1.1 dev {shared} proto 225 onlink \n10.0.1.0/24 dev {shared} proto 225 scope link \n"
        )
    );
    let main = must(&["ip", "-n", &bed.host, "route"]);
    assert_eq!(
        lines_with(&main, "10.0.1.20"),
        vec![format!(
            "10.0.1.20 dev {} proto 225 scope link",
            wired.host_ifname
        )]
    );
    assert_eq!(
        must(&["ip", "-n", &bed.host, "neigh", "show", "proxy"]).trim(),
        format!("10.0.1.20 dev {shared} proxy proto 225")
    );
    assert_eq!(
        must(&["ip", "-n", &pod_a, "route"]),
        "default via 169.254.1.1 dev eth0 proto 225 onlink \n"
    );
    let neigh = must(&["ip", "-n", &pod_a, "neigh"]);
    assert!(
        neigh.contains(&format!(
            "169.254.1.1 dev eth0 lladdr {} PERMANENT",
            wired.host_mac
        )),
        "{neigh}"
    );
    assert_eq!(dp.check(&req_a).await.unwrap(), Vec::<String>::new());

    // Drift is reported; ADD again repairs it and is otherwise a no-op.
    must(&[
        "ip",
        "-n",
        &bed.host,
        "rule",
        "del",
        "pref",
        "2048",
        "from",
        "10.0.1.20",
    ]);
    let differences = dp.check(&req_a).await.unwrap();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(
        differences[0].contains("2048: from 10.0.1.20 lookup 1001"),
        "{differences:?}"
    );
    let snapshot_a = {
        assert_eq!(dp.wire(&req_a).await.expect("rewire"), wired);
        bed.snapshot(&bed.host)
    };
    assert_eq!(dp.wire(&req_a).await.expect("ADD twice"), wired);
    assert_eq!(bed.snapshot(&bed.host), snapshot_a);
    assert_eq!(dp.check(&req_a).await.unwrap(), Vec::<String>::new());

    // A second pod shares the ENI table; it stays while one pod still uses it.
    let req_b = request(
        "ctr-b",
        &ns_b,
        Mode::SharedIp,
        allocation(&SHARED, 21, 32).build(),
    );
    dp.wire(&req_b).await.expect("wire b");
    assert!(bed.ping(&pod_b, "10.0.1.1"));
    assert!(bed.ping(&pod_a, "10.0.1.21"), "pod -> pod on the same node");
    dp.unwire(&unwire_request("ctr-a", &ns_a))
        .await
        .expect("unwire a");
    assert!(lines_with(&must(&["ip", "-n", &bed.host, "rule"]), "10.0.1.20").is_empty());
    assert!(
        must(&["ip", "-n", &bed.host, "route", "show", "table", "1001"])
            .contains("default via 10.0.1.1")
    );
    assert!(bed.ping(&pod_b, "10.0.1.1"));
    assert!(
        must(&["ip", "-n", &pod_a, "link"])
            .lines()
            .all(|l| !l.contains("eth0"))
    );

    dp.unwire(&unwire_request("ctr-b", &ns_b))
        .await
        .expect("unwire b");
    // Only the node-wide rule for DNATed replies stays (see the trial below).
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
    // DEL twice, and DEL of a container never seen, succeed.
    dp.unwire(&unwire_request("ctr-b", &ns_b))
        .await
        .expect("DEL twice");
    dp.unwire(&unwire_request("never-seen", &ns_b))
        .await
        .expect("DEL unknown");
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
}

const DNAT_REPLIES_RULE: &str = "1024:\tfrom all fwmark 0x80/0x80 lookup main proto 225";

/// `snapshot` with the node-wide `fwmark 0x80/0x80 lookup main` rule added in place.
fn with_dnat_replies_rule(snapshot: &str) -> String {
    let (rules, rest) = snapshot
        .split_once("routes:\n")
        .expect("snapshot has routes");
    let mut lines: Vec<&str> = rules.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.split(':')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p > 1024)
        })
        .unwrap_or(lines.len());
    lines.insert(at, DNAT_REPLIES_RULE);
    format!("{}\nroutes:\n{rest}", lines.join("\n"))
}

/// A connection the node DNATs to a SharedIP pod (what portmap does for a hostPort and
/// kube-proxy for a NodePort) is answered: the reply is marked by the agent's nftables
/// chain and routed by the main table, out of the node's primary ENI with the node's
/// address. Without the mark rule the reply takes the pod's ENI table and the VPC's
/// anti-spoofing drops it; CHECK reports the missing rule and ADD puts it back.
#[tokio::test]
async fn shared_ip_pod_answers_connections_the_node_dnats() {
    let mut bed = Bed::new();
    let dp = bed.dataplane().await;
    let (pod, ns) = bed.pod();
    let req = request(
        "ctr-dnat",
        &ns,
        Mode::SharedIp,
        allocation(&SHARED, 30, 32).build(),
    );
    dp.wire(&req).await.expect("wire");
    let _server = probe::EchoServer::start(&pod, 7000).expect("echo server in the pod");
    let host = bed.host.clone();
    let nft = |script: &str| {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f: {script}");
    };
    // A hostPort as portmap programs it, in a table of its own.
    nft("table ip hostport {
           chain prerouting { type nat hook prerouting priority dstnat;
             ip daddr 10.0.0.10 tcp dport 17001 dnat to 10.0.1.30:7000; }
         }");
    let node_port: std::net::SocketAddr = "10.0.0.10:17001".parse().unwrap();
    let router = bed.vpc.router().to_owned();
    assert!(
        probe::tcp_echo(&router, node_port),
        "VPC -> node:17001 -> pod"
    );
    let rules = must(&["ip", "-n", &bed.host, "rule"]);
    assert_eq!(
        lines_with(&rules, "fwmark"),
        vec!["1024: from all fwmark 0x80/0x80 lookup main proto 225"]
    );
    let table = must(&[
        "ip",
        "netns",
        "exec",
        &bed.host,
        "nft",
        "list",
        "table",
        "ip",
        "eni-agent",
    ]);
    assert!(
        table.contains("ct direction reply ct status dnat meta mark set meta mark | 0x00000080"),
        "{table}"
    );
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());

    // Without the rule the reply leaves through the pod's ENI and is dropped.
    must(&["ip", "-n", &bed.host, "rule", "del", "pref", "1024"]);
    assert!(
        !probe::tcp_echo(&router, node_port),
        "without the mark rule the VPC must drop the reply"
    );
    // The pod's own address still answers: only DNATed replies need the rule.
    assert!(probe::tcp_echo(&router, "10.0.1.30:7000".parse().unwrap()));
    let differences = dp.check(&req).await.unwrap();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(
        differences[0].contains("fwmark 0x80/0x80 lookup main"),
        "{differences:?}"
    );

    // Someone flushes the agent's table: CHECK says so, ADD repairs both.
    must(&[
        "ip",
        "netns",
        "exec",
        &bed.host,
        "nft",
        "delete",
        "table",
        "ip",
        "eni-agent",
    ]);
    let differences = dp.check(&req).await.unwrap();
    assert!(
        differences
            .iter()
            .any(|d| d.contains("table ip eni-agent is missing")),
        "{differences:?}"
    );
    dp.wire(&req).await.expect("ADD again repairs");
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());
    assert!(
        probe::tcp_echo(&router, node_port),
        "VPC -> node:17001 -> pod after the repair"
    );
    dp.unwire(&unwire_request("ctr-dnat", &ns))
        .await
        .expect("unwire");
}

#[tokio::test]
async fn exclusive_eni_moves_into_the_pod_and_back() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = bed.dataplane().await;
    let (pod, ns) = bed.pod();
    let pod_before = bed.snapshot(&pod);

    let req = request(
        "ctr-x",
        &ns,
        Mode::Exclusive,
        allocation(&EXCLUSIVE, 20, 24).build(),
    );
    let wired = dp.wire(&req).await.expect("wire");
    assert_eq!(wired.kind, WiringKind::Exclusive);
    assert_eq!(wired.pod_mac, EXCLUSIVE.mac);
    assert_eq!(wired.address.to_string(), "10.0.2.20/24");
    assert_eq!(wired.gateway, Ipv4Addr::new(10, 0, 2, 1));
    let host_links = must(&["ip", "-n", &bed.host, "link"]);
    assert!(
        !host_links.contains(&EXCLUSIVE.link()),
        "ENI still in the host: {host_links}"
    );
    let pod_link = must(&["ip", "-n", &pod, "link", "show", "eth0"]);
    assert!(pod_link.contains(&EXCLUSIVE.mac.to_string()), "{pod_link}");
    assert!(
        pod_link.contains(&format!(
            "alias eni-agent/v1 lent {} ctr-x",
            EXCLUSIVE.link()
        )),
        "{pod_link}"
    );

    assert!(
        bed.ping(&pod, "10.0.2.1"),
        "pod -> gateway over its own ENI"
    );
    assert!(
        bed.ping(&pod, "10.0.0.10"),
        "pod -> node over the host veth"
    );
    assert!(bed.ping(bed.vpc.router(), "10.0.2.20"), "VPC -> pod");
    assert_eq!(
        must(&["ip", "-n", &pod, "route"]),
        "default via 10.0.2.1 dev eth0 proto 225 onlink \n\
         10.0.0.10 via 169.254.1.1 dev veth0 proto 225 src 10.0.2.20 onlink \n\
         10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.20 \n\
         10.96.0.0/12 via 169.254.1.1 dev veth0 proto 225 src 10.0.2.20 onlink \n"
    );
    // Answers to connections that came in through the veth go back through it.
    assert_eq!(
        must(&["ip", "-n", &pod, "route", "show", "table", "225"]),
        "default via 169.254.1.1 dev veth0 proto 225 src 10.0.2.20 onlink \n"
    );
    assert!(
        must(&["ip", "-n", &pod, "rule"])
            .contains("1024:\tfrom all fwmark 0x80/0x80 lookup 225 proto 225"),
        "{}",
        must(&["ip", "-n", &pod, "rule"])
    );
    // The node SNATs what the pod forwards through it (its veth is in group 226).
    let host_link = must(&[
        "ip",
        "-n",
        &bed.host,
        "-d",
        "link",
        "show",
        &wired.host_ifname,
    ]);
    assert!(host_link.contains("group 226"), "{host_link}");
    let snat = must(&[
        "ip",
        "netns",
        "exec",
        &bed.host,
        "nft",
        "list",
        "chain",
        "ip",
        "eni-agent",
        "pod-snat",
    ]);
    assert!(snat.contains("iifgroup 226 snat to 10.0.0.10"), "{snat}");
    let main = must(&["ip", "-n", &bed.host, "route"]);
    assert_eq!(
        lines_with(&main, "10.0.2.20"),
        vec![format!(
            "10.0.2.20 dev {} proto 225 scope link",
            wired.host_ifname
        )]
    );
    assert!(lines_with(&must(&["ip", "-n", &bed.host, "rule"]), "10.0.2.20").is_empty());
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());

    // ADD twice: same result, same kernel state.
    let snapshot = (bed.snapshot(&bed.host), bed.snapshot(&pod));
    assert_eq!(dp.wire(&req).await.expect("ADD twice"), wired);
    assert_eq!((bed.snapshot(&bed.host), bed.snapshot(&pod)), snapshot);

    // The pod's address removed behind the agent's back: CHECK says so.
    must(&["ip", "-n", &pod, "addr", "flush", "dev", "eth0"]);
    let differences = dp.check(&req).await.unwrap();
    assert!(
        differences
            .iter()
            .any(|d| d.contains("address 10.0.2.20/24 missing on eth0")),
        "{differences:?}"
    );

    dp.unwire(&unwire_request("ctr-x", &ns))
        .await
        .expect("unwire");
    // The node keeps its node-wide rule (made with the first pod, like ip_forward).
    assert_eq!(
        bed.snapshot(&bed.host),
        with_dnat_replies_rule(&before),
        "ENI back under its name"
    );
    assert_eq!(bed.snapshot(&pod), pod_before);
    // The returned ENI is usable again.
    dp.wire(&req).await.expect("wire again");
    assert!(bed.ping(&pod, "10.0.2.1"));
    dp.unwire(&unwire_request("ctr-x", &ns))
        .await
        .expect("unwire again");
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
}

#[tokio::test]
async fn trunk_member_link_is_handed_to_the_pod() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = bed.dataplane().await;
    let (pod, ns) = bed.pod();

    let alloc = allocation(&MEMBER, 20, 24).trunk(7, &TRUNK).build();
    let req = request("ctr-t", &ns, Mode::Trunk, alloc);
    let wired = dp.wire(&req).await.expect("wire");
    assert_eq!(wired.kind, WiringKind::TrunkMember);
    assert_eq!(wired.pod_mac, MEMBER.mac);
    assert!(bed.ping(&pod, "10.0.3.1"));
    assert!(bed.ping(&pod, "10.0.0.10"));
    assert_eq!(dp.wire(&req).await.expect("ADD twice"), wired);
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());
    dp.unwire(&unwire_request("ctr-t", &ns))
        .await
        .expect("unwire");
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
}

#[tokio::test]
async fn missing_kernel_features_fail_cleanly() {
    let mut bed = Bed::new();
    let dp = bed.dataplane().await;
    let (pod, ns) = bed.pod();
    let host_before = bed.snapshot(&bed.host);
    let pod_before = bed.snapshot(&pod);

    let ipvlan = allocation(&SHARED, 30, 24)
        .datapath(Datapath::IpVlan)
        .build();
    let ipvlan_result = dp
        .wire(&request("ctr-i", &ns, Mode::SharedIp, ipvlan))
        .await;
    // Member ENI not attached as its own link: the VLAN sub-interface path.
    let vlan = allocation(&MEMBER, 30, 24)
        .eni_mac(Mac::new([2, 0, 0, 0, 0, 0x99]))
        .trunk(7, &TRUNK)
        .build();
    let vlan_result = dp.wire(&request("ctr-v", &ns, Mode::Trunk, vlan)).await;

    let features = dp.features();
    if features.ipvlan {
        ipvlan_result.expect("ipvlan wiring on a kernel that has it");
    } else {
        let error = ipvlan_result.expect_err("ipvlan must be refused");
        assert_eq!(
            error.feature_missing(),
            Some(KernelFeature::IpVlan),
            "{error}"
        );
    }
    if features.vlan {
        vlan_result.expect("VLAN wiring on a kernel that has it");
    } else {
        let error = vlan_result.expect_err("VLAN must be refused");
        assert_eq!(
            error.feature_missing(),
            Some(KernelFeature::Vlan),
            "{error}"
        );
    }
    if !features.ipvlan && !features.vlan {
        assert_eq!(bed.snapshot(&bed.host), host_before, "host untouched");
        assert_eq!(bed.snapshot(&pod), pod_before, "pod untouched");
    }

    // Other refusals change nothing either.
    let absent = allocation(&SHARED, 31, 32)
        .eni_mac(Mac::new([2, 0, 0, 0, 0, 0x98]))
        .build();
    let error = dp
        .wire(&request("ctr-n", &ns, Mode::SharedIp, absent))
        .await
        .expect_err("ENI not attached");
    assert!(
        matches!(error, DataplaneError::EniNotFound { .. }),
        "{error}"
    );
    let outside = eni_test_support::allocation(&SHARED, Ipv4Addr::new(10, 9, 9, 9)).build();
    let error = dp
        .wire(&request("ctr-n", &ns, Mode::SharedIp, outside))
        .await
        .expect_err("address outside subnet");
    assert!(
        matches!(error, DataplaneError::InvalidRequest(_)),
        "{error}"
    );
    if !features.ipvlan && !features.vlan {
        assert_eq!(bed.snapshot(&bed.host), host_before);
        assert_eq!(bed.snapshot(&pod), pod_before);
    }
}

#[tokio::test]
async fn unwire_after_the_pod_namespace_is_gone() {
    let mut bed = Bed::new();
    let dp = bed.dataplane().await;
    let (pod_s, ns_s) = bed.pod();
    let (pod_x, ns_x) = bed.pod();
    let before = bed.snapshot(&bed.host);

    dp.wire(&request(
        "ctr-s",
        &ns_s,
        Mode::SharedIp,
        allocation(&SHARED, 40, 32).build(),
    ))
    .await
    .expect("wire shared");
    dp.wire(&request(
        "ctr-x",
        &ns_x,
        Mode::Exclusive,
        allocation(&EXCLUSIVE, 40, 24).build(),
    ))
    .await
    .expect("wire exclusive");
    must(&["ip", "netns", "del", &pod_s]);
    must(&["ip", "netns", "del", &pod_x]);
    // Namespace teardown is asynchronous in the kernel: DEL may race it and must not
    // care.
    dp.unwire(&unwire_request("ctr-s", &ns_s))
        .await
        .expect("unwire shared");
    dp.unwire(&unwire_request("ctr-x", &ns_x))
        .await
        .expect("unwire exclusive");
    let after = bed.snapshot(&bed.host);
    // The exclusive ENI was a veth stand-in: it died with the pod's namespace (a
    // real NIC would come back to the init namespace), so compare without it.
    let exclusive = EXCLUSIVE.link();
    let without_exclusive = |s: &str| {
        s.lines()
            .filter(|l| !l.contains(&exclusive))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_exclusive(&after),
        without_exclusive(&with_dnat_replies_rule(&before))
    );
}

#[tokio::test]
async fn gc_removes_containers_that_are_gone() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = bed.dataplane().await;
    let (pod_a, ns_a) = bed.pod();
    let (_, ns_b) = bed.pod();
    let (_, ns_x) = bed.pod();
    dp.wire(&request(
        "keep",
        &ns_a,
        Mode::SharedIp,
        allocation(&SHARED, 50, 32).build(),
    ))
    .await
    .unwrap();
    dp.wire(&request(
        "drop",
        &ns_b,
        Mode::SharedIp,
        allocation(&SHARED, 51, 32).build(),
    ))
    .await
    .unwrap();
    dp.wire(&request(
        "drop-x",
        &ns_x,
        Mode::Exclusive,
        allocation(&EXCLUSIVE, 51, 24).build(),
    ))
    .await
    .unwrap();
    let valid: HashSet<String> = ["keep".to_string()].into();
    let removed = dp.gc(&valid).await.unwrap();
    let mut ids: Vec<_> = removed
        .iter()
        .filter_map(|p| p.container_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["drop", "drop-x"]);
    let recovered = dp.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].container_id.as_deref(), Some("keep"));
    assert!(bed.ping(&pod_a, "10.0.1.1"));
    assert!(
        must(&["ip", "-n", &bed.host, "link"]).contains(&EXCLUSIVE.link()),
        "ENI returned by gc"
    );
    dp.unwire(&unwire_request("keep", &ns_a)).await.unwrap();
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
}

#[tokio::test]
async fn agent_restart_recovers_twenty_pods_without_disturbing_traffic() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let mut pods = Vec::new();
    let dp = bed.dataplane().await;
    let started = std::time::Instant::now();
    for i in 0..20u8 {
        let (name, ns) = bed.pod();
        let id = format!("ctr-{i}");
        dp.wire(&request(
            &id,
            &ns,
            Mode::SharedIp,
            allocation(&SHARED, 100 + i, 32).build(),
        ))
        .await
        .unwrap_or_else(|e| panic!("wire {id}: {e}"));
        pods.push((id, name, ns));
    }
    eprintln!("wired 20 SharedIP pods in {:?}", started.elapsed());
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &pods[0].1, "ping", "-i", "0.02", "-c", "150", "-W", "1", "10.0.1.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping");
    let mut ping = ChildGuard(Some(ping));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;

    // The agent goes away and comes back.
    drop(dp);
    let started = std::time::Instant::now();
    let dp = bed.dataplane().await;
    let mut recovered = dp.recover().await.unwrap();
    eprintln!(
        "restart (connect, probe, recover) took {:?}",
        started.elapsed()
    );
    recovered.sort_by_key(|p| p.addresses.clone());
    assert_eq!(recovered.len(), 20);
    for (i, pod) in recovered.iter().enumerate() {
        assert_eq!(pod.kind, WiringKind::SharedVeth);
        assert_eq!(
            pod.container_id.as_deref(),
            Some(format!("ctr-{i}").as_str())
        );
        assert_eq!(pod.ifname.as_deref(), Some("eth0"));
        assert_eq!(pod.netns.as_ref(), Some(&pods[i].2));
        assert_eq!(pod.addresses, vec![Ipv4Addr::new(10, 0, 1, 100 + i as u8)]);
        assert_eq!(pod.tables, vec![1001]);
    }
    // ADD after restart is still a no-op.
    let snapshot = bed.snapshot(&bed.host);
    dp.wire(&request(
        "ctr-3",
        &pods[3].2,
        Mode::SharedIp,
        allocation(&SHARED, 103, 32).build(),
    ))
    .await
    .unwrap();
    assert_eq!(bed.snapshot(&bed.host), snapshot);

    let output = ping.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {stdout}"));
    let numbers: Vec<u32> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (sent, received) = (numbers[0], numbers[1]);
    eprintln!("ping across restart: {summary}");
    assert!(sent - received <= 1, "lost more than one packet: {summary}");

    let started = std::time::Instant::now();
    for (id, _, ns) in &pods {
        dp.unwire(&unwire_request(id, ns)).await.unwrap();
    }
    eprintln!("unwired 20 SharedIP pods in {:?}", started.elapsed());
    assert!(dp.recover().await.unwrap().is_empty());
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
}

/// Pods of one ENI wired and unwired at the same time, as a runtime starting and
/// stopping many pods does: each pod's veth and namespace are wired outside the
/// dataplane's lock, the shared ENI table and every DEL's sweep under it. Every pod
/// reaches its gateway, the shared table survives the last-but-one pod's sweep, and the
/// host is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_and_dels_share_the_eni_table() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = std::sync::Arc::new(bed.dataplane().await);
    let pods: Vec<(String, String, PathBuf)> = (0..12u8)
        .map(|i| {
            let (name, ns) = bed.pod();
            (format!("par-{i}"), name, ns)
        })
        .collect();
    // Half the pods go up first; then the other half comes up while the first half
    // goes down, each set at once.
    let wire =
        |range: std::ops::Range<usize>| {
            futures::future::join_all(pods[range.clone()].iter().zip(range).map(
                |((id, _, ns), i)| {
                    let dp = dp.clone();
                    async move {
                        let host = 100 + u8::try_from(i).unwrap();
                        dp.wire(&request(
                            id,
                            ns,
                            Mode::SharedIp,
                            allocation(&SHARED, host, 32).build(),
                        ))
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("wire {id}: {e}"))
                    }
                },
            ))
        };
    let unwire = |range: std::ops::Range<usize>| {
        futures::future::join_all(pods[range].iter().map(|(id, _, ns)| {
            let dp = dp.clone();
            async move {
                dp.unwire(&unwire_request(id, ns))
                    .await
                    .map_err(|e| format!("unwire {id}: {e}"))
            }
        }))
    };
    for r in wire(0..6).await {
        r.unwrap();
    }
    let (up, down) = tokio::join!(wire(6..12), unwire(0..6));
    for r in up.into_iter().chain(down) {
        r.unwrap();
    }
    for (id, name, _) in &pods[6..] {
        assert!(bed.ping(name, "10.0.1.1"), "{id} cannot reach its gateway");
    }
    let left: Vec<_> = dp.recover().await.unwrap();
    assert_eq!(left.len(), 6, "{left:?}");
    for (id, _, ns) in &pods[6..] {
        dp.unwire(&unwire_request(id, ns)).await.unwrap();
    }
    assert!(dp.recover().await.unwrap().is_empty());
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
}

/// What a shaped pod asks for: 8 Mbit/s to it, 16 Mbit/s from it (bits, as the runtime
/// passes them; the burst containerd asks for, capped by the agent to 100 ms).
const SHAPED: Bandwidth = Bandwidth {
    ingress_rate: 8_000_000,
    ingress_burst: 4_294_967_295,
    egress_rate: 16_000_000,
    egress_burst: 4_294_967_295,
};

/// Mbit/s of `total` bytes from `from_ns` to `to`, past the first quarter (the burst and
/// the slow start).
fn measured_mbit(from_ns: &str, to_ns: &str, to: &str, total: u64) -> f64 {
    let to: SocketAddr = to.parse().expect("an address");
    let timeline = transfer(from_ns, to_ns, to, total, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{from_ns} -> {to}: {e}"));
    timeline
        .rate(total / 4, total)
        .expect("a rate")
        .mbit_per_s()
}

fn assert_near(what: &str, mbit: f64, limit: f64) {
    assert!(
        (0.5 * limit..=1.3 * limit).contains(&mbit),
        "{what}: {mbit:.1} Mbit/s, not within 0.5x..1.3x of {limit}"
    );
}

/// The bandwidth limits of a SharedIP and an Exclusive pod, measured with real TCP from
/// the VPC and (for the Exclusive pod, over its veth to the node) from the node: one
/// bucket per direction covers every link of the pod; CHECK notices a removed redirect
/// and ADD repairs it; the ENI goes back to the node without the pod's qdiscs.
#[tokio::test]
async fn bandwidth_limits_hold_on_every_link_of_the_pod() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = bed.dataplane().await;
    let router = bed.vpc.router().to_string();

    let (shared, shared_ns) = bed.pod();
    let mut req = request(
        "ctr-bw-s",
        &shared_ns,
        Mode::SharedIp,
        allocation(&SHARED, 30, 32).build(),
    );
    req.bandwidth = Some(SHAPED);
    dp.wire(&req).await.expect("wire shared");
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());
    let qdiscs = must(&["tc", "-n", &shared, "qdisc", "show"]);
    assert!(
        qdiscs.contains("qdisc tbf 1: dev bwi-eth0 root refcnt 2 rate 8Mbit burst 100000b")
            && qdiscs.contains("qdisc tbf 1: dev bwo-eth0 root refcnt 2 rate 16Mbit burst 200000b")
            && qdiscs.contains("qdisc clsact ffff: dev eth0 parent ffff:fff1"),
        "{qdiscs}"
    );
    let to_pod = measured_mbit(&router, &shared, "10.0.1.30:7300", 2_500_000);
    let from_pod = measured_mbit(&shared, &router, "10.0.1.1:7301", 5_000_000);
    println!("SharedIP: VPC -> pod {to_pod:.1} Mbit/s, pod -> VPC {from_pod:.1} Mbit/s");
    assert_near("SharedIP VPC -> pod", to_pod, 8.0);
    assert_near("SharedIP pod -> VPC", from_pod, 16.0);

    // The redirects removed behind the agent's back: CHECK says so, ADD repairs.
    must(&["tc", "-n", &shared, "qdisc", "del", "dev", "eth0", "clsact"]);
    let differences = dp.check(&req).await.unwrap();
    assert_eq!(
        differences,
        vec![
            "pod: the ingress of eth0 is not redirected to bwi-eth0",
            "pod: the egress of eth0 is not redirected to bwo-eth0",
        ]
    );
    dp.wire(&req).await.expect("ADD repairs");
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());
    // A bucket changed: CHECK names it.
    must(&[
        "tc", "-n", &shared, "qdisc", "replace", "dev", "bwo-eth0", "root", "handle", "1:", "tbf",
        "rate", "4mbit", "burst", "200000", "latency", "25ms",
    ]);
    let differences = dp.check(&req).await.unwrap();
    assert!(
        differences.len() == 1
            && differences[0].contains("the egress limit on bwo-eth0 is 500000 bytes/s"),
        "{differences:?}"
    );
    dp.unwire(&unwire_request("ctr-bw-s", &shared_ns))
        .await
        .expect("unwire shared");

    let (exclusive, exclusive_ns) = bed.pod();
    let mut req = request(
        "ctr-bw-x",
        &exclusive_ns,
        Mode::Exclusive,
        allocation(&EXCLUSIVE, 30, 24).build(),
    );
    req.bandwidth = Some(SHAPED);
    dp.wire(&req).await.expect("wire exclusive");
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());
    let to_pod = measured_mbit(&router, &exclusive, "10.0.2.30:7302", 2_500_000);
    let from_pod = measured_mbit(&exclusive, &router, "10.0.2.1:7303", 5_000_000);
    let node_to_pod = measured_mbit(&bed.host, &exclusive, "10.0.2.30:7304", 2_500_000);
    println!(
        "Exclusive: VPC -> pod {to_pod:.1}, pod -> VPC {from_pod:.1}, node -> pod {node_to_pod:.1} Mbit/s"
    );
    assert_near("Exclusive VPC -> pod (over the ENI)", to_pod, 8.0);
    assert_near("Exclusive pod -> VPC (over the ENI)", from_pod, 16.0);
    assert_near("Exclusive node -> pod (over veth0)", node_to_pod, 8.0);

    dp.unwire(&unwire_request("ctr-bw-x", &exclusive_ns))
        .await
        .expect("unwire exclusive");
    // The SharedIP pod left the agent's rule for replies to DNATed connections.
    assert_eq!(bed.snapshot(&bed.host), with_dnat_replies_rule(&before));
    let eni_qdiscs = must(&[
        "tc",
        "-n",
        &bed.host,
        "qdisc",
        "show",
        "dev",
        &EXCLUSIVE.link(),
    ]);
    assert!(
        !eni_qdiscs.contains("tbf") && !eni_qdiscs.contains("clsact"),
        "the ENI came back with the pod's qdiscs: {eni_qdiscs}"
    );
}
