//! End to end on real nodes (`Bed::start_real`): kubelet v1.36 and containerd 2.x in
//! each node's namespaces, the chart installed by `helm install` (the operator and the
//! agents run as its pods, under its service accounts), and test pods as real containers
//! whose readiness and liveness probes kubelet sends over the pod network. Needs root.
//!
//! Two real nodes: the bigger scenarios stay on the kubelet stand-in
//! (tests/end_to_end.rs), which costs no CPU per node.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use eni_crds::Mode;
use eni_e2e::cluster::wait_for;
use eni_e2e::{
    bed::{Bed, BedError},
    cluster::fast_cloud,
    node_net::NodeNet,
    real_bed::{ECHO_PORT, HTTP_PORT, RELEASE, test_pod},
};
use eni_node_agent::agent::state::Record;
use eni_test_support::{PoolBuilder, pool, probe};
use k8s_openapi::{
    api::{
        admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
        apps::v1::{DaemonSet, Deployment},
        core::v1::{Event, Node, Pod, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        trial("real_pods_in_every_mode", real_pods_in_every_mode),
        trial(
            "kubelet_and_containerd_restarts_keep_pods",
            restarts_keep_pods,
        ),
        trial(
            "host_port_exclusive_and_trunk",
            host_port_exclusive_and_trunk,
        ),
        // Fails today (ignored until fixed; run it with --ignored). portmap masquerades
        // the connection to the node's address (masqAll), but a SharedIP pod's answer is
        // routed by the agent's `from <pod> lookup <ENI table>` rule before conntrack
        // puts the node's address back as its source, so it leaves through the pod's ENI
        // with the node's address and the VPC's anti-spoofing drops it. Replies to DNATed
        // connections need connmark routing through the main table.
        trial("host_port_shared_ip", host_port_shared_ip).with_ignored_flag(true),
        trial("security_groups_on_real_pods", security_groups),
        trial(
            "status_follows_the_agent_then_uninstall",
            status_then_uninstall,
        ),
        trial(
            "sandbox_recreated_after_a_failed_add",
            sandbox_recreated_after_a_failed_add,
        ),
        trial(
            "cni_check_and_gc_through_libcni",
            cni_check_and_gc_through_libcni,
        ),
        // Fails today (ignored until fixed; run it with --ignored). The chart chains the
        // reference bandwidth plugin, whose CHECK wants the pod's interface to be a veth
        // with its peer on the host even when the pod has no bandwidth limit; an
        // Exclusive or Trunk pod's interface is its ENI, so the chain's CHECK fails in
        // bandwidth although eni-cni's own CHECK passes.
        trial(
            "cni_check_of_passthrough_pods",
            cni_check_of_passthrough_pods,
        )
        .with_ignored_flag(true),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial<Fut>(name: &'static str, f: fn() -> Fut) -> Trial
where
    Fut: std::future::Future<Output = Result<(), Failed>> + 'static,
{
    Trial::test(name, move || {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("needs root (namespaces, mounts, cgroups)".into());
        }
        let rt = tokio::runtime::Runtime::new().map_err(|e| Failed::from(e.to_string()))?;
        let started = Instant::now();
        let out = rt.block_on(f());
        println!("{name}: {:.1}s", started.elapsed().as_secs_f64());
        out
    })
}

async fn with_bed<F, Fut>(bed: &Bed, f: F) -> Result<(), Failed>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), BedError>>,
{
    match f().await {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("{}", bed.pod_report("default").await);
            eprintln!("{}", bed.pod_report("eni-system").await);
            eprintln!("{}", bed.logs(40));
            Err(e.to_string().into())
        }
    }
}

fn check(what: &str, ok: bool, failures: &mut Vec<String>) {
    println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
    if !ok {
        failures.push(what.to_owned());
    }
}

fn result(failures: Vec<String>) -> Result<(), BedError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(BedError::Other(format!("failed: {failures:?}")))
    }
}

/// Pool `name` of `mode` for pods labelled `mode=<name>` on every real node.
fn pool_for(name: &str, mode: Mode) -> PoolBuilder {
    pool(name, mode)
        .nodes("eni-pools", "all")
        .pods("mode", name)
        .ip_cooldown("2s")
}

/// The pools a trial's bed gets.
#[derive(Clone, Copy)]
enum Pools {
    /// `shared`, `exclusive` and `trunk`, for pods labelled `mode=<pool>`.
    OnePerMode,
    /// Trunk pools `web`, `db` (vpc-sim's groups of those names) and `plain` (the
    /// `default` group), for pods labelled `mode=<pool>`.
    SecurityGroups,
    /// `shared` only: the nodes keep ENI slots for pools a trial applies later.
    SharedOnly,
}

/// A bed with two real nodes and a VM, the chart installed, and `pools`.
async fn real_bed(pools: Pools) -> Result<(Bed, eni_e2e::vpc::Instance), Failed> {
    let started = Instant::now();
    let bed = Bed::start_real(fast_cloud())
        .await
        .map_err(|e| e.to_string())?;
    let cp_secs = started.elapsed().as_secs_f64();
    let mut vm = None;
    with_bed(&bed, || async {
        for node in ["r1", "r2"] {
            bed.add_real_node(node, "m5.xlarge", &[("eni-pools", "all")])
                .await?;
        }
        let nodes_secs = started.elapsed().as_secs_f64();
        vm = Some(bed.add_host("vm", "t3.medium").await?);
        let sg = bed.vpc.group_id("default").await?;
        let pools = match pools {
            Pools::OnePerMode => vec![
                pool_for("shared", Mode::SharedIp).warm_ips(2),
                pool_for("exclusive", Mode::Exclusive).warm_enis(1),
                pool_for("trunk", Mode::Trunk)
                    .security_groups(&[sg.as_str()])
                    .warm_enis(1),
            ],
            Pools::SecurityGroups => {
                let mut pools = Vec::new();
                for (name, group) in [("web", "web"), ("db", "db"), ("plain", "default")] {
                    let id = bed.vpc.group_id(group).await?;
                    pools.push(
                        pool_for(name, Mode::Trunk)
                            .security_groups(&[id.as_str()])
                            .warm_enis(1),
                    );
                }
                pools
            }
            Pools::SharedOnly => vec![pool_for("shared", Mode::SharedIp).warm_ips(2)],
        };
        for pool in pools {
            bed.apply_yaml(&pool.yaml()).await?;
        }
        let install = bed.install_chart().await?;
        println!(
            "  bed up in {:.1}s: control plane + images {cp_secs:.1}s, 2 real nodes registered at {nodes_secs:.1}s, helm install until rolled out {:.1}s",
            started.elapsed().as_secs_f64(),
            install.as_secs_f64()
        );
        Ok(())
    })
    .await?;
    let vm = vm.ok_or("no VM")?;
    Ok((bed, vm))
}

