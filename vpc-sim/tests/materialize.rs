//! The materializer against the real kernel: namespaces, veth pairs, routes, nftables.
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN). Every test uses its own prefix (with the
//! pid) and a guard that cleans it up, also when the test panics.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use vpc_sim::dataplane_view::{
    DataplaneView, EniKind, EniPortView, IngressRule, NodeView, Protocol, SecurityGroupView,
};
use vpc_sim::materialize::{Materializer, node_netns};

/// Removes everything of a prefix when the test ends, whatever way it ends.
struct Guard(String);

impl Guard {
    fn new(test: &str) -> Self {
        Guard(format!("mt{test}{}", std::process::id()))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // Drop cannot await: run the cleanup on its own runtime and thread.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test runtime");
            runtime.block_on(Materializer::cleanup(&prefix))
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("cleanup of {} failed: {done:?}", self.0);
        }
    }
}

fn eni(
    id: &str,
    mac: &str,
    device_index: u32,
    kind: EniKind,
    addresses: &[&str],
    subnet: &str,
    groups: &[&str],
) -> EniPortView {
    let subnet_cidr: ipnet::Ipv4Net = subnet.parse().unwrap();
    let gateway = Ipv4Addr::from(u32::from(subnet_cidr.network()) + 1);
    EniPortView {
        eni_id: id.to_string(),
        mac: mac.to_string(),
        device_index,
        kind,
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        prefixes: vec![],
        security_group_ids: groups.iter().map(|g| g.to_string()).collect(),
        subnet_cidr,
        gateway,
    }
}

fn rule(protocol: Protocol, from: u16, to: u16, cidr: &str) -> IngressRule {
    IngressRule {
        protocol,
        from_port: from,
        to_port: to,
        cidrs: vec![cidr.parse().unwrap()],
        source_group_ids: vec![],
    }
}

fn group(id: &str, ingress: Vec<IngressRule>) -> SecurityGroupView {
    SecurityGroupView {
        group_id: id.to_string(),
        ingress,
    }
}

/// Runs `ip` with the given arguments; returns stdout, panics on failure.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn link_json(netns: &str, name: &str) -> Option<serde_json::Value> {
    let output = Command::new("ip")
        .args(["-j", "-n", netns, "addr", "show", "dev", name])
        .output()
        .unwrap();
    if !output.status.success() {
        return None;
    }
    let mut links: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    links.pop()
}

fn ipv4_addresses(link: &serde_json::Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn is_up(link: &serde_json::Value) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn ping(netns: &str, source: &str, destination: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            source,
            destination,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs `work` on a thread inside namespace `netns`.
fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let file = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        work()
    })
}

