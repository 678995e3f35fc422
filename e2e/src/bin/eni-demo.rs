//! The demo: a 3-node cluster on this machine (real API server, vpc-sim making ENIs real
//! links, the operator and one agent per node as processes, kubelet stand-ins running
//! the real eni-cni), one ENIPool per mode, pods in each mode, and proof that packets
//! cross between them over their ENI addresses and that a trunk pod's security group
//! drops what it should. Left running for kubectl until Ctrl-C (or `--once`).
//! `--real-nodes`: the nodes are real kubelet + containerd, the chart is installed with
//! helm from images built here, and the pods are real containers.
//! `--cloud alibaba`: vpc-sim plays Alibaba Cloud (ECS ids, zones and instance types)
//! and the operator runs with its ECS provider; the default is AWS (EC2).

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::ExitCode,
    time::{Duration, Instant},
};

use eni_crds::{ENIPool, Mode, PodNetwork};
use eni_e2e::{
    bed::Bed,
    cluster::{fast_cloud, wait_for},
    real_bed::test_pod,
    vpc::{Cloud, instance_type_on},
};
use eni_test_support::{pool, probe};
use kube::{Api, ResourceExt};

/// The cloud tag naming an ENI's pool.
const POOL_TAG: &str = "eni-operator.io/pool";

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let once = args.iter().any(|a| a == "--once");
    let real = args.iter().any(|a| a == "--real-nodes");
    let cloud = match cloud_arg(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(once, real, cloud).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Pod {
    name: &'static str,
    node: &'static str,
    ip: Ipv4Addr,
    sandbox: String,
    ready_secs: f64,
}

/// `--cloud aws|alibaba` (or `--cloud=...`); AWS when absent.
fn cloud_arg(args: &[String]) -> Result<Cloud, String> {
    let value = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--cloud=")
            .map(str::to_owned)
            .or_else(|| (a == "--cloud").then(|| args.get(i + 1).cloned().unwrap_or_default()))
    });
    match value.as_deref() {
        None | Some("aws") => Ok(Cloud::Aws),
        Some("alibaba") => Ok(Cloud::Alibaba),
        Some(other) => Err(format!("unknown cloud {other:?}: aws or alibaba")),
    }
}