/// Seconds from a pod's creation to its Ready condition (as kubelet reported it).
fn seconds_to_ready(pod: &Pod) -> Option<f64> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    Some((ready.as_millisecond() - created.as_millisecond()) as f64 / 1000.0)
}

/// Seconds from a pod's creation to its container running.
fn seconds_to_running(pod: &Pod) -> Option<f64> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let started = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .running
        .as_ref()?
        .started_at
        .as_ref()?
        .0;
    Some((started.as_millisecond() - created.as_millisecond()) as f64 / 1000.0)
}

/// A real pod that runs: address and the host-visible name of its network namespace.
struct Running {
    ip: Ipv4Addr,
    netns: String,
}

/// Pods in every mode on both nodes; kubelet's probes over the pod network keep them
/// Ready with no restart; VM -> pod and pod -> pod (across nodes and modes) ping and TCP
/// echo reach the containers' own servers.
async fn real_pods_in_every_mode() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let modes = ["shared", "exclusive", "trunk"];
        let mut names = Vec::new();
        for mode in modes {
            for node in ["r1", "r2"] {
                let name = format!("{mode}-{node}");
                bed.create_test_pod("default", &name, node, &[("mode", mode)])
                    .await?;
                names.push(name);
            }
        }
        let pods_api: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        for name in &names {
            let ip = bed
                .wait_ready("default", name, Duration::from_secs(120))
                .await?;
            let netns = bed.expose_pod_netns("default", name).await?;
            running.insert(name.clone(), Running { ip, netns });
        }
        let mut failures = Vec::new();
        // Start time per mode: creation -> container running, and -> Ready.
        let mut per_mode: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for name in &names {
            let pod = pods_api.get(name).await?;
            let mode = modes
                .iter()
                .find(|m| name.starts_with(*m))
                .copied()
                .unwrap_or("?");
            if let (Some(run), Some(ready)) = (seconds_to_running(&pod), seconds_to_ready(&pod)) {
                per_mode.entry(mode).or_default().push((run, ready));
            }
        }
        for (mode, times) in &per_mode {
            let n = times.len() as f64;
            let run = times.iter().map(|t| t.0).sum::<f64>() / n;
            let ready = times.iter().map(|t| t.1).sum::<f64>() / n;
            println!(
                "  pod start {mode}: created -> Running {run:.1}s, -> Ready {ready:.1}s (mean of {n})"
            );
        }
        let pns = bed.podnetworks().await?;
        for (name, p) in &running {
            let held = pns
                .iter()
                .any(|pn| pn.name_any() == *name && pn.spec.allocation.address == p.ip);
            check(
                &format!("{name} holds its PodNetwork's address {}", p.ip),
                held,
                &mut failures,
            );
        }
        for (name, p) in &running {
            check(
                &format!("ping VM -> {name} ({})", p.ip),
                probe::ping(&vm.netns, p.ip),
                &mut failures,
            );
            check(
                &format!("tcp echo VM -> {name}:{ECHO_PORT} (the container's nc)"),
                probe::tcp_echo(&vm.netns, SocketAddr::from((p.ip, ECHO_PORT))),
                &mut failures,
            );
        }
        let pairs = [
            ("shared-r1", "shared-r2"),
            ("exclusive-r1", "exclusive-r2"),
            ("trunk-r2", "trunk-r1"),
            ("shared-r2", "exclusive-r1"),
            ("exclusive-r2", "trunk-r1"),
            ("trunk-r1", "shared-r2"),
            ("shared-r1", "trunk-r1"),
        ];
        for (from, to) in pairs {
            let (a, b) = (&running[from], &running[to]);
            check(
                &format!("ping {from} -> {to} ({})", b.ip),
                probe::ping(&a.netns, b.ip),
                &mut failures,
            );
            check(
                &format!("tcp echo {from} -> {to}:{ECHO_PORT}"),
                probe::tcp_echo(&a.netns, SocketAddr::from((b.ip, ECHO_PORT))),
                &mut failures,
            );
        }
        // kubelet keeps probing: after a while every pod is still Ready, never restarted.
        tokio::time::sleep(Duration::from_secs(20)).await;
        for name in &names {
            let pod = pods_api.get(name).await?;
            let status = pod.status.clone().unwrap_or_default();
            let restarts: i32 = status
                .container_statuses
                .unwrap_or_default()
                .iter()
                .map(|c| c.restart_count)
                .sum();
            check(
                &format!("{name} still Ready after 20s of probes on port {HTTP_PORT} and {ECHO_PORT}, {restarts} restarts"),
                eni_e2e::bed::ready_ip(&pod).is_some() && restarts == 0,
                &mut failures,
            );
        }
        result(failures)
    })
    .await?;
    Ok(())
}

/// Restarting kubelet (on r1) and containerd (on r2) leaves running pods alone: same
/// sandbox process, still Ready, no container restart, same PodNetwork, still reachable;
/// and a pod created after the restarts gets its network through the restarted daemons.
async fn restarts_keep_pods() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let pods = [("shared-r1", "r1", "shared"), ("exclusive-r2", "r2", "exclusive"), ("trunk-r1", "r1", "trunk"), ("trunk-r2", "r2", "trunk")];
        for (name, node, mode) in pods {
            bed.create_test_pod("default", name, node, &[("mode", mode)]).await?;
        }
        let mut before = BTreeMap::new();
        for (name, node, _) in pods {
            let ip = bed.wait_ready("default", name, Duration::from_secs(120)).await?;
            let pid = bed
                .real_node(node)?
                .sandbox_pid("default", name)
                .map_err(|e| BedError::Other(e.to_string()))?;
            before.insert(name, (ip, pid));
        }
        let units = |pns: Vec<eni_crds::PodNetwork>| -> BTreeMap<String, String> {
            pns.into_iter()
                .map(|p| (p.name_any(), format!("{}/{}", p.spec.allocation.eni_id, p.spec.allocation.address)))
                .collect()
        };
        let units_before = units(bed.podnetworks().await?);
        bed.real_node("r1")?.restart_kubelet()?;
        bed.real_node("r2")?.restart_containerd().await?;
        // Long enough for the restarted kubelet to resync its pods and probe them again.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let pods_api: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        let mut failures = Vec::new();
        for (name, node, _) in pods {
            let (ip, pid) = before[name];
            let pod = pods_api.get(name).await?;
            let restarts: i32 = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or(-1);
            let pid_now = bed.real_node(node)?.sandbox_pid("default", name).ok();
            check(
                &format!("{name}: same sandbox process after the restarts ({pid} -> {pid_now:?}), Ready, {restarts} restarts"),
                pid_now == Some(pid) && eni_e2e::bed::ready_ip(&pod) == Some(ip) && restarts == 0,
                &mut failures,
            );
            check(
                &format!("ping VM -> {name} ({ip}) after the restarts"),
                probe::ping(&vm.netns, ip),
                &mut failures,
            );
            check(
                &format!("tcp echo VM -> {name}:{ECHO_PORT} after the restarts"),
                probe::tcp_echo(&vm.netns, SocketAddr::from((ip, ECHO_PORT))),
                &mut failures,
            );
        }
        let units_after = units(bed.podnetworks().await?);
        check(
            &format!("PodNetworks unchanged by the restarts ({} units)", units_before.len()),
            units_before == units_after,
            &mut failures,
        );
        for (name, node, mode) in [("shared-late", "r1", "shared"), ("trunk-late", "r2", "trunk")] {
            bed.create_test_pod("default", name, node, &[("mode", mode)]).await?;
            let ip = bed.wait_ready("default", name, Duration::from_secs(60)).await?;
            check(
                &format!("{name} created after the restarts is Ready and answers the VM ({ip})"),
                probe::tcp_echo(&vm.netns, SocketAddr::from((ip, ECHO_PORT))),
                &mut failures,
            );
        }
        result(failures)
    })
    .await
}

