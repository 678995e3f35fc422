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

use eni_crds::{Mode, PodNetwork};
use eni_e2e::{
    bed::{Bed, BedError},
    cluster::fast_cloud,
    netns,
    security_groups::{self, GroupPod},
    trial::{self, check, result},
    vpc::Cloud,
};
use eni_test_support::{PoolBuilder, pool, probe};
use kube::ResourceExt;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        trial("connectivity_per_mode", || connectivity(Cloud::Aws)),
        trial("security_groups", || security_groups(Cloud::Aws)),
        trial("lifecycle_leaves_nothing", || lifecycle(Cloud::Aws)),
        // The same trials with vpc-sim playing Alibaba Cloud and the operator on ECS.
        trial("alibaba_connectivity_per_mode", || {
            connectivity(Cloud::Alibaba)
        }),
        trial("alibaba_lifecycle_leaves_nothing", || {
            lifecycle(Cloud::Alibaba)
        }),
        trial("alibaba_security_groups", || {
            security_groups(Cloud::Alibaba)
        }),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial<Fut: std::future::Future<Output = Result<(), Failed>> + 'static>(
    name: &'static str,
    f: fn() -> Fut,
) -> Trial {
    trial::as_root(name, "network namespaces", f)
}

/// Pool `name` for the nodes labelled `pool=<node_label>`; addresses cool down for 2 s
/// so that reuse shows within a test.
fn pool_for(name: &str, mode: Mode, node_label: &str) -> PoolBuilder {
    pool(name, mode).nodes("pool", node_label).ip_cooldown("2s")
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

/// Pools `shared`, `exclusive` and `trunk` for nodes labelled `pool=<name>`, then the
/// operator; returns when the agents answer.
async fn one_pool_per_mode(bed: &Bed) -> Result<(), BedError> {
    let sg = bed.vpc.group_id("default").await?;
    let pools = [
        pool_for("shared", Mode::SharedIp, "shared").warm_ips(2),
        pool_for("exclusive", Mode::Exclusive, "exclusive").warm_enis(1),
        pool_for("trunk", Mode::Trunk, "trunk")
            .security_groups(&[sg.as_str()])
            .warm_enis(1),
    ];
    for pool in pools {
        bed.apply_yaml(&pool.yaml()).await?;
    }
    bed.start_operator("op-0")?;
    bed.wait_agents().await?;
    Ok(())
}

/// `(node, eni/address)` of every PodNetwork: the units pods hold.
async fn units_in_use(bed: &Bed) -> Result<BTreeSet<(String, String)>, BedError> {
    Ok(bed
        .podnetworks()
        .await?
        .iter()
        .map(|p| {
            let a = &p.spec.allocation;
            (
                p.spec.node_name.clone(),
                format!("{}/{}", a.eni_id, a.address),
            )
        })
        .collect())
}

/// A pod to create: name, node, labels.
type PodSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A pod that runs: its name, address and sandbox namespace.
#[derive(Clone, Debug)]
struct Running {
    name: String,
    ip: Ipv4Addr,
    sandbox: String,
}

async fn start_pods(
    bed: &Bed,
    pods: &[PodSpec<'_>],
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

async fn connectivity(cloud: Cloud) -> Result<(), Failed> {
    let bed = Bed::start_in(cloud, fast_cloud())
        .await
        .map_err(|e| e.to_string())?;
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
        one_pool_per_mode(&bed).await?;
        let mut spec: Vec<(String, &str)> = (0..7).map(|i| (format!("s1-{i}"), "s1")).collect();
        spec.extend([
            ("s2-0".to_string(), "s2"),
            ("x1-0".to_string(), "x1"),
            ("x2-0".to_string(), "x2"),
            ("t1-0".to_string(), "t1"),
            ("t2-0".to_string(), "t2"),
        ]);
        let refs: Vec<PodSpec<'_>> = spec
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
                pn.is_some_and(|pn| pn.spec.allocation.address == p.ip),
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
            .map(|p| probe::EchoServer::start(&p.sandbox, 7000))
            .collect::<Result<_, _>>()?;
        for (from, to) in pairs {
            let (a, b) = (&pods[from], &pods[to]);
            check(
                &format!("ping {from} -> {to} ({})", b.ip),
                probe::ping(&a.sandbox, b.ip),
                &mut failures,
            );
            check(
                &format!("tcp echo {from} -> {to}:7000"),
                probe::tcp_echo(&a.sandbox, SocketAddr::from((b.ip, 7000))),
                &mut failures,
            );
        }
        drop(echo);
        for p in ["s1-0", "x1-0", "t1-0"] {
            check(
                &format!("ping {p} -> VM outside the cluster ({})", vm.primary_ip),
                probe::ping(&pods[p].sandbox, vm.primary_ip),
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
            !held && !probe::ping(&pods["s1-0"].sandbox, unassigned),
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

/// Trunk pool `name` on the nodes labelled `pool=trunk` for pods labelled `app=<app>`.
fn trunk_pool(name: &str, app: &str, group: &str) -> String {
    pool_for(name, Mode::Trunk, "trunk")
        .pods("app", app)
        .security_groups(&[group])
        .warm_enis(1)
        .yaml()
}

/// Two trunk pools with different groups (vpc-sim's layout: `web` lets TCP 80 and ICMP
/// in from the VPC; `db` lets TCP 5432 in from members of `web` only), and a third with
/// the permissive `default` group as an outsider.
async fn security_groups(cloud: Cloud) -> Result<(), Failed> {
    let bed = Bed::start_in(cloud, fast_cloud())
        .await
        .map_err(|e| e.to_string())?;
    with_bed(&bed, || async {
        for node in ["t1", "t2"] {
            bed.add_node(node, "m5.xlarge", &[("pool", "trunk")])
                .await?;
        }
        let web = bed.vpc.group_id("web").await?;
        let db = bed.vpc.group_id("db").await?;
        let default = bed.vpc.group_id("default").await?;
        bed.apply_yaml(&trunk_pool("web", "web", &web)).await?;
        bed.apply_yaml(&trunk_pool("db", "db", &db)).await?;
        bed.apply_yaml(&trunk_pool("plain", "plain", &default))
            .await?;
        bed.start_operator("op-0")?;
        bed.wait_agents().await?;
        let pods = start_pods(
            &bed,
            &[
                ("web-0", "t1", &[("app", "web")]),
                ("plain-0", "t1", &[("app", "plain")]),
                ("db-0", "t2", &[("app", "db")]),
            ],
        )
        .await?;
        let servers: Vec<_> = ["web-0", "db-0"]
            .iter()
            .flat_map(|p| [80, 5432].map(|port| probe::EchoServer::start(&pods[*p].sandbox, port)))
            .collect::<Result<_, _>>()?;
        let pod = |name: &str| GroupPod {
            netns: &pods[name].sandbox,
            ip: pods[name].ip,
        };
        let mut failures = Vec::new();
        for (what, ok) in security_groups::probes(pod("web-0"), pod("db-0"), pod("plain-0")) {
            check(&what, ok, &mut failures);
        }
        drop(servers);

        // The db pool moves to the web group: new pods get it.
        bed.apply_yaml(&trunk_pool("db", "db", &web)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let more = start_pods(&bed, &[("db-1", "t2", &[("app", "db")])]).await?;
        let db1 = &more["db-1"];
        let server = probe::EchoServer::start(&db1.sandbox, 80)?;
        check(
            "after the change, ping plain-0 -> new db-1 passes (web group)",
            probe::ping(&pods["plain-0"].sandbox, db1.ip),
            &mut failures,
        );
        check(
            "after the change, plain-0 -> db-1 tcp/80 passes",
            probe::tcp_echo(&pods["plain-0"].sandbox, SocketAddr::from((db1.ip, 80))),
            &mut failures,
        );
        drop(server);
        let groups_of_db1: Vec<String> = bed
            .vpc
            .owned_enis(&bed.name)
            .await?
            .into_iter()
            .find(|e| e.primary_ip == db1.ip.to_string())
            .map(|e| e.groups)
            .unwrap_or_default();
        check(
            &format!("db-1's member ENI carries the web group only ({groups_of_db1:?})"),
            groups_of_db1 == vec![web.clone()],
            &mut failures,
        );
        result(failures)
    })
    .await
}

/// Pods of every mode come and go; a node goes; then the bed goes: nothing is left in
/// the cloud, in the node namespaces or on the host.
async fn lifecycle(cloud: Cloud) -> Result<(), Failed> {
    let bed = Bed::start_in(cloud, fast_cloud())
        .await
        .map_err(|e| e.to_string())?;
    let prefix = bed.prefix.clone();
    with_bed(&bed, || async {
        bed.add_node("s1", "t3.medium", &[("pool", "shared")])
            .await?;
        bed.add_node("x1", "m5.xlarge", &[("pool", "exclusive")])
            .await?;
        bed.add_node("t1", "m5.xlarge", &[("pool", "trunk")])
            .await?;
        one_pool_per_mode(&bed).await?;
        let names = ["s1-0", "s1-1", "s1-2", "x1-0", "t1-0", "t1-1"];
        let spec: Vec<PodSpec<'_>> = names.iter().map(|n| (*n, &n[..2], &[][..])).collect();
        let first = start_pods(&bed, &spec).await?;
        let first_units = units_in_use(&bed).await?;
        let mut failures = Vec::new();
        check(
            &format!("{} wired links while pods run", bed.pod_wiring_left().len()),
            !bed.pod_wiring_left().is_empty(),
            &mut failures,
        );
        for n in names {
            bed.delete_pod("default", n).await?;
        }
        for n in names {
            bed.wait_gone("default", n, Duration::from_secs(60)).await?;
        }
        eni_e2e::cluster::wait_for("PodNetworks released", Duration::from_secs(60), || async {
            let left = bed
                .podnetworks()
                .await
                .map_err(|e| eni_e2e::cluster::ClusterError::Build("podnetworks", e.to_string()))?;
            Ok(left.is_empty().then_some(()))
        })
        .await?;
        let left = bed.pod_wiring_left();
        check(
            &format!("no pod links, rules or routes left in node namespaces {left:?}"),
            left.is_empty(),
            &mut failures,
        );
        let sandboxes = netns::list(&format!("{prefix}k"));
        check(
            &format!("no pod sandbox left {sandboxes:?}"),
            sandboxes.is_empty(),
            &mut failures,
        );
        // Released units went back to the pools: the same pods again reuse them.
        let again = start_pods(&bed, &spec).await?;
        let second_units = units_in_use(&bed).await?;
        let reused = first_units.intersection(&second_units).count();
        check(
            &format!(
                "{reused} of {} addresses / member ENIs reused by the next pods",
                first_units.len()
            ),
            reused * 2 >= first_units.len(),
            &mut failures,
        );
        drop((first, again));
        // The trunk node goes: its trunk and member ENIs are deleted in the cloud.
        let t1 = bed.node("t1")?;
        bed.remove_node("t1").await?;
        let enis =
            eni_e2e::cluster::wait_for("t1's ENIs deleted", Duration::from_secs(60), || async {
                let owned = bed
                    .vpc
                    .owned_enis(&bed.name)
                    .await
                    .map_err(|e| eni_e2e::cluster::ClusterError::Build("vpc", e.to_string()))?;
                let on_t1: Vec<String> = owned
                    .iter()
                    .filter(|e| {
                        e.attached_to.as_deref() == Some(&t1.instance.instance_id)
                            || e.tags["eni-operator.io/node"].as_str() == Some("t1")
                    })
                    .map(|e| e.id.clone())
                    .collect();
                Ok(on_t1.is_empty().then_some(owned.len()))
            })
            .await?;
        println!("  ok   t1's ENIs are gone from vpc-sim ({enis} owned ENIs remain on s1, x1)");
        let violations = bed.vpc.violations().await?;
        check(
            &format!("vpc-sim finds no invariant violation {violations:?}"),
            violations.is_empty(),
            &mut failures,
        );
        result(failures)
    })
    .await?;
    drop(bed);
    let left = netns::list(&prefix);
    let bridge = netns::ip(&["link", "show", &format!("{prefix}br")]).is_ok();
    if !left.is_empty() || bridge {
        return Err(format!("after teardown: namespaces {left:?}, bridge left: {bridge}").into());
    }
    println!("  ok   after teardown no namespace, link or bridge of the bed is left");
    Ok(())
}