async fn run(once: bool, real: bool, cloud: Cloud) -> DemoResult<bool> {
    let t0 = Instant::now();
    let step = |what: &str| println!("==> [{:5.1}s] {what}", t0.elapsed().as_secs_f64());
    let bed = if real {
        step(
            "starting etcd + kube-apiserver, controller-manager and scheduler, vpc-sim, and building the images",
        );
        Bed::start_real_in(cloud, fast_cloud()).await?
    } else {
        step(
            "starting etcd + kube-apiserver (TLS, token auth, RBAC) and vpc-sim (materialized dataplane)",
        );
        Bed::start_in(cloud, fast_cloud()).await?
    };
    println!(
        "    API server {}, {} API {}",
        bed.cp.server(),
        match cloud {
            Cloud::Aws => "EC2",
            Cloud::Alibaba => "ECS",
        },
        bed.vpc.ec2_url
    );
    for (node, mode) in [
        ("node-shared", "shared"),
        ("node-exclusive", "exclusive"),
        ("node-trunk", "trunk"),
    ] {
        let labels = [("eni-operator.io/mode", mode)];
        let n = if real {
            bed.add_real_node(node, "m5.xlarge", &labels).await?
        } else {
            bed.add_node(node, "m5.xlarge", &labels).await?
        };
        let runs = if real {
            "kubelet + containerd"
        } else {
            "agent and kubelet stand-in"
        };
        println!(
            "    node {node}: instance {} {} ({}), namespace {}, {runs} on {}",
            instance_type_on(cloud, "m5.xlarge"),
            n.instance.instance_id,
            n.instance.primary_ip,
            n.netns,
            n.mgmt_ip
        );
    }
    let vm = bed.add_host("vm-outside", "t3.medium").await?;
    println!(
        "    a VM outside the cluster: {} in namespace {}",
        vm.primary_ip, vm.netns
    );
    step("applying one ENIPool per mode (two trunk pools: security groups web and db)");
    let web = bed.vpc.group_id("web").await?;
    let db = bed.vpc.group_id("db").await?;
    // Nodes carry `eni-operator.io/mode=<mode>`; each pool selects one kind.
    let pool_for = |name: &str, mode: Mode, node_mode: &str| {
        pool(name, mode).nodes("eni-operator.io/mode", node_mode)
    };
    bed.apply_yaml(
        &pool_for("shared", Mode::SharedIp, "shared")
            .min_ips(4)
            .warm_ips(2)
            .yaml(),
    )
    .await?;
    bed.apply_yaml(
        &pool_for("exclusive", Mode::Exclusive, "exclusive")
            .warm_enis(1)
            .yaml(),
    )
    .await?;
    for (name, app, group) in [("web", "web", &web), ("db", "db", &db)] {
        let trunk = pool_for(name, Mode::Trunk, "trunk")
            .pods("app", app)
            .security_groups(&[group.as_str()])
            .warm_enis(1);
        bed.apply_yaml(&trunk.yaml()).await?;
    }
    if real {
        step("helm install of the chart: the operator Deployment and the agent DaemonSet");
        let took = bed.install_chart().await?;
        println!(
            "    rolled out {:.1}s after helm install",
            took.as_secs_f64()
        );
    } else {
        step("starting the operator (leader-elected) and waiting for the agents");
        bed.start_operator("eni-operator-0")?;
        bed.wait_agents().await?;
    }
    // Pods start from warm stock, as pools are for: READY(s) below is then the pod start
    // itself, comparable between the kubelet stand-in and real nodes.
    let pools: Api<ENIPool> = Api::all(bed.client.clone());
    wait_for("every pool's warm stock", Duration::from_secs(120), || {
        let pools = pools.clone();
        async move {
            let all = pools.list(&Default::default()).await?.items;
            let warm = all.len() == 4
                && all
                    .iter()
                    .all(|p| p.status.as_ref().is_some_and(|s| s.addresses.warm > 0));
            Ok(warm.then_some(()))
        }
    })
    .await?;
    step("pools warm; creating pods");
    let spec: [(&str, &str, &str); 5] = [
        ("shared-0", "node-shared", "client"),
        ("shared-1", "node-shared", "client"),
        ("exclusive-0", "node-exclusive", "client"),
        ("web-0", "node-trunk", "web"),
        ("db-0", "node-trunk", "db"),
    ];
    let mut pods = Vec::new();
    let created = Instant::now();
    for (name, node, app) in spec {
        if real {
            // The trunk pools' groups (web, db) do not admit the node's probes, as with
            // per-pod security groups on a real cloud: these pods have none.
            let mut pod = test_pod("default", name, node, &[("app", app)]);
            if let Some(c) = pod["spec"]["containers"][0].as_object_mut() {
                c.remove("readinessProbe");
                c.remove("livenessProbe");
            }
            bed.create_pod_from(pod).await?;
        } else {
            bed.create_pod("default", name, node, &[("app", app)])
                .await?;
        }
    }
    for (name, node, _) in spec {
        let ip = bed
            .wait_ready("default", name, Duration::from_secs(90))
            .await?;
        let sandbox = if real {
            bed.expose_pod_netns("default", name).await?
        } else {
            bed.sandbox_of("default", name).await?
        };
        println!("    {name} Ready on {node} with {ip}");
        pods.push(Pod {
            name,
            node,
            ip,
            sandbox,
            ready_secs: created.elapsed().as_secs_f64(),
        });
    }
    let by = |n: &str| pods.iter().find(|p| p.name == n);
    let (Some(s0), Some(s1), Some(x0), Some(w0), Some(d0)) = (
        by("shared-0"),
        by("shared-1"),
        by("exclusive-0"),
        by("web-0"),
        by("db-0"),
    ) else {
        return Err("a pod is missing".into());
    };
    let _servers: Vec<probe::EchoServer> = [(s1, 80), (x0, 80), (w0, 80), (d0, 5432), (d0, 80)]
        .iter()
        .map(|(p, port)| probe::EchoServer::start(&p.sandbox, *port))
        .collect::<Result<_, _>>()?;
    step("checking connectivity across nodes and modes, and security groups");
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut check = |what: String, ok: bool| {
        println!("    {} {what}", if ok { "PASS" } else { "FAIL" });
        if ok {
            passed += 1;
        } else {
            failed.push(what);
        }
    };
    let tcp = |from: &Pod, to: &Pod, port: u16| {
        probe::tcp_echo(&from.sandbox, SocketAddr::from((to.ip, port)))
    };
    for (a, b) in [(s0, x0), (x0, w0), (w0, s1), (s1, x0)] {
        check(
            format!("ping {} -> {} ({})", a.name, b.name, b.ip),
            probe::ping(&a.sandbox, b.ip),
        );
        check(
            format!("tcp echo {} -> {}:80", a.name, b.name),
            tcp(a, b, 80),
        );
    }
    for p in [s0, x0, w0] {
        check(
            format!(
                "ping {} -> VM outside the cluster ({})",
                p.name, vm.primary_ip
            ),
            probe::ping(&p.sandbox, vm.primary_ip),
        );
    }
    check(
        "db-0 admits tcp/5432 from web-0 (group web)".into(),
        tcp(w0, d0, 5432),
    );
    check(
        "db-0 drops tcp/5432 from shared-0 (not in group web)".into(),
        !tcp(s0, d0, 5432),
    );
    check(
        "db-0 drops tcp/80 from web-0 (db admits 5432 only)".into(),
        !tcp(w0, d0, 80),
    );
    check(
        "db-0 drops ping from exclusive-0".into(),
        !probe::ping(&x0.sandbox, d0.ip),
    );

    let pns: Vec<PodNetwork> = bed.podnetworks().await?;
    let enis = bed.vpc.owned_enis(&bed.name).await?;
    step("deleting ENIPool exclusive with kubectl while exclusive-0 still uses it");
    let drained = delete_pool(&bed, "exclusive", &mut check, s0, x0).await?;
    println!(
        "    ENIPool exclusive gone {drained:.1}s after its last pod; vpc-sim holds nothing of it"
    );
    println!();
    println!(
        "{:<12} {:<10} {:<15} {:<16} {:<25} {:>8}",
        "POD", "MODE", "NODE", "ADDRESS", "ENI", "READY(s)"
    );
    for p in &pods {
        let pn = pns.iter().find(|n| n.name_any() == p.name);
        // As the API spells it (SharedIP), not as Rust does.
        let mode = pn
            .and_then(|n| serde_json::to_value(n.spec.mode).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let eni = pn
            .map(|n| n.spec.allocation.eni_id.clone())
            .unwrap_or_default();
        println!(
            "{:<12} {:<10} {:<15} {:<16} {:<25} {:>8.1}",
            p.name, mode, p.node, p.ip, eni, p.ready_secs
        );
    }
    println!(
        "\n{} pods, 3 modes, {} ENIs owned by the cluster in vpc-sim, checks: {} passed, {} failed; done in {:.1}s",
        pods.len(),
        enis.len(),
        passed,
        failed.len(),
        t0.elapsed().as_secs_f64()
    );
    let ok = failed.is_empty();
    if once {
        return Ok(ok);
    }
    println!(
        "\nThe cluster keeps running. Point kubectl at it with:\n\n    export KUBECONFIG={}\n    kubectl get enipools,trunkenis,podnetworks,pods -A -o wide\n\nand look inside a pod with: ip netns exec {} ip addr\n`kubectl delete enipool shared` drains that pool once its pods are gone.\nCtrl-C stops everything and removes it.",
        bed.cp.kubeconfig_path().display(),
        s0.sandbox
    );
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    Ok(ok)
}

/// What a GitOps user does when a pool leaves Git: `kubectl delete enipool`. The pool's
/// pod keeps its ENI (still reachable from `from`); once that pod goes, the pool drains,
/// the ENIPool disappears and the cloud holds nothing of it. Returns seconds from the
/// pod's deletion to the ENIPool's.
async fn delete_pool(
    bed: &Bed,
    name: &str,
    check: &mut impl FnMut(String, bool),
    from: &Pod,
    user: &Pod,
) -> DemoResult<f64> {
    let kubectl = eni_e2e::binaries::kubernetes(eni_e2e::binaries::Need::ControlPlane)?.kubectl;
    let out = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(bed.cp.kubeconfig_path())
        .args(["delete", "enipool", name, "--wait=false"])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "kubectl delete enipool {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    println!("    $ kubectl delete enipool {name}");
    println!("    {}", String::from_utf8_lossy(&out.stdout).trim());
    let pools: Api<ENIPool> = Api::all(bed.client.clone());
    let deleting = wait_for(
        "the pool's Deleting condition",
        Duration::from_secs(30),
        || {
            let pools = pools.clone();
            async move {
                let pool = pools.get_opt(name).await?;
                let cond = pool
                    .and_then(|p| p.status)
                    .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Deleting"))
                    .filter(|c| c.status == "True");
                Ok(cond)
            }
        },
    )
    .await?;
    println!(
        "    ENIPool {name}: Deleting={} ({}): {}",
        deleting.status, deleting.reason, deleting.message
    );
    check(
        format!(
            "{} keeps its ENI while {name} drains: ping {} -> {} ({})",
            user.name, from.name, user.name, user.ip
        ),
        probe::ping(&from.sandbox, user.ip),
    );
    bed.delete_pod("default", user.name).await?;
    let since = Instant::now();
    bed.wait_gone("default", user.name, Duration::from_secs(60))
        .await?;
    wait_for(
        &format!("ENIPool {name} gone"),
        Duration::from_secs(90),
        || {
            let pools = pools.clone();
            async move { Ok(pools.get_opt(name).await?.is_none().then_some(())) }
        },
    )
    .await?;
    let drained = since.elapsed().as_secs_f64();
    let left = bed
        .vpc
        .owned_enis(&bed.name)
        .await?
        .into_iter()
        .filter(|e| e.tags[POOL_TAG].as_str() == Some(name))
        .count();
    check(
        format!("vpc-sim holds no ENI of the deleted pool {name} ({left} left)"),
        left == 0,
    );
    Ok(drained)
}
