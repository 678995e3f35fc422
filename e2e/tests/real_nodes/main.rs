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
    real_node::ProxyMode,
    security_groups::{self, GroupPod},
    traffic::{self, HeldConnection, Pinger},
    trial::{self, check, result},
    vpc::Cloud,
};
use eni_node_agent::agent::state::Record;
use eni_test_support::{PoolBuilder, pool, probe, transfer};
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

mod bandwidth;
mod cni_check_gc;
mod egress;
mod sandbox_retry;
mod scheduling;
mod services;
mod upgrade;

use bandwidth::bandwidth_annotation_is_enforced;
use cni_check_gc::cni_check_and_gc_through_libcni;
use egress::egress_snat_in_every_mode;
use sandbox_retry::sandbox_recreated_after_a_failed_add;
use scheduling::trunk_capacity_is_scheduled;
use services::{services_in_every_mode, services_with_iptables_kube_proxy};
use upgrade::helm_upgrade_of_the_agent_keeps_pods;

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        trial("real_pods_in_every_mode", || {
            real_pods_in_every_mode(Cloud::Aws)
        }),
        // The chart installed for Alibaba Cloud (cloud.provider=alibaba, the ECS
        // credentials Secret) on vpc-sim playing Alibaba Cloud.
        trial("alibaba_real_pods_in_every_mode", || {
            real_pods_in_every_mode(Cloud::Alibaba)
        }),
        trial("services_in_every_mode", services_in_every_mode),
        trial(
            "services_with_iptables_kube_proxy",
            services_with_iptables_kube_proxy,
        ),
        trial("egress_snat_in_every_mode", egress_snat_in_every_mode),
        trial("trunk_capacity_is_scheduled", trunk_capacity_is_scheduled),
        trial(
            "kubelet_and_containerd_restarts_keep_pods",
            restarts_keep_pods,
        ),
        trial("host_port_in_every_mode", host_port_in_every_mode),
        trial("security_groups_on_real_pods", security_groups),
        trial(
            "status_follows_the_agent_then_uninstall",
            status_then_uninstall,
        ),
        trial(
            "helm_upgrade_of_the_agent_keeps_pods",
            helm_upgrade_of_the_agent_keeps_pods,
        ),
        trial(
            "bandwidth_annotation_is_enforced",
            bandwidth_annotation_is_enforced,
        ),
        trial(
            "sandbox_recreated_after_a_failed_add",
            sandbox_recreated_after_a_failed_add,
        ),
        trial(
            "cni_check_and_gc_through_libcni",
            cni_check_and_gc_through_libcni,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial<Fut: std::future::Future<Output = Result<(), Failed>> + 'static>(
    name: &'static str,
    f: fn() -> Fut,
) -> Trial {
    trial::as_root(name, "namespaces, mounts, cgroups", f)
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
    real_bed_in(Cloud::Aws, pools).await
}

/// [`real_bed`] with vpc-sim playing `cloud` and the chart installed for it.
async fn real_bed_in(cloud: Cloud, pools: Pools) -> Result<(Bed, eni_e2e::vpc::Instance), Failed> {
    real_bed_of(cloud, pools, "m5.xlarge", ProxyMode::Nftables).await
}

/// [`real_bed_in`] with nodes of `instance_type` whose kube-proxy runs in `proxy_mode`.
async fn real_bed_of(
    cloud: Cloud,
    pools: Pools,
    instance_type: &str,
    proxy_mode: ProxyMode,
) -> Result<(Bed, eni_e2e::vpc::Instance), Failed> {
    let started = Instant::now();
    let bed = Bed::start_real_in(cloud, fast_cloud())
        .await
        .map_err(|e| e.to_string())?;
    bed.set_proxy_mode(proxy_mode);
    let cp_secs = started.elapsed().as_secs_f64();
    let mut vm = None;
    with_bed(&bed, || async {
        for node in ["r1", "r2"] {
            bed.add_real_node(node, instance_type, &[("eni-pools", "all")])
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
            Pools::SharedOnly => vec![pool_for("shared", Mode::SharedIp).warm_ips(2)],
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
async fn real_pods_in_every_mode(cloud: Cloud) -> Result<(), Failed> {
    let (bed, vm) = real_bed_in(cloud, Pools::OnePerMode).await?;
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

/// hostPort through the chained portmap plugin in every mode. A SharedIP pod's replies
/// leave through the main table thanks to the agent's DNAT-reply mark (its ENI table
/// would send them out of the pod's ENI with the node's address, which the VPC drops).
async fn host_port_in_every_mode() -> Result<(), Failed> {
    host_port(&[
        ("shared-hp", "shared", 17001),
        ("exclusive-hp", "exclusive", 17002),
        ("trunk-hp", "trunk", 17003),
    ])
    .await
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
        let pod = |name: &str| GroupPod {
            netns: &running[name].netns,
            ip: running[name].ip,
        };
        let mut failures = Vec::new();
        for (what, ok) in security_groups::probes(pod("web-0"), pod("db-0"), pod("plain-0")) {
            check(&what, ok, &mut failures);
        }
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

/// The first 12 characters of a container ID, as runtimes print them.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
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
