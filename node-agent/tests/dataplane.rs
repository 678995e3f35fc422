//! The dataplane against the real kernel: a "host" namespace stands for the node and a
//! "vpc" namespace for the VPC router; each ENI is a veth whose host end has the ENI's
//! MAC and whose router end holds the subnet gateway. Needs root.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use eni_crds::{Allocation, Datapath, Mac, Mode};
use eni_node_agent::dataplane::{
    Dataplane, DataplaneConfig, DataplaneError, KernelFeature, PodRequest, UnwireRequest,
    WiringKind,
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One ENI stand-in: host link name, MAC, subnet (router holds `.1`).
struct Eni {
    name: &'static str,
    mac: &'static str,
    subnet: u8,
}

const PRIMARY: Eni = Eni {
    name: "ens4",
    mac: "02:00:00:00:00:04",
    subnet: 0,
};
const SHARED: Eni = Eni {
    name: "ens5",
    mac: "02:00:00:00:00:05",
    subnet: 1,
};
const EXCLUSIVE: Eni = Eni {
    name: "ens6",
    mac: "02:00:00:00:00:06",
    subnet: 2,
};
const MEMBER: Eni = Eni {
    name: "ens7",
    mac: "02:00:00:00:00:07",
    subnet: 3,
};
const TRUNK: Eni = Eni {
    name: "ens8",
    mac: "02:00:00:00:00:08",
    subnet: 4,
};

/// Namespaces of one test; all deleted on drop, also when the test panics.
struct Bed {
    host: String,
    vpc: String,
    pods: Vec<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Bed {
    fn new() -> Self {
        let id = format!(
            "dpt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let bed = Bed {
            host: format!("{id}-host"),
            vpc: format!("{id}-vpc"),
            pods: Vec::new(),
        };
        for ns in [&bed.host, &bed.vpc] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        must(&[
            "ip",
            "netns",
            "exec",
            &bed.vpc,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        for eni in [PRIMARY, SHARED, EXCLUSIVE, MEMBER, TRUNK] {
            let port = format!("r-{}", eni.name);
            must(&[
                "ip", "-n", &bed.vpc, "link", "add", &port, "type", "veth", "peer", "name",
                eni.name, "address", eni.mac, "netns", &bed.host,
            ]);
            let gateway = format!("10.0.{}.1/24", eni.subnet);
            must(&["ip", "-n", &bed.vpc, "addr", "add", &gateway, "dev", &port]);
            must(&["ip", "-n", &bed.vpc, "link", "set", &port, "up"]);
        }
        // The node's own address on its primary ENI, as the instance's OS sets it up.
        must(&[
            "ip",
            "-n",
            &bed.host,
            "addr",
            "add",
            "10.0.0.10/24",
            "dev",
            PRIMARY.name,
        ]);
        must(&["ip", "-n", &bed.host, "link", "set", PRIMARY.name, "up"]);
        must(&[
            "ip", "-n", &bed.host, "route", "add", "default", "via", "10.0.0.1",
        ]);
        bed
    }

    fn host_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.host))
    }

    fn pod(&mut self) -> (String, PathBuf) {
        let name = format!(
            "{}-p{}",
            self.host.trim_end_matches("-host"),
            self.pods.len()
        );
        must(&["ip", "netns", "add", &name]);
        must(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        self.pods.push(name.clone());
        let path = PathBuf::from(format!("/run/netns/{name}"));
        (name, path)
    }

    async fn dataplane(&self) -> Dataplane {
        Dataplane::new(DataplaneConfig {
            host_netns: Some(self.host_path()),
            node_ip: NODE_IP,
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
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
        run(&[
            "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", target,
        ])
        .status
        .success()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in self.pods.iter().chain([&self.host, &self.vpc]) {
            let _ = run(&["ip", "netns", "del", ns]);
        }
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

fn allocation(eni: &Eni, host: u8, prefix_length: u8, device_index: u32) -> Allocation {
    Allocation {
        address: Ipv4Addr::new(10, 0, eni.subnet, host),
        prefix_length,
        gateway: Ipv4Addr::new(10, 0, eni.subnet, 1),
        subnet_cidr: format!("10.0.{}.0/24", eni.subnet).parse().unwrap(),
        subnet_id: "subnet-1".into(),
        eni_id: "eni-0abc".into(),
        eni_mac: mac(eni.mac),
        device_index,
        ..Allocation::default()
    }
}

fn mac(text: &str) -> Mac {
    text.parse().unwrap()
}

fn request(id: &str, netns: &Path, mode: Mode, allocation: Allocation) -> PodRequest {
    PodRequest {
        container_id: id.into(),
        netns_path: netns.to_path_buf(),
        ifname: "eth0".into(),
        mode,
        allocation,
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
        allocation(&SHARED, 20, 32, 1),
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
    assert!(bed.ping(&bed.vpc, "10.0.1.20"), "VPC router -> pod");

    let rules = must(&["ip", "-n", &bed.host, "rule"]);
    assert_eq!(
        lines_with(&rules, "10.0.1.20"),
        vec![
            "512: from all to 10.0.1.20 lookup main proto 225",
            "2048: from 10.0.1.20 lookup 1001 proto 225",
        ]
    );
    assert_eq!(
        must(&["ip", "-n", &bed.host, "route", "show", "table", "1001"]),
        "default via 10.0.1.1 dev ens5 proto 225 onlink \n10.0.1.0/24 dev ens5 proto 225 scope link \n"
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
        "10.0.1.20 dev ens5 proxy proto 225"
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
        allocation(&SHARED, 21, 32, 1),
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
    assert_eq!(bed.snapshot(&bed.host), before);
    // DEL twice, and DEL of a container never seen, succeed.
    dp.unwire(&unwire_request("ctr-b", &ns_b))
        .await
        .expect("DEL twice");
    dp.unwire(&unwire_request("never-seen", &ns_b))
        .await
        .expect("DEL unknown");
    assert_eq!(bed.snapshot(&bed.host), before);
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
        allocation(&EXCLUSIVE, 20, 24, 2),
    );
    let wired = dp.wire(&req).await.expect("wire");
    assert_eq!(wired.kind, WiringKind::Exclusive);
    assert_eq!(wired.pod_mac, mac(EXCLUSIVE.mac));
    assert_eq!(wired.address.to_string(), "10.0.2.20/24");
    assert_eq!(wired.gateway, Ipv4Addr::new(10, 0, 2, 1));
    let host_links = must(&["ip", "-n", &bed.host, "link"]);
    assert!(
        !host_links.contains("ens6"),
        "ENI still in the host: {host_links}"
    );
    let pod_link = must(&["ip", "-n", &pod, "link", "show", "eth0"]);
    assert!(pod_link.contains(EXCLUSIVE.mac), "{pod_link}");
    assert!(
        pod_link.contains("alias eni-agent/v1 lent ens6 ctr-x"),
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
    assert!(bed.ping(&bed.vpc, "10.0.2.20"), "VPC -> pod");
    assert_eq!(
        must(&["ip", "-n", &pod, "route"]),
        "default via 10.0.2.1 dev eth0 proto 225 onlink \n\
         10.0.0.10 via 169.254.1.1 dev veth0 proto 225 src 10.0.2.20 onlink \n\
         10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.20 \n\
         10.96.0.0/12 via 169.254.1.1 dev veth0 proto 225 src 10.0.2.20 onlink \n"
    );
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
    assert_eq!(bed.snapshot(&bed.host), before, "ENI back under its name");
    assert_eq!(bed.snapshot(&pod), pod_before);
    // The returned ENI is usable again.
    dp.wire(&req).await.expect("wire again");
    assert!(bed.ping(&pod, "10.0.2.1"));
    dp.unwire(&unwire_request("ctr-x", &ns))
        .await
        .expect("unwire again");
    assert_eq!(bed.snapshot(&bed.host), before);
}

#[tokio::test]
async fn trunk_member_link_is_handed_to_the_pod() {
    let mut bed = Bed::new();
    let before = bed.snapshot(&bed.host);
    let dp = bed.dataplane().await;
    let (pod, ns) = bed.pod();

    let mut alloc = allocation(&MEMBER, 20, 24, 3);
    alloc.vlan_id = Some(7);
    alloc.trunk_mac = Some(mac(TRUNK.mac));
    let req = request("ctr-t", &ns, Mode::Trunk, alloc);
    let wired = dp.wire(&req).await.expect("wire");
    assert_eq!(wired.kind, WiringKind::TrunkMember);
    assert_eq!(wired.pod_mac, mac(MEMBER.mac));
    assert!(bed.ping(&pod, "10.0.3.1"));
    assert!(bed.ping(&pod, "10.0.0.10"));
    assert_eq!(dp.wire(&req).await.expect("ADD twice"), wired);
    assert_eq!(dp.check(&req).await.unwrap(), Vec::<String>::new());
    dp.unwire(&unwire_request("ctr-t", &ns))
        .await
        .expect("unwire");
    assert_eq!(bed.snapshot(&bed.host), before);
}

#[tokio::test]
async fn missing_kernel_features_fail_cleanly() {
    let mut bed = Bed::new();
    let dp = bed.dataplane().await;
    let (pod, ns) = bed.pod();
    let host_before = bed.snapshot(&bed.host);
    let pod_before = bed.snapshot(&pod);

    let mut ipvlan = allocation(&SHARED, 30, 24, 1);
    ipvlan.datapath = Some(Datapath::IpVlan);
    let ipvlan_result = dp
        .wire(&request("ctr-i", &ns, Mode::SharedIp, ipvlan))
        .await;
    // Member ENI not attached as its own link: the VLAN sub-interface path.
    let mut vlan = allocation(&MEMBER, 30, 24, 3);
    vlan.eni_mac = mac("02:00:00:00:00:99");
    vlan.vlan_id = Some(7);
    vlan.trunk_mac = Some(mac(TRUNK.mac));
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
    let mut absent = allocation(&SHARED, 31, 32, 1);
    absent.eni_mac = mac("02:00:00:00:00:98");
    let error = dp
        .wire(&request("ctr-n", &ns, Mode::SharedIp, absent))
        .await
        .expect_err("ENI not attached");
    assert!(
        matches!(error, DataplaneError::EniNotFound { .. }),
        "{error}"
    );
    let mut outside = allocation(&SHARED, 31, 32, 1);
    outside.address = Ipv4Addr::new(10, 9, 9, 9);
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
        allocation(&SHARED, 40, 32, 1),
    ))
    .await
    .expect("wire shared");
    dp.wire(&request(
        "ctr-x",
        &ns_x,
        Mode::Exclusive,
        allocation(&EXCLUSIVE, 40, 24, 2),
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
    let without_ens6 = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("ens6"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_ens6(&after), without_ens6(&before));
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
        allocation(&SHARED, 50, 32, 1),
    ))
    .await
    .unwrap();
    dp.wire(&request(
        "drop",
        &ns_b,
        Mode::SharedIp,
        allocation(&SHARED, 51, 32, 1),
    ))
    .await
    .unwrap();
    dp.wire(&request(
        "drop-x",
        &ns_x,
        Mode::Exclusive,
        allocation(&EXCLUSIVE, 51, 24, 2),
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
        must(&["ip", "-n", &bed.host, "link"]).contains("ens6"),
        "ENI returned by gc"
    );
    dp.unwire(&unwire_request("keep", &ns_a)).await.unwrap();
    assert_eq!(bed.snapshot(&bed.host), before);
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
            allocation(&SHARED, 100 + i, 32, 1),
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
        allocation(&SHARED, 103, 32, 1),
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
    assert_eq!(bed.snapshot(&bed.host), before);
}
