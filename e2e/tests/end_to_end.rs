//! End to end on the local bed (`eni_e2e::bed`): real API server, vpc-sim materializing
//! ENIs, operator and agents as processes, kubelet stand-ins running the real `eni-cni`.
//! Packets really cross between pod namespaces over ENI addresses. Needs root.
//!
//! The trials run one at a time (each brings up its own bed on 2 cores).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use eni_crds::{ENIPool, Mode, PodNetwork};
use eni_e2e::{
    bed::{Bed, BedError},
    cluster::fast_cloud,
    netns,
};
use kube::{Api, ResourceExt, api::ListParams};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        trial("connectivity_per_mode", connectivity),
        trial("security_groups", security_groups),
        trial("lifecycle_leaves_nothing", lifecycle),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial<Fut>(name: &'static str, f: fn() -> Fut) -> Trial
where
    Fut: std::future::Future<Output = Result<(), Failed>> + 'static,
{
    Trial::test(name, move || {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("needs root (network namespaces)".into());
        }
        let rt = tokio::runtime::Runtime::new().map_err(|e| Failed::from(e.to_string()))?;
        let started = Instant::now();
        let out = rt.block_on(f());
        println!("{name}: {:.1}s", started.elapsed().as_secs_f64());
        out
    })
}

fn pool(name: &str, mode: &str, node_label: &str, extra: &str) -> String {
    format!(
        "apiVersion: eni-operator.io/v1alpha1\nkind: ENIPool\nmetadata: {{name: {name}}}\nspec:\n  mode: {mode}\n  nodeSelector: {{matchLabels: {{pool: {node_label}}}}}\n  subnets: {{tags: {{eni-operator.io/pods: \"true\"}}}}\n  ipCooldown: 2s\n{extra}"
    )
}

/// Runs `f` on a started bed; on failure the processes' logs are printed.
async fn with_bed<F, Fut>(bed: &Bed, f: F) -> Result<(), Failed>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), BedError>>,
{
    match f().await {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("{}", bed.logs(40));
            Err(e.to_string().into())
        }
    }
}

/// A pod that runs: its name, address and sandbox namespace.
#[derive(Clone, Debug)]
struct Running {
    name: String,
    ip: Ipv4Addr,
    sandbox: String,
}

async fn start_pods(
    bed: &Bed,
    pods: &[(&str, &str, &[(&str, &str)])],
) -> Result<BTreeMap<String, Running>, BedError> {
    for (name, node, labels) in pods {
        bed.create_pod("default", name, node, labels).await?;
    }
    let mut out = BTreeMap::new();
    for (name, _, _) in pods {
        let ip = bed
            .wait_ready("default", name, Duration::from_secs(60))
            .await?;
        let sandbox = bed.sandbox_of("default", name).await?;
        out.insert(
            name.to_string(),
            Running {
                name: name.to_string(),
                ip,
                sandbox,
            },
        );
    }
    Ok(out)
}

fn check(what: &str, ok: bool, failures: &mut Vec<String>) {
    println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
    if !ok {
        failures.push(what.to_owned());
    }
}

