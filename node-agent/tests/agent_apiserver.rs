//! The real `eni-agent` process against a real kube-apiserver (eni_e2e::ControlPlane) and
//! the real dataplane in a node namespace: the label-selected watch, ADD/DEL through the
//! real `eni-cni`, the server-side-applied status, health and metrics endpoints. Then
//! 200 sequential ADD/DEL measure latency (with the reference ptp + host-local plugins
//! measured in the same run for scale) and the agent's RSS. Needs root.

mod cni_harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cni_harness::*;
use eni_crds::{PodNetwork, PodNetworkPhase};
use eni_e2e::{
    ControlPlane,
    control_plane::SYSTEM_NAMESPACE,
    identities::{self, Who},
};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// Kills the agent when the test ends, also on panic.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn labelled(mut pn: PodNetwork, node: &str) -> PodNetwork {
    pn.metadata.labels = Some([("eni-operator.io/node".to_string(), node.to_string())].into());
    pn
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn stats(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "n": samples.len(),
        "p50_ms": percentile(&samples, 0.50),
        "p99_ms": percentile(&samples, 0.99),
        "max_ms": samples.last(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_process_against_a_real_apiserver() {
    let cp = ControlPlane::start().await.expect("control plane");
    cp.install_crds().await.expect("CRDs");
    let client = cp.client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The agent runs as the chart's ServiceAccount with a token bound to an agent pod on
    // its node (the chart's RBAC and node-scope policy in force).
    for manifest in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
    ] {
        eni_e2e::cluster::apply_yaml(&client, &manifest.to_string())
            .await
            .unwrap();
    }
    identities::install(&client, dir.path()).await.unwrap();
    let kubeconfig = identities::kubeconfig(&cp, &client, Who::Agent(NODE))
        .await
        .unwrap();

    let mut bed = NodeBed::new("api");
    let netns = bed.pod();
    let socket = dir.path().join("agent.sock");
    let metrics_addr: SocketAddr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let agent = AgentProcess(
        Command::new(env!("CARGO_BIN_EXE_eni-agent"))
            .args(["--node-name", NODE, "--node-ip", "10.0.0.10"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--socket-path")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .args(["--allocation-timeout", "1"])
            .arg("--host-netns")
            .arg(bed.host_path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();

    // Ready once the (empty) cache synced.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http_get(metrics_addr, "/readyz") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent never ready: {}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(metrics_addr, "/healthz").unwrap().0, 200);

    let api: Api<PodNetwork> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &labelled(podnetwork("default", "web-0", "uid-1", "10.0.1.5"), NODE),
    )
    .await
    .unwrap();
    // Another node's PodNetwork: this agent must not see it.
    let mut other = labelled(
        podnetwork("default", "elsewhere", "uid-2", "10.0.1.6"),
        "node-b",
    );
    other.spec.node_name = "node-b".into();
    api.create(&PostParams::default(), &other).await.unwrap();

    let conf = format!(
        r#"{{"cniVersion":"1.1.0","name":"eni","type":"eni-cni","socketPath":"{}"}}"#,
        socket.display()
    );
    let env = |command: &'static str,
               container: &str,
               pod: &str,
               uid: &str|
     -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), container.into()),
            ("CNI_NETNS".into(), netns.clone()),
            ("CNI_IFNAME".into(), "eth0".into()),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID={uid}"
                ),
            ),
            ("CNI_PATH".into(), "/usr/lib/cni".into()),
        ]
    };
    let run = |vars: Vec<(String, String)>, stdin: &str| {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        bed.run_plugin(Path::new(eni_cni()), &pairs, stdin)
    };

    // The watch delivers the PodNetwork; ADD waits for it if needed.
    let add = run(env("ADD", "first", "web-0", "uid-1"), &conf);
    assert_eq!(add.code, 0, "{}", add.stdout);
    assert_eq!(add.json()["ips"][0]["address"], "10.0.1.5/32");
    // The status follows the answer (written off the request's path).
    let mut pn = api.get("web-0").await.unwrap();
    for _ in 0..100 {
        if pn.status.as_ref().and_then(|s| s.phase) == Some(PodNetworkPhase::Ready) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        pn = api.get("web-0").await.unwrap();
    }
    let status = pn.status.clone().expect("status written");
    assert_eq!(status.phase, Some(PodNetworkPhase::Ready));
    assert_eq!(status.container_id.as_deref(), Some("first"));
    let managers: Vec<_> = pn
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "eni-agent"), "{managers:?}");

    let msg = run(env("ADD", "other", "elsewhere", "uid-2"), &conf).error(11);
    assert!(msg.contains("has not allocated"), "{msg}");
    run(env("DEL", "first", "web-0", "uid-1"), &conf).ok_empty();

    // 200 sequential ADD/DEL through the real binary, agent, dataplane and API server.
    let rss_before = rss_kib(pid);
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let id = format!("lat{i}");
        let started = Instant::now();
        let add = run(env("ADD", &id, "web-0", "uid-1"), &conf);
        adds.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(add.code, 0, "{}", add.stdout);
        let started = Instant::now();
        run(env("DEL", &id, "web-0", "uid-1"), &conf).ok_empty();
        dels.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let rss_after = rss_kib(pid);

    // The reference ptp + host-local pair on the same node, same way, for scale.
    let ipam_dir = dir.path().join("host-local");
    let ref_conf = json!({
        "cniVersion": "1.0.0", "name": "ref", "type": "ptp",
        "ipam": { "type": "host-local", "subnet": "10.99.0.0/24", "dataDir": ipam_dir },
    })
    .to_string();
    let ptp = Path::new("/usr/lib/cni/ptp");
    let (mut ref_adds, mut ref_dels) = (Vec::new(), Vec::new());
    if ptp.exists() {
        for i in 0..200 {
            let id = format!("ref{i}");
            let vars = env("ADD", &id, "web-0", "uid-1");
            let pairs: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let started = Instant::now();
            let add = bed.run_plugin(ptp, &pairs, &ref_conf);
            ref_adds.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(add.code, 0, "ptp ADD: {}", add.stdout);
            let vars = env("DEL", &id, "web-0", "uid-1");
            let pairs: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let started = Instant::now();
            bed.run_plugin(ptp, &pairs, &ref_conf).ok_empty();
            ref_dels.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    let metrics = http_get(metrics_addr, "/metrics").unwrap().1;
    assert!(
        metrics.contains(r#"eni_agent_cni_requests_total{command="ADD",result="ok"} 201"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"eni_agent_kernel_feature_available{feature="ipvlan"}"#));
    // Ready (above), and the gauge the agent-not-ready alert watches says so too.
    assert!(
        metrics.contains("eni_agent_podnetwork_cache_synced 1"),
        "{metrics}"
    );

    let report = json!({
        "eni_cni": { "add": stats(adds.clone()), "del": stats(dels.clone()) },
        "reference_ptp_host_local": if ref_adds.is_empty() { json!(null) } else {
            json!({ "add": stats(ref_adds.clone()), "del": stats(ref_dels.clone()) })
        },
        "agent_rss_kib": { "before": rss_before, "after_200_add_del": rss_after },
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let p50 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    println!(
        "eni-cni ADD p50 {:.1} ms p99 {:.1} ms, DEL p50 {:.1} ms p99 {:.1} ms (ptp+host-local ADD p50 {:.1} ms, DEL p50 {:.1} ms); agent RSS {} KiB",
        report["eni_cni"]["add"]["p50_ms"].as_f64().unwrap(),
        report["eni_cni"]["add"]["p99_ms"].as_f64().unwrap(),
        report["eni_cni"]["del"]["p50_ms"].as_f64().unwrap(),
        report["eni_cni"]["del"]["p99_ms"].as_f64().unwrap(),
        if ref_adds.is_empty() {
            f64::NAN
        } else {
            p50(&ref_adds)
        },
        if ref_dels.is_empty() {
            f64::NAN
        } else {
            p50(&ref_dels)
        },
        rss_after
    );
    drop(agent);
}
