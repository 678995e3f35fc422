//! Trunk capacity is scheduled: pods a Trunk pool selects request a member ENI (the
//! chart's MutatingAdmissionPolicy), the operator publishes each node's member ENIs,
//! and the real kube-scheduler places pods only where one is left.

use super::*;

/// Member ENIs per node: the pool's `maxENIs`.
const MEMBERS: usize = 2;
const RESOURCE: &str = "eni-operator.io/member-eni";

/// A Trunk pool of at most two member ENIs per node on two nodes: four pods created
/// without a node are scheduled two per node and become Ready; the fifth stays Pending
/// with the scheduler's `Insufficient eni-operator.io/member-eni` and never reaches a
/// node (no sandbox, no CNI call). Deleting one of the four lets it run.
pub(super) async fn trunk_capacity_is_scheduled() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::SharedOnly).await?;
    with_bed(&bed, || async {
        let sg = bed.vpc.group_id("default").await?;
        let trunk = pool_for("trunk", Mode::Trunk)
            .security_groups(&[sg.as_str()])
            .warm_enis(1)
            .max_enis(MEMBERS as u32);
        bed.apply_yaml(&trunk.yaml()).await?;
        let nodes: Api<Node> = Api::all(bed.client.clone());
        wait_for(
            "both nodes publish 2 member ENIs",
            Duration::from_secs(60),
            || {
                let nodes = nodes.clone();
                async move {
                    let mut all = true;
                    for node in ["r1", "r2"] {
                        let status = nodes.get(node).await?.status.unwrap_or_default();
                        let of = |m: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
                            m.and_then(|m| m.get(RESOURCE).map(|q| q.0.clone()))
                        };
                        all &= of(status.allocatable) == Some(MEMBERS.to_string());
                    }
                    Ok(all.then_some(()))
                }
            },
        )
        .await?;
        let names: Vec<String> = (0..=2 * MEMBERS).map(|i| format!("tr-{i}")).collect();
        for name in &names {
            let mut pod = test_pod("default", name, "r1", &[("mode", "trunk")]);
            // The scheduler decides where.
            if let Some(spec) = pod["spec"].as_object_mut() {
                spec.remove("nodeSelector");
            }
            bed.create_pod_from(pod).await?;
            // One at a time, so that which pod is left over is known.
            if name != names.last().map(String::as_str).unwrap_or_default() {
                bed.wait_ready("default", name, Duration::from_secs(120))
                    .await?;
            }
        }
        let pods: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        let mut failures = Vec::new();
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for name in &names[..2 * MEMBERS] {
            let pod = pods.get(name).await?;
            let requested = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].resources.clone())
                .and_then(|r| r.requests)
                .and_then(|r| r.get(RESOURCE).map(|q| q.0.clone()));
            check(
                &format!("{name} requests one {RESOURCE}: {requested:?}"),
                requested.as_deref() == Some("1"),
                &mut failures,
            );
            if let Some(node) = pod.spec.and_then(|s| s.node_name) {
                *per_node.entry(node).or_default() += 1;
            }
        }
        check(
            &format!("the scheduler put {MEMBERS} pods on each node: {per_node:?}"),
            per_node.values().all(|n| *n == MEMBERS) && per_node.len() == 2,
            &mut failures,
        );
        let last = names.last().cloned().unwrap_or_default();
        let unschedulable = wait_for(
            &format!("{last} reported unschedulable"),
            Duration::from_secs(30),
            || {
                let (pods, last) = (pods.clone(), last.clone());
                async move {
                    let pod = pods.get(&last).await?;
                    let condition = pod
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
                    Ok(condition.map(|c| {
                        (
                            c.reason.unwrap_or_default(),
                            c.message.unwrap_or_default(),
                            pod.spec.and_then(|s| s.node_name),
                        )
                    }))
                }
            },
        )
        .await?;
        println!("  {last}: PodScheduled=False {unschedulable:?}");
        check(
            &format!("{last} stays Pending, Unschedulable: Insufficient {RESOURCE}, on no node: {unschedulable:?}"),
            unschedulable.0 == "Unschedulable"
                && unschedulable.1.contains(&format!("Insufficient {RESOURCE}"))
                && unschedulable.2.is_none(),
            &mut failures,
        );
        // It never reached a node, so no CNI ADD failed for it.
        let events: Api<Event> = Api::namespaced(bed.client.clone(), "default");
        let sandbox_failures = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={last}")))
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
            .count();
        check(
            &format!("no FailedCreatePodSandBox event for {last}: {sandbox_failures}"),
            sandbox_failures == 0,
            &mut failures,
        );
        // A member ENI frees up: the pending pod is scheduled and runs.
        pods.delete(&names[0], &DeleteParams::default()).await?;
        let started = Instant::now();
        let ip = bed
            .wait_ready("default", &last, Duration::from_secs(120))
            .await?;
        println!(
            "  {last} Ready {:.1}s after {} was deleted",
            started.elapsed().as_secs_f64(),
            names[0]
        );
        check(
            &format!("{last} answers the VM at {ip}"),
            probe::tcp_echo(&vm.netns, SocketAddr::from((ip, ECHO_PORT))),
            &mut failures,
        );
        result(failures)
    })
    .await
}