async fn connectivity() -> Result<(), Failed> {
    let bed = Bed::start(fast_cloud()).await.map_err(|e| e.to_string())?;
    with_bed(&bed, || async {
        // t3.medium: 6 addresses per ENI, so 7 SharedIP pods on one node span two ENIs.
        for (node, ty, label) in [
            ("s1", "t3.medium", "shared"),
            ("s2", "t3.medium", "shared"),
            ("x1", "m5.xlarge", "exclusive"),
            ("x2", "m5.xlarge", "exclusive"),
            ("t1", "m5.xlarge", "trunk"),
            ("t2", "m5.xlarge", "trunk"),
        ] {
            bed.add_node(node, ty, &[("pool", label)]).await?;
        }
        let vm = bed.add_host("vm", "t3.medium").await?;
        let sg = bed.vpc.group_id("default").await?;
        bed.apply_yaml(&pool(
            "shared",
            "SharedIP",
            "shared",
            "  warm: {warmIPs: 2}\n",
        ))
        .await?;
        bed.apply_yaml(&pool(
            "exclusive",
            "Exclusive",
            "exclusive",
            "  warm: {warmENIs: 1}\n",
        ))
        .await?;
        bed.apply_yaml(&pool(
            "trunk",
            "Trunk",
            "trunk",
            &format!("  securityGroups: [{sg}]\n  warm: {{warmENIs: 1}}\n"),
        ))
        .await?;
        bed.start_operator("op-0")?;
        bed.wait_agents().await?;
        let mut spec: Vec<(String, &str)> = (0..7).map(|i| (format!("s1-{i}"), "s1")).collect();
        spec.extend([
            ("s2-0".to_string(), "s2"),
            ("x1-0".to_string(), "x1"),
            ("x2-0".to_string(), "x2"),
            ("t1-0".to_string(), "t1"),
            ("t2-0".to_string(), "t2"),
        ]);
        let refs: Vec<(&str, &str, &[(&str, &str)])> = spec
            .iter()
            .map(|(n, node)| (n.as_str(), *node, &[][..]))
            .collect();
        let started = Instant::now();
        let pods = start_pods(&bed, &refs).await?;
        println!(
            "  {} pods Ready in {:.1}s",
            pods.len(),
            started.elapsed().as_secs_f64()
        );
        let pns: BTreeMap<String, PodNetwork> = bed
            .podnetworks()
            .await?
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();
        let mut failures = Vec::new();
        let s1_enis: BTreeSet<&str> = pns
            .values()
            .filter(|p| p.spec.node_name == "s1")
            .map(|p| p.spec.allocation.eni_id.as_str())
            .collect();
        check(
            &format!("SharedIP pods of s1 span {} ENIs (want 2)", s1_enis.len()),
            s1_enis.len() >= 2,
            &mut failures,
        );
        for p in pods.values() {
            let pn = pns.get(&p.name);
            check(
                &format!("{} holds its PodNetwork's address {}", p.name, p.ip),
                pn.is_some_and(|pn| pn.spec.allocation.address == p.ip.to_string()),
                &mut failures,
            );
        }
        let pairs = [
            ("s2-0", "s1-0"),
            ("s2-0", "s1-6"),
            ("s1-6", "s2-0"),
            ("x1-0", "x2-0"),
            ("x2-0", "x1-0"),
            ("t1-0", "t2-0"),
            ("t2-0", "t1-0"),
            ("s1-3", "x2-0"),
            ("x1-0", "t2-0"),
            ("t1-0", "s2-0"),
        ];
        let echo: Vec<_> = pods
            .values()
            .map(|p| netns::EchoServer::start(&p.sandbox, 7000))
            .collect::<Result<_, _>>()?;
        for (from, to) in pairs {
            let (a, b) = (&pods[from], &pods[to]);
            check(
                &format!("ping {from} -> {to} ({})", b.ip),
                netns::ping(&a.sandbox, b.ip),
                &mut failures,
            );
            check(
                &format!("tcp echo {from} -> {to}:7000"),
                netns::tcp_echo(&a.sandbox, SocketAddr::from((b.ip, 7000))),
                &mut failures,
            );
        }
        drop(echo);
        for p in ["s1-0", "x1-0", "t1-0"] {
            check(
                &format!("ping {p} -> VM outside the cluster ({})", vm.primary_ip),
                netns::ping(&pods[p].sandbox, vm.primary_ip),
                &mut failures,
            );
        }
        let used: BTreeSet<Ipv4Addr> = pods.values().map(|p| p.ip).collect();
        let unassigned = (200..250)
            .map(|i| Ipv4Addr::new(10, 0, 1, i))
            .find(|a| !used.contains(a))
            .unwrap_or(Ipv4Addr::new(10, 0, 1, 250));
        let held = bed
            .vpc
            .owned_enis(&bed.name)
            .await?
            .iter()
            .any(|e| e.secondary.contains(&unassigned.to_string()));
        check(
            &format!("{unassigned} (on no ENI) is unreachable from s1-0"),
            !held && !netns::ping(&pods["s1-0"].sandbox, unassigned),
            &mut failures,
        );
        if failures.is_empty() {
            Ok(())
        } else {
            Err(BedError::Other(format!("failed: {failures:?}")))
        }
    })
    .await
}

async fn security_groups() -> Result<(), Failed> {
    Err("not yet".into())
}

async fn lifecycle() -> Result<(), Failed> {
    Err("not yet".into())
}

#[allow(dead_code)]
async fn pool_status(bed: &Bed, name: &str) -> Result<Option<ENIPool>, BedError> {
    let _ = Mode::SharedIp;
    Ok(Api::<ENIPool>::all(bed.client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|p| p.name_any() == name))
}