async fn host_port_exclusive_and_trunk() -> Result<(), Failed> {
    host_port(&[
        ("exclusive-hp", "exclusive", 17002),
        ("trunk-hp", "trunk", 17003),
    ])
    .await
}

async fn host_port_shared_ip() -> Result<(), Failed> {
    host_port(&[("shared-hp", "shared", 17001)]).await
}

/// A VPC host reaches each pod by the node's address and the pod's hostPort (the chained
/// portmap plugin), and by the pod's own address.
async fn host_port(pods: &[(&str, &str, u16)]) -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let r1 = bed.node("r1")?.instance.primary_ip;
        for &(name, mode, host_port) in pods {
            let mut pod = test_pod("default", name, "r1", &[("mode", mode)]);
            pod["spec"]["containers"][0]["ports"][1]["hostPort"] = serde_json::json!(host_port);
            bed.create_pod_from(pod).await?;
        }
        let mut failures = Vec::new();
        for &(name, _, host_port) in pods {
            let ip = bed
                .wait_ready("default", name, Duration::from_secs(120))
                .await?;
            check(
                &format!("tcp echo VM -> {name} by its pod address {ip}:{ECHO_PORT}"),
                probe::tcp_echo(&vm.netns, SocketAddr::from((ip, ECHO_PORT))),
                &mut failures,
            );
            check(
                &format!("tcp echo VM -> {name} by hostPort {r1}:{host_port}"),
                probe::tcp_echo(&vm.netns, SocketAddr::from((r1, host_port))),
                &mut failures,
            );
        }
        result(failures)
    })
    .await
}

/// vpc-sim's security groups on real Trunk pods (the rules of end_to_end.rs's trial):
/// `web` admits TCP 80 and ICMP from the VPC, `db` admits TCP 5432 from `web` members
/// only, `plain` has the permissive `default` group. The containers serve both ports.
async fn security_groups() -> Result<(), Failed> {
    let (bed, _vm) = real_bed(Pools::SecurityGroups).await?;
    with_bed(&bed, || async {
        let pods = [
            ("web-0", "r1", "web"),
            ("plain-0", "r1", "plain"),
            ("db-0", "r2", "db"),
        ];
        for (name, node, pool) in pods {
            let mut pod = test_pod("default", name, node, &[("mode", pool)]);
            pod["spec"]["containers"][0]["command"] = serde_json::json!([
                "sh",
                "-c",
                format!(
                    "echo {name} > /www/index.html && httpd -p {HTTP_PORT} -h /www && \
                     (nc -ll -p 80 -e cat &) && (nc -ll -p 5432 -e cat &) && \
                     exec nc -ll -p {ECHO_PORT} -e cat"
                ),
            ]);
            bed.create_pod_from(pod).await?;
        }
        let mut running = BTreeMap::new();
        for (name, _, _) in pods {
            let ip = bed
                .wait_ready("default", name, Duration::from_secs(120))
                .await?;
            let netns = bed.expose_pod_netns("default", name).await?;
            running.insert(name, Running { ip, netns });
        }
        let tcp = |from: &str, to: &str, port: u16| {
            probe::tcp_echo(
                &running[from].netns,
                SocketAddr::from((running[to].ip, port)),
            )
        };
        let ping = |from: &str, to: &str| probe::ping(&running[from].netns, running[to].ip);
        let mut failures = Vec::new();
        check(
            "web-0 -> db-0 tcp/5432 passes (db admits web members)",
            tcp("web-0", "db-0", 5432),
            &mut failures,
        );
        check(
            "plain-0 -> db-0 tcp/5432 dropped (not a web member)",
            !tcp("plain-0", "db-0", 5432),
            &mut failures,
        );
        check(
            "web-0 -> db-0 tcp/80 dropped (db admits 5432 only)",
            !tcp("web-0", "db-0", 80),
            &mut failures,
        );
        check(
            "ping web-0 -> db-0 dropped (db admits no ICMP)",
            !ping("web-0", "db-0"),
            &mut failures,
        );
        check(
            "plain-0 -> web-0 tcp/80 passes",
            tcp("plain-0", "web-0", 80),
            &mut failures,
        );
        check(
            "ping plain-0 -> web-0 passes",
            ping("plain-0", "web-0"),
            &mut failures,
        );
        check(
            "plain-0 -> web-0 tcp/5432 dropped",
            !tcp("plain-0", "web-0", 5432),
            &mut failures,
        );
        result(failures)
    })
    .await
}

/// Node `name`'s Ready condition: (status, message).
async fn node_ready(bed: &Bed, name: &str) -> Result<(String, String), kube::Error> {
    let node = Api::<Node>::all(bed.client.clone()).get(name).await?;
    Ok(node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status, c.message.unwrap_or_default()))
        .unwrap_or_default())
}