/// A TCP server inside a namespace that accepts until dropped.
struct TcpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    fn start(netns: &str, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = in_netns(netns, move || {
            let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ready_rx.recv().unwrap();
        TcpServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tcp_connects(netns: &str, destination: &str) -> bool {
    let destination: SocketAddr = destination.parse().unwrap();
    in_netns(netns, move || {
        TcpStream::connect_timeout(&destination, Duration::from_secs(1)).is_ok()
    })
    .join()
    .unwrap()
}

/// Sends one datagram from `source` (in `from_ns`) to `destination` (in `to_ns`);
/// whether it arrived.
fn udp_arrives(from_ns: &str, source: &str, to_ns: &str, destination: &str) -> bool {
    let destination: SocketAddr = destination.parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = in_netns(to_ns, move || {
        let socket = UdpSocket::bind(destination).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 16];
        socket.recv(&mut buf).is_ok()
    });
    ready_rx.recv().unwrap();
    let source: Ipv4Addr = source.parse().unwrap();
    in_netns(from_ns, move || {
        let socket = UdpSocket::bind((source, 0)).unwrap();
        socket.send_to(b"hello", destination).unwrap();
    })
    .join()
    .unwrap();
    receiver.join().unwrap()
}

/// Everything an apply could change, as text.
fn snapshot(prefix: &str, nodes: &[&str]) -> String {
    let vpc = format!("{prefix}-vpc");
    let mut out = String::new();
    for netns in std::iter::once(vpc.as_str()).chain(nodes.iter().copied()) {
        out += &ip(&["-n", netns, "-o", "link", "show"]);
        out += &ip(&["-n", netns, "-o", "addr", "show"]);
        out += &ip(&["-n", netns, "route", "show", "table", "all"]);
    }
    let nft = Command::new("ip")
        .args(["netns", "exec", &vpc, "nft", "list", "table", "ip", prefix])
        .output()
        .unwrap();
    assert!(nft.status.success());
    out + &String::from_utf8_lossy(&nft.stdout)
}

const MAC_A: &str = "02:00:0a:00:01:0a";
const MAC_B: &str = "02:00:0a:00:02:0a";
const MAC_B1: &str = "02:00:0a:00:02:14";

/// Two nodes in two subnets; node b also has a secondary ENI.
fn two_nodes(prefix: &str, b_addresses: &[&str], web_rules: Vec<IngressRule>) -> DataplaneView {
    DataplaneView {
        nodes: vec![
            NodeView {
                instance_id: "i-a".to_string(),
                netns: node_netns(prefix, "a"),
                enis: vec![eni(
                    "eni-a0",
                    MAC_A,
                    0,
                    EniKind::Primary,
                    &["10.0.1.10", "10.0.1.11"],
                    "10.0.1.0/24",
                    &["sg-client"],
                )],
            },
            NodeView {
                instance_id: "i-b".to_string(),
                netns: node_netns(prefix, "b"),
                enis: vec![
                    eni(
                        "eni-b0",
                        MAC_B,
                        0,
                        EniKind::Primary,
                        b_addresses,
                        "10.0.2.0/24",
                        &["sg-web"],
                    ),
                    eni(
                        "eni-b1",
                        MAC_B1,
                        1,
                        EniKind::Secondary,
                        &["10.0.2.20"],
                        "10.0.2.0/24",
                        &["sg-web"],
                    ),
                ],
            },
        ],
        security_groups: vec![
            group("sg-client", vec![rule(Protocol::All, 0, 0, "0.0.0.0/0")]),
            group("sg-web", web_rules),
        ],
    }
}

fn web_rules(extra: &[IngressRule]) -> Vec<IngressRule> {
    let mut rules = vec![
        rule(Protocol::Icmp, 0, 0, "10.0.0.0/8"),
        rule(Protocol::Tcp, 9090, 9090, "10.0.0.0/8"),
        rule(Protocol::Udp, 7070, 7070, "10.0.0.0/8"),
    ];
    rules.extend_from_slice(extra);
    rules
}

#[tokio::test]
async fn enis_become_links_routes_and_filters() {
    let guard = Guard::new("a");
    let prefix = guard.0.clone();
    let (a, b) = (node_netns(&prefix, "a"), node_netns(&prefix, "b"));
    let mut materializer = Materializer::new(&prefix).await.unwrap();
    let view = two_nodes(&prefix, &["10.0.2.10", "10.0.2.11"], web_rules(&[]));
    materializer.apply(&view).await.unwrap();

    // The primary ENI is configured as the instance's OS would; the secondary is not.
    let eth0 = link_json(&a, "eth0").expect("eth0 in node a");
    assert_eq!(eth0["address"], MAC_A);
    assert!(is_up(&eth0));
    assert_eq!(ipv4_addresses(&eth0), vec!["10.0.1.10/24"]);
    assert!(ip(&["-n", &a, "route", "show", "default"]).contains("via 10.0.1.1 dev eth0"));
    let eth1 = link_json(&b, "eth1").expect("eth1 in node b");
    assert_eq!(eth1["address"], MAC_B1);
    assert!(!is_up(&eth1));
    assert!(ipv4_addresses(&eth1).is_empty());

    // The secondary addresses are configured by "the agent" (this test).
    ip(&["-n", &a, "addr", "add", "10.0.1.11/32", "dev", "eth0"]);
    ip(&["-n", &b, "addr", "add", "10.0.2.11/32", "dev", "eth0"]);
    assert!(ping(&a, "10.0.1.10", "10.0.2.10"), "primary to primary");
    assert!(ping(&a, "10.0.1.11", "10.0.2.11"), "secondary to secondary");

    // Security group of b: icmp, tcp 9090 and udp 7070 only.
    let _web = TcpServer::start(&b, 9090);
    let _blocked = TcpServer::start(&b, 8080);
    assert!(tcp_connects(&a, "10.0.2.10:9090"));
    assert!(
        !tcp_connects(&a, "10.0.2.10:8080"),
        "8080 is not in the group"
    );
    assert!(ping(&a, "10.0.1.11", "10.0.2.10"), "icmp still passes");

    // Anti-spoofing: 10.0.1.99 is inside the allowed CIDR but not held by the ENI.
    ip(&["-n", &a, "addr", "add", "10.0.1.99/32", "dev", "eth0"]);
    assert!(udp_arrives(&a, "10.0.1.11", &b, "10.0.2.10:7070"));
    assert!(
        !udp_arrives(&a, "10.0.1.99", &b, "10.0.2.10:7070"),
        "forged source"
    );

    // Idempotent: the same view again changes nothing, neither does a restarted
    // materializer adopting the kernel state.
    let before = snapshot(&prefix, &[&a, &b]);
    materializer.apply(&view).await.unwrap();
    assert_eq!(before, snapshot(&prefix, &[&a, &b]));
    let mut materializer = Materializer::new(&prefix).await.unwrap();
    materializer.apply(&view).await.unwrap();
    assert_eq!(before, snapshot(&prefix, &[&a, &b]));

    // Opening the port in the group lets 8080 through.
    let open = two_nodes(
        &prefix,
        &["10.0.2.10", "10.0.2.11"],
        web_rules(&[rule(Protocol::Tcp, 8000, 8100, "10.0.1.0/24")]),
    );
    materializer.apply(&open).await.unwrap();
    assert!(tcp_connects(&a, "10.0.2.10:8080"));

    // Unassigning 10.0.2.11 removes its route: it becomes unreachable, the primary
    // address is not affected.
    let unassigned = two_nodes(&prefix, &["10.0.2.10"], web_rules(&[]));
    materializer.apply(&unassigned).await.unwrap();
    assert!(!ping(&a, "10.0.1.11", "10.0.2.11"), "unassigned address");
    assert!(ping(&a, "10.0.1.11", "10.0.2.10"));

    // Detaching removes the node's link.
    let mut detached = unassigned.clone();
    detached.nodes[1].enis.pop();
    materializer.apply(&detached).await.unwrap();
    assert!(link_json(&b, "eth1").is_none(), "eth1 gone after detach");
    assert!(link_json(&b, "eth0").is_some());

    // Removing a node removes its namespace.
    let mut one_node = detached.clone();
    one_node.nodes.truncate(1);
    materializer.apply(&one_node).await.unwrap();
    assert_eq!(
        netns_with_prefix(&prefix).len(),
        3,
        "vpc, the internet and a remain"
    );

    Materializer::cleanup(&prefix).await.unwrap();
    assert!(netns_with_prefix(&prefix).is_empty());
    assert!(!std::path::Path::new(&format!("/run/vpc-sim/{prefix}")).exists());
    assert!(!ip(&["-o", "link", "show"]).contains(&prefix));
}

#[tokio::test]
async fn same_subnet_hosts_and_delegated_prefixes() {
    let guard = Guard::new("b");
    let prefix = guard.0.clone();
    let (a, c) = (node_netns(&prefix, "a"), node_netns(&prefix, "c"));
    let mut materializer = Materializer::new(&prefix).await.unwrap();
    let mut with_prefix = eni(
        "eni-c0",
        "02:00:0a:00:01:0c",
        0,
        EniKind::Primary,
        &["10.0.1.12"],
        "10.0.1.0/24",
        &["sg-any"],
    );
    with_prefix.prefixes = vec!["10.0.1.64/28".parse().unwrap()];
    let view = DataplaneView {
        nodes: vec![
            NodeView {
                instance_id: "i-a".to_string(),
                netns: a.clone(),
                enis: vec![eni(
                    "eni-a0",
                    MAC_A,
                    0,
                    EniKind::Primary,
                    &["10.0.1.10"],
                    "10.0.1.0/24",
                    &["sg-any"],
                )],
            },
            NodeView {
                instance_id: "i-c".to_string(),
                netns: c.clone(),
                enis: vec![with_prefix],
            },
        ],
        security_groups: vec![group(
            "sg-any",
            vec![rule(Protocol::All, 0, 0, "10.0.0.0/8")],
        )],
    };
    materializer.apply(&view).await.unwrap();

    // On-link neighbours in one subnet: the router answers ARP for them (proxy ARP).
    assert!(ping(&a, "10.0.1.10", "10.0.1.12"));
    // An address out of a delegated prefix is routed to the ENI holding the prefix.
    ip(&["-n", &c, "addr", "add", "10.0.1.70/32", "dev", "eth0"]);
    assert!(ping(&a, "10.0.1.10", "10.0.1.70"));
    assert!(
        ping(&c, "10.0.1.70", "10.0.1.10"),
        "prefix addresses may send"
    );
}

#[tokio::test]
async fn crashed_runs_are_resumed_or_cleaned_up() {
    let guard = Guard::new("c");
    let prefix = guard.0.clone();
    // A node namespace outside the prefix is found again through the ledger.
    let foreign = format!("mtforeign{}", std::process::id());
    let view = DataplaneView {
        nodes: vec![
            NodeView {
                instance_id: "i-a".to_string(),
                netns: node_netns(&prefix, "a"),
                enis: vec![eni(
                    "eni-a0",
                    MAC_A,
                    0,
                    EniKind::Primary,
                    &["10.0.1.10"],
                    "10.0.1.0/24",
                    &["sg-any"],
                )],
            },
            NodeView {
                instance_id: "i-f".to_string(),
                netns: foreign.clone(),
                enis: vec![eni(
                    "eni-f0",
                    MAC_B,
                    0,
                    EniKind::Primary,
                    &["10.0.1.20"],
                    "10.0.1.0/24",
                    &["sg-any"],
                )],
            },
        ],
        security_groups: vec![group(
            "sg-any",
            vec![rule(Protocol::All, 0, 0, "10.0.0.0/8")],
        )],
    };
    let a = node_netns(&prefix, "a");
    {
        let mut materializer = Materializer::new(&prefix).await.unwrap();
        materializer.apply(&view).await.unwrap();
        assert!(ping(&a, "10.0.1.10", "10.0.1.20"));
        // Crash: dropped without cleanup.
    }

    // A pass interrupted half-way: ports left down, a route and the node's address
    // missing. The next apply of a new instance repairs all of it.
    let vpc = format!("{prefix}-vpc");
    let ports: Vec<String> = ip(&["-n", &vpc, "-o", "link", "show"])
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap().to_string())
        .filter(|name| name.starts_with('p'))
        .collect();
    assert_eq!(ports.len(), 2);
    ip(&["-n", &vpc, "route", "del", "10.0.1.20/32"]);
    // (Setting a link down also flushes the IPv4 routes through it.)
    for port in &ports {
        ip(&["-n", &vpc, "link", "set", port, "down"]);
    }
    ip(&["-n", &a, "addr", "flush", "dev", "eth0"]);
    assert!(!ping(&a, "10.0.1.10", "10.0.1.20"));
    let mut materializer = Materializer::new(&prefix).await.unwrap();
    materializer.apply(&view).await.unwrap();
    assert!(
        ping(&a, "10.0.1.10", "10.0.1.20"),
        "converged after restart"
    );
    drop(materializer);

    // Crash again; cleanup by prefix alone removes everything.
    Materializer::cleanup(&prefix).await.unwrap();
    assert!(netns_with_prefix(&prefix).is_empty());
    assert!(!std::path::Path::new(&format!("/run/netns/{foreign}")).exists());
    assert!(!std::path::Path::new(&format!("/run/vpc-sim/{prefix}")).exists());
}

#[tokio::test]
async fn inconsistent_views_change_nothing() {
    let guard = Guard::new("d");
    let prefix = guard.0.clone();
    let mut materializer = Materializer::new(&prefix).await.unwrap();
    let mut view = two_nodes(&prefix, &["10.0.2.10"], web_rules(&[]));
    view.nodes[1].enis[1].addresses = vec!["10.0.1.10".parse().unwrap()]; // held by eni-a0 too
    assert!(materializer.apply(&view).await.is_err());
    assert_eq!(
        netns_with_prefix(&prefix),
        vec![format!("{prefix}-inet"), format!("{prefix}-vpc")]
    );
    assert!(Materializer::new("bad-prefix").await.is_err());
}

/// The source address a TCP connection from `source` (in `from_ns`) shows when it
/// reaches `destination` (in `to_ns`); `None` when it does not arrive within 2 s.
fn seen_source(
    from_ns: &str,
    source: Ipv4Addr,
    to_ns: &str,
    destination: SocketAddr,
) -> Option<std::net::IpAddr> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(to_ns, move || {
        let listener = TcpListener::bind(destination).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..100 {
            if let Ok((_, peer)) = listener.accept() {
                return Some(peer.ip());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    ready_rx.recv().unwrap();
    // std cannot bind a client socket before connecting: netcat with -s can.
    let connected = Command::new("ip")
        .args(["netns", "exec", from_ns, "nc", "-z", "-w", "2", "-s"])
        .arg(source.to_string())
        .arg(destination.ip().to_string())
        .arg(destination.port().to_string())
        .status()
        .is_ok_and(|s| s.success());
    let seen = server.join().unwrap();
    connected.then_some(seen).flatten()
}

/// Behind the internet gateway: an instance's primary address (it has a public one)
/// reaches the internet host as itself, a secondary address as the NAT gateway, and
/// the peered network sees the secondary address unchanged.
#[tokio::test]
async fn the_internet_sees_public_addresses_and_the_nat_gateway() {
    use vpc_sim::materialize::{INTERNET_HOST, NAT_GATEWAY, PEERED_HOST, internet_netns};
    let guard = Guard::new("i");
    let prefix = guard.0.clone();
    let a = node_netns(&prefix, "a");
    let mut materializer = Materializer::new(&prefix).await.unwrap();
    materializer
        .apply(&two_nodes(&prefix, &["10.0.2.10"], web_rules(&[])))
        .await
        .unwrap();
    ip(&["-n", &a, "addr", "add", "10.0.1.11/32", "dev", "eth0"]);
    let inet = internet_netns(&prefix);
    let (primary, secondary) = (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 11));
    let internet = SocketAddr::from((INTERNET_HOST, 8443));
    let peered = SocketAddr::from((PEERED_HOST, 8443));
    assert_eq!(
        seen_source(&a, primary, &inet, internet),
        Some(primary.into())
    );
    assert_eq!(
        seen_source(&a, secondary, &inet, internet),
        Some(NAT_GATEWAY.into())
    );
    assert_eq!(
        seen_source(&a, secondary, &inet, peered),
        Some(secondary.into())
    );
    // A restarted vpc-sim adopts the gateway as it is.
    let before = ip(&["-n", &inet, "-o", "addr", "show"]);
    drop(materializer);
    let _again = Materializer::new(&prefix).await.unwrap();
    assert_eq!(ip(&["-n", &inet, "-o", "addr", "show"]), before);
}
