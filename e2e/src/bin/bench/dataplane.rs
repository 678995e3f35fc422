//! `bench dataplane`: TCP throughput (iperf3) and request/response latency between two
//! nodes of the bed, for each path a pod's packets can take, against the two nodes'
//! own addresses in the same run.
//!
//! Paths: node to node (the baseline), SharedIP veth pod to pod, Exclusive pod to pod,
//! Trunk member pod to pod, and a VXLAN overlay (what a cluster without ENIs would
//! run: a namespace behind each node, tunnelled over the nodes' addresses). Beside them
//! the kernel's own veth pod path and its node-to-node baseline (`reference.rs`), which
//! show what any veth datapath costs here. Rounds rotate the paths, so every path sees
//! the machine in the same states. A single stream varies by about ±10 % from one run
//! to the next on 2 vCPUs, so each path's ratio is the median over the rounds of its
//! figure over its baseline's in the same round.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use eni_crds::Mode;
use eni_e2e::{bed::Bed, cluster::fast_cloud, netns};
use eni_test_support::pool;
use serde_json::{Value, json};

use super::{
    BenchError,
    reference::Reference,
    report::{Samples, round},
};

const RR_PORT: u16 = 5301;
const IPERF_PORT: u16 = 5201;

pub struct Size {
    rounds: usize,
    iperf_seconds: u32,
    round_trips: usize,
}

pub const FULL: Size = Size {
    rounds: 9,
    iperf_seconds: 3,
    round_trips: 2000,
};
pub const SMOKE: Size = Size {
    rounds: 1,
    iperf_seconds: 1,
    round_trips: 100,
};

/// One way between the nodes: client namespace, server namespace, server address, and
/// the index of the path it is compared with.
struct Path {
    name: &'static str,
    client: String,
    server: String,
    address: Ipv4Addr,
    baseline: usize,
}