/// CNI STATUS as the runtime calls it: while r2's agent is away (the DaemonSet no
/// longer selects r2), eni-cni's STATUS fails, containerd reports NetworkReady=false and
/// kubelet marks the node NotReady with that reason; once the agent is back, Ready.
/// Then `helm uninstall` leaves none of the chart's RBAC, admission policy, workloads,
/// service accounts or services behind, and the CRDs stay.
async fn status_then_uninstall() -> Result<(), Failed> {
    let (bed, _vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let mut failures = Vec::new();
        let (status, _) = node_ready(&bed, "r2").await?;
        check("r2 Ready with its agent", status == "True", &mut failures);
        let nodes: Api<Node> = Api::all(bed.client.clone());
        let on = json!({"metadata": {"labels": {"eni-test/agent": "on"}}});
        nodes
            .patch("r1", &PatchParams::default(), &Patch::Merge(&on))
            .await?;
        let daemonsets: Api<DaemonSet> = Api::namespaced(bed.client.clone(), "eni-system");
        let ds = daemonsets
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
            .await?
            .items
            .into_iter()
            .next()
            .ok_or_else(|| BedError::Other("no agent DaemonSet".into()))?
            .name_any();
        let select =
            json!({"spec": {"template": {"spec": {"nodeSelector": {"eni-test/agent": "on"}}}}});
        daemonsets
            .patch(&ds, &PatchParams::default(), &Patch::Merge(&select))
            .await?;
        let away = wait_for(
            "r2 NotReady for its network",
            Duration::from_secs(120),
            || async {
                let (status, message) = node_ready(&bed, "r2").await?;
                Ok(
                    (status == "False" && message.contains("NetworkReady=false"))
                        .then_some(message),
                )
            },
        )
        .await?;
        println!("  r2 without its agent: Ready=False: {away}");
        check(
            "kubelet reports the plugin's STATUS error",
            away.contains("eni-agent") || away.contains("eni-cni") || away.contains("agent"),
            &mut failures,
        );
        nodes
            .patch("r2", &PatchParams::default(), &Patch::Merge(&on))
            .await?;
        let back = wait_for(
            "r2 Ready again with its agent",
            Duration::from_secs(120),
            || async {
                let (status, _) = node_ready(&bed, "r2").await?;
                Ok((status == "True").then_some(()))
            },
        )
        .await;
        check(
            &format!("r2 Ready again once its agent is back ({back:?})"),
            back.is_ok(),
            &mut failures,
        );

        let out = bed
            .helm(&["uninstall", RELEASE, "--namespace", "eni-system", "--wait"])
            .await?;
        println!("  {}", out.trim());
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
        let client = bed.client.clone();
        let left = wait_for(
            "the release's objects gone",
            Duration::from_secs(90),
            || {
                let (client, lp) = (client.clone(), lp.clone());
                async move {
                    let mut left = Vec::new();
                    macro_rules! gone {
                        ($kind:ty, $api:expr) => {
                            let api: Api<$kind> = $api;
                            for o in api.list(&lp).await?.items {
                                left.push(format!("{} {}", stringify!($kind), o.name_any()));
                            }
                        };
                    }
                    gone!(ClusterRole, Api::all(client.clone()));
                    gone!(ClusterRoleBinding, Api::all(client.clone()));
                    gone!(ValidatingAdmissionPolicy, Api::all(client.clone()));
                    gone!(ValidatingAdmissionPolicyBinding, Api::all(client.clone()));
                    gone!(Role, Api::namespaced(client.clone(), "eni-system"));
                    gone!(RoleBinding, Api::namespaced(client.clone(), "eni-system"));
                    gone!(DaemonSet, Api::namespaced(client.clone(), "eni-system"));
                    gone!(Deployment, Api::namespaced(client.clone(), "eni-system"));
                    gone!(
                        ServiceAccount,
                        Api::namespaced(client.clone(), "eni-system")
                    );
                    gone!(Service, Api::namespaced(client.clone(), "eni-system"));
                    gone!(Pod, Api::namespaced(client.clone(), "eni-system"));
                    Ok(left.is_empty().then_some(left))
                }
            },
        )
        .await;
        check(
            &format!("helm uninstall leaves none of the chart's objects ({left:?})"),
            left.is_ok(),
            &mut failures,
        );
        let crds: Api<CustomResourceDefinition> = Api::all(bed.client.clone());
        let ours = crds
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|c| c.name_any().ends_with(".eni-operator.io"))
            .count();
        check(
            &format!("the CRDs stay ({ours} of 3)"),
            ours == 3,
            &mut failures,
        );
        result(failures)
    })
    .await
}

/// Polls the synchronous `check` (ctr, ip) until it gives a value.
async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, BedError>,
) -> Result<T, BedError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(BedError::Other(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The first 12 characters of a container ID, as runtimes print them.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Messages of the events of reason `reason` about pod `default/<pod>`, oldest first,
/// with their first time (ms since the epoch).
async fn pod_events(bed: &Bed, pod: &str, reason: &str) -> Result<Vec<(i64, String)>, BedError> {
    let events: Api<Event> = Api::namespaced(bed.client.clone(), "default");
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod},reason={reason}"));
    let mut out: Vec<(i64, String)> = events
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|e| {
            let first = e
                .first_timestamp
                .map(|t| t.0.as_millisecond())
                .or(e.event_time.map(|t| t.0.as_millisecond()))
                .unwrap_or_default();
            (first, e.message.unwrap_or_default())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// kubelet's FailedCreatePodSandBox events of pod `default/<pod>`: (first time, the
/// sandbox ID containerd's error names, the message), oldest first.
async fn failed_sandboxes(bed: &Bed, pod: &str) -> Result<Vec<(i64, String, String)>, BedError> {
    Ok(pod_events(bed, pod, "FailedCreatePodSandBox")
        .await?
        .into_iter()
        .map(|(first, message)| {
            // containerd: `failed to setup network for sandbox "<id>": ...`
            let id = message
                .split("sandbox \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned();
            (first, id, message)
        })
        .collect())
}

/// The agent's state records on `node`, in the agent's own format.
fn agent_records(bed: &Bed, node: &str) -> Result<Vec<Record>, BedError> {
    let state_dir = bed.node(node)?.state_dir;
    bed.real_node(node)?
        .agent_records(&state_dir)?
        .into_iter()
        .map(|v| {
            serde_json::from_value(v).map_err(|e| BedError::Other(format!("agent record: {e}")))
        })
        .collect()
}

fn node_net(bed: &Bed, node: &str) -> Result<NodeNet, BedError> {
    NodeNet::read(&bed.real_node(node)?.config().netns).map_err(|e| BedError::Other(e.to_string()))
}

/// IDs of the ENIs in vpc-sim that hold `ip` (primary, secondary or in a prefix).
async fn holders_of(bed: &Bed, ip: Ipv4Addr) -> Result<Vec<String>, BedError> {
    let state = bed.vpc.state().await?;
    let enis: Vec<&serde_json::Value> = match &state["state"]["enis"] {
        serde_json::Value::Object(m) => m.values().collect(),
        serde_json::Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    };
    let text = ip.to_string();
    Ok(enis
        .into_iter()
        .filter(|e| {
            let strings = |key: &str| -> Vec<String> {
                e[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            e["primary_ip"].as_str() == Some(text.as_str())
                || strings("secondary_ips").contains(&text)
                || strings("prefixes").iter().any(|p| in_prefix(ip, p))
        })
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect())
}

/// Whether `ip` is in `prefix` (`a.b.c.d/len`).
fn in_prefix(ip: Ipv4Addr, prefix: &str) -> bool {
    let Some((net, len)) = prefix.split_once('/') else {
        return false;
    };
    match (net.parse::<Ipv4Addr>(), len.parse::<u32>()) {
        (Ok(net), Ok(len)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        _ => false,
    }
}

/// A pod's first CNI ADDs fail for a reason its user then fixes: its labels select no
/// ENIPool yet, so the operator allocates nothing and the agent's ADD gives up. kubelet
/// reports eni-cni's error in FailedCreatePodSandBox events and containerd removes each
/// failed sandbox; once the pool is applied a new sandbox (a new container ID) brings the
/// pod to Ready, reachable from the VM. Nothing of the failed sandboxes is left in
/// containerd, in the agent's state dir or among the node's links and routes; the
/// PodNetwork names the final sandbox, and vpc-sim holds the address on one ENI.
async fn sandbox_recreated_after_a_failed_add() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::SharedOnly).await?;
    with_bed(&bed, || async {
        let (name, node) = ("late-0", "r1");
        let real = bed.real_node(node)?;
        let mut failures = Vec::new();
        bed.create_test_pod("default", name, node, &[("mode", "late")])
            .await?;
        let created = Instant::now();
        // Every sandbox containerd makes for the pod, seen while its ADD runs.
        let mut tried: BTreeSet<String> = BTreeSet::new();
        let (first_ms, first_id, first_message) = loop {
            tried.extend(real.pod_sandbox_ids("default", name)?);
            if let Some(first) = failed_sandboxes(&bed, name).await?.into_iter().next() {
                break first;
            }
            if created.elapsed() > Duration::from_secs(90) {
                return Err(BedError::Other(format!(
                    "no FailedCreatePodSandBox event for {name} within 90s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        println!(
            "  first sandbox {} failed, reported {:.1}s after the pod was created: {first_message}",
            short(&first_id),
            created.elapsed().as_secs_f64()
        );
        check(
            "kubelet's event carries eni-cni's error: the pod has no address allocated yet",
            first_message.contains("eni-cni")
                && first_message.contains(&format!("no PodNetwork for pod default/{name}"))
                && first_message.contains("has not allocated its address yet"),
            &mut failures,
        );
        let no_pool = pod_events(&bed, name, "NoENIPool").await?;
        check(
            &format!("the operator's NoENIPool event on the pod says why ({:?})", no_pool.first().map(|e| &e.1)),
            no_pool.iter().any(|(_, m)| m.contains("no ENIPool selects this pod")),
            &mut failures,
        );
        check(
            &format!("containerd held the failed sandbox {} while its ADD ran", short(&first_id)),
            tried.contains(&first_id),
            &mut failures,
        );
        let removed = poll("the failed sandbox removed by containerd", Duration::from_secs(30), || {
            Ok((!real.knows_sandbox(&first_id)?).then_some(()))
        })
        .await;
        check(
            &format!("containerd removed the failed sandbox ({removed:?})"),
            removed.is_ok(),
            &mut failures,
        );

        // The fix: the pool the pod's labels ask for.
        bed.apply_yaml(&pool_for("late", Mode::SharedIp).warm_ips(1).yaml())
            .await?;
        let applied = Instant::now();
        let pods_api: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        let ip = loop {
            tried.extend(real.pod_sandbox_ids("default", name)?);
            if let Some(ip) = pods_api.get_opt(name).await?.as_ref().and_then(eni_e2e::bed::ready_ip) {
                break ip;
            }
            if applied.elapsed() > Duration::from_secs(180) {
                return Err(BedError::Other(format!(
                    "{name} not Ready within 180s of its pool"
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let ready_after_pool = applied.elapsed().as_secs_f64();
        let failed: BTreeSet<String> = failed_sandboxes(&bed, name)
            .await?
            .into_iter()
            .map(|(_, id, _)| id)
            .collect();
        let current = real.pod_sandbox_ids("default", name)?;
        let [final_id] = current.as_slice() else {
            return Err(BedError::Other(format!(
                "{name} has sandboxes {current:?} in containerd, not one"
            )));
        };
        tried.insert(final_id.clone());
        let pod = pods_api.get(name).await?;
        let created_ms = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or_default();
        let ready_s = seconds_to_ready(&pod).unwrap_or(f64::NAN);
        println!(
            "  {} sandboxes tried ({} failed: {:?}), final {}; created -> first failure {:.1}s, -> Ready {ready_s:.1}s; first failure -> Ready {:.1}s; pool applied -> Ready {ready_after_pool:.1}s",
            tried.len(),
            failed.len(),
            failed.iter().map(|id| short(id)).collect::<Vec<_>>(),
            short(final_id),
            (first_ms - created_ms) as f64 / 1000.0,
            ready_s - (first_ms - created_ms) as f64 / 1000.0,
        );
        check(
            "the final sandbox is a new one (its container ID is not a failed one's)",
            !failed.contains(final_id),
            &mut failures,
        );
        let others: BTreeSet<String> = tried.iter().filter(|id| *id != final_id).cloned().collect();
        check(
            &format!("every other sandbox containerd made for the pod failed its ADD and was reported ({} of {})", failed.len(), others.len()),
            others == failed && !failed.is_empty(),
            &mut failures,
        );
        for id in &failed {
            check(
                &format!("failed sandbox {} no longer exists in containerd", short(id)),
                !real.knows_sandbox(id)?,
                &mut failures,
            );
        }
        let records = agent_records(&bed, node)?;
        let of_pod: Vec<&str> = records
            .iter()
            .filter(|r| r.pod.namespace == "default" && r.pod.name == name)
            .map(|r| r.request.container_id.as_str())
            .collect();
        check(
            &format!("the agent's state dir holds one record for the pod, the final sandbox's ({} records)", of_pod.len()),
            of_pod == [final_id.as_str()],
            &mut failures,
        );
        check(
            "no agent record names a failed sandbox",
            !records.iter().any(|r| failed.contains(&r.request.container_id)),
            &mut failures,
        );
        let net = node_net(&bed, node)?;
        let stale: Vec<String> = failed
            .iter()
            .flat_map(|id| net.links_of(id))
            .map(|l| l.name.clone())
            .collect();
        check(
            &format!("no link on {node} names a failed sandbox ({stale:?})"),
            stale.is_empty(),
            &mut failures,
        );
        let links = net.links_of(final_id);
        let link = links.first().map(|l| l.name.clone()).unwrap_or_default();
        check(
            &format!("one host link for the final sandbox ({link})"),
            links.len() == 1,
            &mut failures,
        );
        let text = ip.to_string();
        let routes: Vec<&String> = net
            .routes
            .iter()
            .filter(|r| r.split_whitespace().next() == Some(text.as_str()))
            .collect();
        check(
            &format!("the node routes {ip} once, to the final sandbox's link ({routes:?})"),
            routes.len() == 1 && routes[0].contains(&format!("dev {link} ")),
            &mut failures,
        );
        let pns: Vec<eni_crds::PodNetwork> = bed
            .podnetworks()
            .await?
            .into_iter()
            .filter(|p| p.name_any() == name)
            .collect();
        let status = pns.first().and_then(|p| p.status.clone()).unwrap_or_default();
        check(
            &format!(
                "one PodNetwork, Ready for the final sandbox with the pod's address ({:?} {:?})",
                status.phase,
                status.container_id.as_deref().map(short)
            ),
            pns.len() == 1
                && pns[0].spec.allocation.address == ip
                && status.phase == Some(eni_crds::PodNetworkPhase::Ready)
                && status.container_id.as_deref() == Some(final_id.as_str()),
            &mut failures,
        );
        check(
            &format!("ping VM -> {name} ({ip})"),
            probe::ping(&vm.netns, ip),
            &mut failures,
        );
        check(
            &format!("tcp echo VM -> {name}:{ECHO_PORT}"),
            probe::tcp_echo(&vm.netns, SocketAddr::from((ip, ECHO_PORT))),
            &mut failures,
        );
        let holders = holders_of(&bed, ip).await?;
        check(
            &format!("vpc-sim holds {ip} on one ENI ({holders:?})"),
            holders.len() == 1,
            &mut failures,
        );
        let violations = bed.vpc.violations().await?;
        check(
            &format!("vpc-sim finds no invariant violation ({violations:?})"),
            violations.is_empty(),
            &mut failures,
        );
        result(failures)
    })
    .await
}

/// A running pod's CNI attachment as containerd made it.
struct Attached {
    node: &'static str,
    ip: Ipv4Addr,
    /// Exclusive or Trunk: the pod's interface is its ENI, not a veth.
    passthrough: bool,
    /// The sandbox's container ID (CNI_CONTAINERID).
    sandbox: String,
    /// The sandbox's network namespace as the node sees it (CNI_NETNS).
    netns: String,
    /// The same namespace bound on the host, for `ip -n`.
    host_netns: String,
}

/// Waits until pod `default/<name>` on `node` is Ready and returns its attachment.
async fn attached(
    bed: &Bed,
    name: &str,
    node: &'static str,
    mode: &str,
) -> Result<Attached, BedError> {
    let ip = bed
        .wait_ready("default", name, Duration::from_secs(120))
        .await?;
    let real = bed.real_node(node)?;
    let ids = real.pod_sandbox_ids("default", name)?;
    let [sandbox] = ids.as_slice() else {
        return Err(BedError::Other(format!(
            "{name} has sandboxes {ids:?}, not one"
        )));
    };
    Ok(Attached {
        node,
        ip,
        passthrough: mode != "shared",
        sandbox: sandbox.clone(),
        netns: real.sandbox_netns(sandbox)?,
        host_netns: bed.expose_pod_netns("default", name).await?,
    })
}

/// Whether a CHECK through the chart's chain (eni-cni, portmap, bandwidth) passed, or,
/// for an Exclusive or Trunk pod, failed only in bandwidth, the last plugin (libcni
/// runs the chain in order and stops at the first failure, so eni-cni and portmap
/// passed). bandwidth's CHECK (v1.10) requires the pod's interface to be a veth whose
/// peer is a host interface of the result, even for a pod with no bandwidth limit; a
/// passthrough pod's interface is its ENI. That gap is the ignored trial
/// `cni_check_of_passthrough_pods`.
fn chain_check_passed(a: &Attached, out: &Result<String, String>) -> bool {
    match out {
        Ok(_) => true,
        Err(m) => a.passthrough && m.contains("veth peer") && !m.contains("wired"),
    }
}

/// CNI CHECK of `a` as libcni runs it with containerd's cached ADD: `Err(message)` when
/// it fails.
fn libcni_check(bed: &Bed, a: &Attached) -> Result<Result<String, String>, BedError> {
    Ok(bed.real_node(a.node)?.libcni(&[
        "check",
        "--container-id",
        &a.sandbox,
        "--netns",
        &a.netns,
    ])?)
}

/// `ip` argument lists from words.
fn ip_args(words: &str) -> Vec<String> {
    words.split_whitespace().map(str::to_owned).collect()
}

/// Runs `ip` with each argument list; each must succeed.
fn ip_all(commands: &[Vec<String>]) -> Result<(), BedError> {
    for args in commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        eni_e2e::netns::ip(&args)?;
    }
    Ok(())
}

/// One way a stray admin or another tool breaks a pod's wiring, what CHECK must then
/// name, and how the admin puts it back.
struct Breakage {
    pod: &'static str,
    what: String,
    breaks: Vec<Vec<String>>,
    expect: String,
    restores: Vec<Vec<String>>,
    /// The VM no longer reaches the pod meanwhile (checked when true).
    cuts_the_vm_off: bool,
}

/// The ways the trial breaks the pods on r1, read from their current wiring.
fn breakages(bed: &Bed, live: &BTreeMap<&str, Attached>) -> Result<Vec<Breakage>, BedError> {
    let node = bed.real_node("r1")?.config().netns.clone();
    let net = node_net(bed, "r1")?;
    let shared = &live["shared-r1"];
    let (pod, ip) = (&shared.host_netns, shared.ip);
    let table = net
        .rules
        .iter()
        .find(|r| r.contains(&format!("from {ip} ")))
        .and_then(|r| r.split(" lookup ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .ok_or_else(|| BedError::Other(format!("no `from {ip}` rule on r1")))?
        .to_owned();
    let mut out = vec![
        Breakage {
            pod: "shared-r1",
            what: "the pod's default route deleted inside its namespace".into(),
            breaks: vec![ip_args(&format!("-n {pod} route del default"))],
            expect: "pod: route missing: 0.0.0.0/0 via 169.254.1.1 dev eth0 onlink table 254"
                .into(),
            restores: vec![ip_args(&format!(
                "-n {pod} route add default via 169.254.1.1 dev eth0 onlink"
            ))],
            cuts_the_vm_off: true,
        },
        Breakage {
            pod: "shared-r1",
            what: format!("the node's `from {ip} lookup {table}` rule deleted"),
            breaks: vec![ip_args(&format!(
                "-n {node} rule del from {ip} priority 2048"
            ))],
            expect: format!("host: rule missing: 2048: from {ip} lookup {table}"),
            restores: vec![ip_args(&format!(
                "-n {node} rule add from {ip} lookup {table} priority 2048 protocol 225"
            ))],
            cuts_the_vm_off: false,
        },
    ];
    let exclusive = &live["exclusive-r1"];
    let pod = &exclusive.host_netns;
    let addr = eni_e2e::netns::ip(&["-n", pod, "-4", "-o", "addr", "show", "dev", "eth0"])?;
    let cidr = addr
        .split(" inet ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .ok_or_else(|| BedError::Other(format!("no address on eth0 of exclusive-r1: {addr}")))?
        .to_owned();
    // Deleting the address takes the routes with it: put back all the pod had.
    let mut restores = vec![ip_args(&format!("-n {pod} addr add {cidr} dev eth0"))];
    for route in eni_e2e::netns::ip(&["-n", pod, "-4", "route", "show", "table", "main"])?.lines() {
        let mut args = ip_args(&format!("-n {pod} route replace"));
        args.extend(
            route
                .split_whitespace()
                .filter(|w| *w != "linkdown")
                .map(str::to_owned),
        );
        restores.push(args);
    }
    out.push(Breakage {
        pod: "exclusive-r1",
        what: format!("the pod's address {cidr} deleted inside its namespace"),
        breaks: vec![ip_args(&format!("-n {pod} addr del {cidr} dev eth0"))],
        expect: format!("pod: address {cidr} missing on eth0"),
        restores,
        cuts_the_vm_off: true,
    });
    let trunk = &live["trunk-r1"];
    let link = net
        .links_of(&trunk.sandbox)
        .first()
        .map(|l| l.name.clone())
        .ok_or_else(|| BedError::Other("no host link of trunk-r1".into()))?;
    let ip = trunk.ip;
    out.push(Breakage {
        pod: "trunk-r1",
        what: format!("the node's route to the pod ({ip}/32 dev {link}) deleted"),
        breaks: vec![ip_args(&format!("-n {node} route del {ip}/32 dev {link}"))],
        expect: format!("host: route missing: {ip}/32 dev {link} table 254"),
        restores: vec![ip_args(&format!(
            "-n {node} route add {ip}/32 dev {link} protocol 225"
        ))],
        cuts_the_vm_off: false,
    });
    Ok(out)
}

/// CNI CHECK and GC as libcni (containerd's CNI library) calls them, with the node's
/// conflist, containerd's cached ADD results and containerd's list of sandboxes
/// (`eni-libcni` inside the node). CHECK passes for pods in every mode; after a stray
/// `ip` command breaks a pod's wiring (pod route, node rule, pod address, node route)
/// CHECK fails naming what is missing, keeps failing (the agent does not rewire on its
/// own), and passes once the admin restores it. GC with containerd's full list releases
/// nothing. Two sandboxes removed behind containerd's back (no CNI DEL) leave stale
/// attachments: GC with a list that still names them keeps them; GC with containerd's
/// list releases both (the SharedIP one through libcni's DEL from its cache, the Trunk
/// one, whose cache entry is gone too, through eni-cni's own GC), state, links, routes
/// and rules, and the Trunk member ENI goes back to the node, while every valid pod
/// still passes CHECK and answers the VM.
async fn cni_check_and_gc_through_libcni() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let pods: [(&str, &'static str, &str); 7] = [
            ("shared-r1", "r1", "shared"),
            ("exclusive-r1", "r1", "exclusive"),
            ("trunk-r1", "r1", "trunk"),
            ("shared-r2", "r2", "shared"),
            ("exclusive-r2", "r2", "exclusive"),
            ("stale-shared", "r2", "shared"),
            ("stale-trunk", "r2", "trunk"),
        ];
        for (name, node, mode) in pods {
            bed.create_test_pod("default", name, node, &[("mode", mode)])
                .await?;
        }
        let mut live: BTreeMap<&str, Attached> = BTreeMap::new();
        for (name, node, mode) in pods {
            live.insert(name, attached(&bed, name, node, mode).await?);
        }
        let mut failures = Vec::new();

        // CHECK of every pod as containerd wired it.
        for (name, a) in &live {
            let out = libcni_check(&bed, a)?;
            check(
                &format!("CHECK {name} ({}) passes: {out:?}", short(&a.sandbox)),
                chain_check_passed(a, &out),
                &mut failures,
            );
        }
        for b in breakages(&bed, &live)? {
            let a = &live[b.pod];
            ip_all(&b.breaks)?;
            let broken = libcni_check(&bed, a)?;
            println!("  CHECK {} with {}: {broken:?}", b.pod, b.what);
            check(
                &format!("CHECK {} fails naming it: `{}`", b.pod, b.expect),
                matches!(&broken, Err(m) if m.contains(&b.expect)),
                &mut failures,
            );
            if b.cuts_the_vm_off {
                check(
                    &format!("the VM no longer reaches {} meanwhile", b.pod),
                    !probe::ping(&vm.netns, a.ip),
                    &mut failures,
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            check(
                "still failing 2 s later: the agent does not rewire on its own",
                matches!(libcni_check(&bed, a)?, Err(m) if m.contains(&b.expect)),
                &mut failures,
            );
            ip_all(&b.restores)?;
            let fixed = libcni_check(&bed, a)?;
            check(
                &format!("CHECK {} passes once restored: {fixed:?}", b.pod),
                chain_check_passed(a, &fixed),
                &mut failures,
            );
        }

        // GC on r2.
        let r2 = bed.real_node("r2")?;
        let gc = |valid: &[String]| -> Result<Result<String, String>, BedError> {
            let mut args = vec!["gc"];
            for id in valid {
                args.extend(["--valid", id.as_str()]);
            }
            Ok(r2.libcni(&args)?)
        };
        let cached = || -> Result<BTreeSet<String>, BedError> {
            let out = r2.libcni(&["cached"])?.map_err(BedError::Other)?;
            serde_json::from_str(&out)
                .map_err(|e| BedError::Other(format!("eni-libcni cached: {e}: {out}")))
        };
        let record_ids = || -> Result<BTreeSet<String>, BedError> {
            Ok(agent_records(&bed, "r2")?
                .into_iter()
                .map(|r| r.request.container_id)
                .collect())
        };
        let on_r2: Vec<&Attached> = live.values().filter(|a| a.node == "r2").collect();
        let before = record_ids()?;
        let out = gc(&r2.sandbox_ids()?)?;
        check(
            &format!("GC with containerd's full list succeeds: {out:?}"),
            out.is_ok(),
            &mut failures,
        );
        let net = node_net(&bed, "r2")?;
        check(
            &format!(
                "... and releases nothing: {} agent records, a host link for each of the {} pods",
                before.len(),
                on_r2.len()
            ),
            record_ids()? == before
                && on_r2
                    .iter()
                    .all(|a| before.contains(&a.sandbox) && !net.links_of(&a.sandbox).is_empty()),
            &mut failures,
        );

        // Stale attachments for real: kubelet stopped (it would have containerd stop the
        // sandboxes, which calls DEL), the pods force-deleted from the API, their
        // sandboxes removed behind CRI's back and containerd restarted to forget them.
        let stale_names = ["stale-shared", "stale-trunk"];
        let records = agent_records(&bed, "r2")?;
        let stale: Vec<Record> = stale_names
            .iter()
            .filter_map(|name| {
                records
                    .iter()
                    .find(|r| r.request.container_id == live[name].sandbox)
                    .cloned()
            })
            .collect();
        check(
            "the agent holds a record for each pod about to go stale",
            stale.len() == stale_names.len(),
            &mut failures,
        );
        r2.stop_kubelet();
        let pods_api: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        for name in stale_names {
            pods_api
                .delete(name, &DeleteParams::default().grace_period(0))
                .await?;
        }
        let removed: BTreeSet<String> = r2
            .remove_pods_behind_runtime("default", &stale_names)
            .await?
            .into_iter()
            .collect();
        r2.start_kubelet()?;
        let stale_ids: BTreeSet<String> = stale_names
            .iter()
            .map(|n| live[n].sandbox.clone())
            .collect();
        check(
            "both stale sandboxes removed from containerd behind its back",
            removed == stale_ids,
            &mut failures,
        );
        // The runtime lost stale-trunk's cached result as well: only eni-cni's own GC,
        // which judges by the agent's records, can find that one.
        let trunk_id = live["stale-trunk"].sandbox.clone();
        let shared_id = live["stale-shared"].sandbox.clone();
        r2.sh(&format!("rm -f /var/lib/cni/results/*-{trunk_id}-eth0"))?;
        let in_cache = cached()?;
        check(
            "libcni's cache still has stale-shared's ADD result, not stale-trunk's",
            in_cache.contains(&shared_id) && !in_cache.contains(&trunk_id),
            &mut failures,
        );
        let valid = r2.sandbox_ids()?;
        check(
            &format!(
                "containerd's list ({} sandboxes) lacks the stale ones and has every live pod",
                valid.len()
            ),
            !valid.iter().any(|id| stale_ids.contains(id))
                && on_r2
                    .iter()
                    .filter(|a| !stale_ids.contains(&a.sandbox))
                    .all(|a| valid.contains(&a.sandbox)),
            &mut failures,
        );
        check(
            "the agent still holds the stale attachments (no DEL reached it)",
            stale_ids.is_subset(&record_ids()?),
            &mut failures,
        );
        let mut listed = valid.clone();
        listed.extend(stale_ids.iter().cloned());
        let out = gc(&listed)?;
        check(
            &format!("GC with a list that still names them succeeds and keeps them: {out:?}"),
            out.is_ok() && stale_ids.is_subset(&record_ids()?) && cached()?.contains(&shared_id),
            &mut failures,
        );
        let started = Instant::now();
        let out = gc(&valid)?;
        println!(
            "  GC with containerd's list: {out:?} in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        check(
            "GC with containerd's list succeeds",
            out.is_ok(),
            &mut failures,
        );
        let after = record_ids()?;
        let expected: BTreeSet<String> = before.difference(&stale_ids).cloned().collect();
        check(
            &format!(
                "the agent's records are the live pods' only ({} left)",
                after.len()
            ),
            after == expected,
            &mut failures,
        );
        let net = node_net(&bed, "r2")?;
        for record in &stale {
            let id = &record.request.container_id;
            let address = record.request.allocation.address;
            let links: Vec<String> = net.links_of(id).iter().map(|l| l.name.clone()).collect();
            check(
                &format!(
                    "no link of stale {} left on r2 ({links:?})",
                    record.pod.name
                ),
                links.is_empty(),
                &mut failures,
            );
            let naming = net.naming(address);
            check(
                &format!("no route, rule or proxy entry for {address} left on r2 ({naming:?})"),
                naming.is_empty(),
                &mut failures,
            );
        }
        if let Some(trunk) = stale.iter().find(|r| r.request.container_id == trunk_id) {
            let mac = trunk.request.allocation.eni_mac.to_string();
            let link = net.link_with_mac(&mac);
            check(
                &format!(
                    "stale-trunk's member ENI {mac} is back in r2's namespace, unmarked ({:?})",
                    link.map(|l| &l.name)
                ),
                link.is_some_and(|l| l.alias.is_empty()),
                &mut failures,
            );
        }
        check(
            "libcni's cache no longer holds stale-shared (its DEL ran)",
            !cached()?.contains(&shared_id),
            &mut failures,
        );
        let logs = r2.container_logs(100_000);
        let gc_lines = |id: &str| {
            logs.lines()
                .filter(|l| l.contains("GC: removing stale wiring") && l.contains(id))
                .count()
        };
        check(
            "the agent's GC released stale-trunk (its log says so), libcni's DEL stale-shared",
            gc_lines(&trunk_id) > 0 && gc_lines(&shared_id) == 0,
            &mut failures,
        );

        // Every valid pod unharmed.
        for (name, a) in live.iter().filter(|(_, a)| !stale_ids.contains(&a.sandbox)) {
            bed.wait_ready("default", name, Duration::from_secs(60))
                .await?;
            let out = libcni_check(&bed, a)?;
            check(
                &format!("CHECK {name} still passes: {out:?}"),
                chain_check_passed(a, &out),
                &mut failures,
            );
            check(
                &format!("ping VM -> {name} ({})", a.ip),
                probe::ping(&vm.netns, a.ip),
                &mut failures,
            );
        }
        result(failures)
    })
    .await
}

/// CNI CHECK through libcni, with the chart's chain, passes for Exclusive and Trunk
/// pods. Fails today (ignored): see [`chain_check_passed`].
async fn cni_check_of_passthrough_pods() -> Result<(), Failed> {
    let (bed, _vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let pods = [("exclusive-r1", "exclusive"), ("trunk-r1", "trunk")];
        for (name, mode) in pods {
            bed.create_test_pod("default", name, "r1", &[("mode", mode)])
                .await?;
        }
        let mut failures = Vec::new();
        for (name, mode) in pods {
            let a = attached(&bed, name, "r1", mode).await?;
            let out = libcni_check(&bed, &a)?;
            check(
                &format!("CHECK {name} passes: {out:?}"),
                out.is_ok(),
                &mut failures,
            );
        }
        result(failures)
    })
    .await
}