pub async fn run(size: &Size) -> Result<(Value, String), BenchError> {
    if Command::new("iperf3").arg("--version").output().is_err() {
        return Err(BenchError::Missing("iperf3 (Debian: iperf3)"));
    }
    let bed = Bed::start(fast_cloud()).await?;
    let sg = bed.vpc.group_id("default").await?;
    for (name, mode) in [
        ("shared", Mode::SharedIp),
        ("exclusive", Mode::Exclusive),
        ("trunk", Mode::Trunk),
    ] {
        let mut p = pool(name, mode).nodes("pool", "all").pods("mode", name);
        if mode == Mode::Trunk {
            p = p.security_groups(&[sg.as_str()]);
        }
        bed.apply_yaml(&p.yaml()).await?;
    }
    let mut nodes = Vec::new();
    for n in ["d1", "d2"] {
        nodes.push(bed.add_node(n, "m5.4xlarge", &[("pool", "all")]).await?);
    }
    bed.start_operator("op-0")?;
    bed.wait_agents().await?;
    let mut paths = vec![Path {
        name: "node_to_node",
        client: nodes[0].netns.clone(),
        server: nodes[1].netns.clone(),
        address: nodes[1].instance.primary_ip,
        baseline: 0,
    }];
    for (path, mode) in [
        ("shared_veth", "shared"),
        ("exclusive", "exclusive"),
        ("trunk_member", "trunk"),
    ] {
        let mut ends = Vec::new();
        for node in &nodes {
            let name = format!("{mode}-{}", node.name);
            bed.create_pod("default", &name, &node.name, &[("mode", mode)])
                .await?;
            let ip = bed
                .wait_ready("default", &name, Duration::from_secs(120))
                .await?;
            ends.push((bed.sandbox_of("default", &name).await?, ip));
        }
        paths.push(Path {
            name: path,
            client: ends[0].0.clone(),
            server: ends[1].0.clone(),
            address: ends[1].1,
            baseline: 0,
        });
    }
    let overlay = Overlay::build(&bed.prefix, &nodes[0], &nodes[1]).await?;
    paths.push(Path {
        name: "vxlan_overlay",
        client: overlay.pods[0].clone(),
        server: overlay.pods[1].clone(),
        address: Overlay::POD_B,
        baseline: 0,
    });
    let reference = Reference::build(&bed.prefix).await?;
    let [node_a, node_b, pod_a, pod_b] = reference.ends();
    let reference_base = paths.len();
    paths.push(Path {
        name: "reference_node_to_node",
        client: node_a.to_owned(),
        server: node_b.to_owned(),
        address: Reference::NODE_B,
        baseline: reference_base,
    });
    paths.push(Path {
        name: "reference_pod_veth",
        client: pod_a.to_owned(),
        server: pod_b.to_owned(),
        address: Reference::POD_B,
        baseline: reference_base,
    });

    let mut gbit: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut rr: Vec<Samples> = vec![Samples::default(); paths.len()];
    for r in 0..size.rounds {
        for k in 0..paths.len() {
            let i = (k + r) % paths.len();
            gbit[i].push(iperf(&paths[i], size.iperf_seconds)?);
            rr[i].extend(round_trips(&paths[i], size.round_trips).await?);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = serde_json::Map::new();
    let mut summary = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let g = median(&gbit[i]);
        let base = &gbit[p.baseline];
        let ratios: Vec<f64> = gbit[i].iter().zip(base).map(|(g, b)| g / b).collect();
        let ratio = median(&ratios);
        out.insert(
            p.name.into(),
            json!({
                "baseline": paths[p.baseline].name,
                "throughput_gbit_s": round(g, 2),
                "throughput_rounds_gbit_s": gbit[i].iter().map(|g| round(*g, 2)).collect::<Vec<_>>(),
                "ratio_to_baseline": round(ratio, 3),
                "ratio_rounds": ratios.iter().map(|r| round(*r, 3)).collect::<Vec<_>>(),
                "round_trip": rr[i].json(),
                "round_trip_p50_ratio_to_baseline": round(rr[i].p50() / rr[p.baseline].p50(), 3),
            }),
        );
        summary.push(format!(
            "{} {:.1} Gbit/s ({:.2}x), RR p50 {:.0} us",
            p.name,
            g,
            ratio,
            rr[i].p50() * 1000.0
        ));
    }
    overlay.remove();
    reference.remove();
    let doc = json!({
        "paths": out,
        "setup": {
            "nodes": "2 stand-in nodes (vpc-sim namespaces), m5.4xlarge",
            "rounds": size.rounds,
            "iperf_seconds": size.iperf_seconds,
            "round_trips_per_round": size.round_trips,
            "throughput": "iperf3, one TCP stream, client on the first node",
            "ratio": "median over rounds of the path's throughput over its baseline's in the same round",
            "reference": "plain namespaces pod-node-router-node-pod, veths, /32 routes, conntrack at the nodes, none of the product's rules",
            "round_trip": "1-byte TCP request and answer on one connection",
        },
    });
    Ok((doc, format!("dataplane: {}", summary.join("; "))))
}

/// One iperf3 run from the client's namespace to a one-off server; Gbit/s received.
fn iperf(path: &Path, seconds: u32) -> Result<f64, BenchError> {
    let mut server = netns_command(&path.server, "iperf3")
        .args(["-s", "-1", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(BenchError::Io)?;
    let mut out = None;
    // The server listens a moment after it starts.
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(50));
        let run = netns_command(&path.client, "iperf3")
            .args([
                "-c",
                &path.address.to_string(),
                "-p",
                &IPERF_PORT.to_string(),
                "-J",
            ])
            .args(["-t", &seconds.to_string()])
            .output()
            .map_err(BenchError::Io)?;
        if run.status.success() {
            out = Some(run.stdout);
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let out =
        out.ok_or_else(|| BenchError::Failed(format!("iperf3 to {} never ran", path.name)))?;
    let doc: Value = serde_json::from_slice(&out)?;
    doc["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| BenchError::Failed(format!("iperf3 to {} reported no rate", path.name)))
}

fn netns_command(ns: &str, program: &str) -> Command {
    netns::command_in(ns, std::path::Path::new(program))
}

/// `n` one-byte request/answer exchanges on one TCP connection; milliseconds each.
async fn round_trips(path: &Path, n: usize) -> Result<Samples, BenchError> {
    let at = SocketAddr::from((path.address, RR_PORT));
    let listener = eni_netns::run_in(&netns::path(&path.server), move || TcpListener::bind(at))
        .await?
        .map_err(BenchError::Io)?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while conn.read_exact(&mut byte).is_ok() {
            conn.write_all(&byte)?;
        }
        Ok(())
    });
    let stream = eni_netns::run_in(&netns::path(&path.client), move || {
        TcpStream::connect_timeout(&at, Duration::from_secs(5))
    })
    .await?
    .map_err(BenchError::Io)?;
    let samples = tokio::task::spawn_blocking(move || -> std::io::Result<Samples> {
        let mut stream = stream;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut samples = Samples::default();
        let mut byte = [1u8; 1];
        for _ in 0..n {
            let started = Instant::now();
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(samples)
    })
    .await
    .map_err(|e| BenchError::Failed(e.to_string()))?
    .map_err(BenchError::Io)?;
    let _ = server.join();
    Ok(samples)
}

/// A bench pod's end of its veth, `eth0`: `address` (with its prefix), up, and the
/// default route via `gateway`, reached over the link itself.
pub(super) fn wire_pod_end(pod: &str, address: &str, gateway: &str) -> Result<(), BenchError> {
    for args in [
        vec!["-n", pod, "addr", "add", address, "dev", "eth0"],
        vec!["-n", pod, "link", "set", "eth0", "up"],
        vec!["-n", pod, "route", "add", gateway, "dev", "eth0"],
        vec![
            "-n", pod, "route", "add", "default", "via", gateway, "dev", "eth0",
        ],
    ] {
        netns::ip(&args)?;
    }
    Ok(())
}

/// A VXLAN overlay between the two nodes: a namespace behind each node on a veth, the
/// nodes tunnelling their subnets to each other over their own addresses.
struct Overlay {
    pods: [String; 2],
}

impl Overlay {
    const POD_B: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 2);

    async fn build(
        prefix: &str,
        a: &eni_e2e::bed::BedNode,
        b: &eni_e2e::bed::BedNode,
    ) -> Result<Overlay, BenchError> {
        let pods = [format!("{prefix}ova"), format!("{prefix}ovb")];
        let ends = [(a, 1u8, b), (b, 2u8, a)];
        for (pod, (node, n, other)) in pods.iter().zip(ends) {
            netns::add(pod).await?;
            let (ns, peer) = (node.netns.as_str(), other.instance.primary_ip.to_string());
            let local = node.instance.primary_ip.to_string();
            let other_n = 3 - n;
            for args in [
                vec![
                    "-n", ns, "link", "add", "ovx", "type", "vxlan", "id", "42", "local", &local,
                    "remote", &peer, "dstport", "4789",
                ],
                vec![
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("10.250.0.{n}/24"),
                    "dev",
                    "ovx",
                ],
                vec!["-n", ns, "link", "set", "ovx", "up"],
                vec![
                    "-n", ns, "link", "add", "ovh", "type", "veth", "peer", "name", "eth0",
                    "netns", pod,
                ],
                vec![
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("10.250.{n}.1/24"),
                    "dev",
                    "ovh",
                ],
                vec!["-n", ns, "link", "set", "ovh", "up"],
                vec![
                    "-n",
                    ns,
                    "route",
                    "add",
                    &format!("10.250.{other_n}.0/24"),
                    "via",
                    &format!("10.250.0.{other_n}"),
                ],
            ] {
                netns::ip(&args)?;
            }
            wire_pod_end(pod, &format!("10.250.{n}.2/24"), &format!("10.250.{n}.1"))?;
        }
        Ok(Overlay { pods })
    }

    fn remove(self) {
        for pod in &self.pods {
            let _ = netns::delete(pod);
        }
    }
}
