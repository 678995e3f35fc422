//! `helm upgrade` of the agent's image while pods run.

use super::*;

/// The agent pod of the DaemonSet on a node, as the upgrade trial follows it.
#[derive(Clone, Debug)]
struct AgentPod {
    name: String,
    uid: String,
    node: String,
    /// The agent container's image and the image id containerd runs it from.
    image: String,
    image_id: String,
    ready: bool,
}

async fn agent_pods(bed: &Bed) -> Result<Vec<AgentPod>, kube::Error> {
    Ok(bed
        .agent_pods()
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let agent = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find(|c| c.name == "agent").cloned());
            AgentPod {
                name: p.name_any(),
                uid: p.uid().unwrap_or_default(),
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                image: agent.as_ref().map(|c| c.image.clone()).unwrap_or_default(),
                image_id: agent
                    .as_ref()
                    .map(|c| c.image_id.clone())
                    .unwrap_or_default(),
                ready: agent.is_some_and(|c| c.ready),
            }
        })
        .collect())
}

/// When pod `p` last became Ready (unchanged while it stays Ready).
fn ready_since(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0.to_string())
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).sum())
        .unwrap_or(-1)
}

/// `helm upgrade` rolls the agent DaemonSet to another image while pods of every mode
/// run on both nodes. A ping every 200 ms from the VM to each pod and a TCP connection
/// to each pod's echo server cross the whole rollout: no echo is lost (the agent is not
/// on the data path), and the pods keep their sandbox, readiness, PodNetwork and
/// connection. Pods created afterwards are wired by the new agents.
pub(super) async fn helm_upgrade_of_the_agent_keeps_pods() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let mut names = Vec::new();
        for mode in ["shared", "exclusive", "trunk"] {
            for node in ["r1", "r2"] {
                let name = format!("{mode}-{node}");
                bed.create_test_pod("default", &name, node, &[("mode", mode)])
                    .await?;
                names.push((name, node));
            }
        }
        let pods_api: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        // Per pod: address, sandbox process, Ready since, PodNetwork (uid/ENI/address).
        let mut before = BTreeMap::new();
        for (name, node) in &names {
            let ip = bed
                .wait_ready("default", name, Duration::from_secs(120))
                .await?;
            let pid = bed.real_node(node)?.sandbox_pid("default", name)?;
            let pod = pods_api.get(name).await?;
            before.insert(name.clone(), (ip, pid, ready_since(&pod)));
        }
        let units = |pns: Vec<eni_crds::PodNetwork>| -> BTreeMap<String, String> {
            pns.into_iter()
                .map(|p| {
                    let unit = format!(
                        "{} {}/{}",
                        p.uid().unwrap_or_default(),
                        p.spec.allocation.eni_id,
                        p.spec.allocation.address
                    );
                    (p.name_any(), unit)
                })
                .collect()
        };
        let units_before = units(bed.podnetworks().await?);
        let old_agents = agent_pods(&bed).await?;
        let version = format!("{}-upgrade", bed.product_tag()?);
        let new_image = bed.import_agent_version(&version).await?;

        let interval = Duration::from_millis(200);
        let mut pingers = Vec::new();
        let mut held = BTreeMap::new();
        for (name, (ip, _, _)) in &before {
            pingers.push((name.clone(), Pinger::start(&vm.netns, *ip, interval)?));
            let conn = HeldConnection::open(&vm.netns, SocketAddr::from((*ip, ECHO_PORT)))?;
            held.insert(name.clone(), conn);
        }
        let started = Instant::now();
        bed.helm_upgrade_set(&format!("images.agent.tag={version}"))
            .await?;
        let helm_secs = started.elapsed().as_secs_f64();
        // Rolled out: on each node a new agent pod, Ready, whose container runs from
        // another image id than the old one's (not only a changed spec).
        let old = old_agents.clone();
        let new_agents = wait_for(
            "new agents Ready on the new image on r1 and r2",
            Duration::from_secs(180),
            || {
                let (bed, old, new_image) = (&bed, &old, &new_image);
                async move {
                    let now = agent_pods(bed).await?;
                    let done = ["r1", "r2"].iter().all(|node| {
                        let on: Vec<&AgentPod> = now.iter().filter(|a| a.node == *node).collect();
                        let was = old.iter().find(|a| a.node == *node);
                        on.len() == 1
                            && on[0].ready
                            && on[0].image == *new_image
                            && was.is_some_and(|w| w.uid != on[0].uid && w.image_id != on[0].image_id)
                    });
                    Ok(done.then_some(now))
                }
            },
        )
        .await?;
        let rollout_secs = started.elapsed().as_secs_f64();
        bed.wait_rolled_out(Duration::from_secs(60)).await?;
        println!(
            "  helm upgrade returned after {helm_secs:.1}s; both agents replaced and Ready on the new image after {rollout_secs:.1}s"
        );
        for old in &old_agents {
            if let Some(new) = new_agents.iter().find(|a| a.node == old.node) {
                println!(
                    "  agent on {}: {} {} ({}) -> {} {} ({})",
                    old.node, old.name, old.image, old.image_id, new.name, new.image, new.image_id
                );
            }
        }
        // Pings run on a little past the rollout.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut failures = Vec::new();
        for (name, pinger) in pingers {
            let stats = pinger.stop()?;
            println!("  pings lost during the agent upgrade, VM -> {name}: {stats}");
            let covered = f64::from(stats.sent) * interval.as_secs_f64() >= rollout_secs;
            check(
                &format!("{name}: no ping lost across the upgrade ({} of {} lost), pings covered the {rollout_secs:.1}s rollout ({covered})", stats.lost.len(), stats.sent),
                stats.lost.is_empty() && covered,
                &mut failures,
            );
        }
        for (name, conn) in held.iter_mut() {
            let echoed = conn.echo("after the upgrade");
            check(
                &format!("{name}: the TCP connection opened before the upgrade still echoes ({echoed:?})"),
                echoed.is_ok(),
                &mut failures,
            );
        }
        for (name, node) in &names {
            let (ip, pid, since) = &before[name];
            let pod = pods_api.get(name).await?;
            let pid_now = bed.real_node(node)?.sandbox_pid("default", name).ok();
            let since_now = ready_since(&pod);
            check(
                &format!(
                    "{name}: same sandbox ({pid} -> {pid_now:?}), Ready throughout (since {since:?} -> {since_now:?}), {} restarts",
                    restarts(&pod)
                ),
                pid_now == Some(*pid)
                    && eni_e2e::bed::ready_ip(&pod) == Some(*ip)
                    && since_now == *since
                    && restarts(&pod) == 0,
                &mut failures,
            );
        }
        let units_after = units(bed.podnetworks().await?);
        check(
            &format!("PodNetworks (uid, ENI, address) unchanged ({} units)", units_before.len()),
            units_before == units_after,
            &mut failures,
        );

        // r1 has no room for a second Exclusive ENI: its Exclusive pod, wired by the old
        // agent, goes first, torn down by the new one (which reads the old one's state).
        bed.delete_pod("default", "exclusive-r1").await?;
        bed.wait_gone("default", "exclusive-r1", Duration::from_secs(60))
            .await?;
        let r1_agent = new_agents
            .iter()
            .find(|a| a.node == "r1")
            .ok_or_else(|| BedError::Other("no new agent on r1".into()))?;
        let log = bed
            .real_node("r1")?
            .container_log("eni-system", &r1_agent.name, &r1_agent.uid, "agent")?;
        check(
            "exclusive-r1 (wired by the old agent) deleted: the new agent unwired it",
            log.lines().any(|l| l.contains("pod unwired")),
            &mut failures,
        );
        // New pods go through the new agents: each agent's own log shows it wired them.
        for (name, node, mode) in [
            ("shared-new", "r2", "shared"),
            ("exclusive-new", "r1", "exclusive"),
            ("trunk-new", "r2", "trunk"),
        ] {
            bed.create_test_pod("default", name, node, &[("mode", mode)])
                .await?;
            let ip = bed.wait_ready("default", name, Duration::from_secs(120)).await?;
            check(
                &format!("{name} created after the upgrade is Ready and answers the VM ({ip})"),
                probe::ping(&vm.netns, ip)
                    && probe::tcp_echo(&vm.netns, SocketAddr::from((ip, ECHO_PORT))),
                &mut failures,
            );
            let agent = new_agents
                .iter()
                .find(|a| a.node == node)
                .ok_or_else(|| BedError::Other(format!("no new agent on {node}")))?;
            let log = bed
                .real_node(node)?
                .container_log("eni-system", &agent.name, &agent.uid, "agent")?;
            let wired = log
                .lines()
                .any(|l| l.contains("pod wired") && l.contains(&format!("default/{name}")));
            check(
                &format!("{name} wired by the new agent {} (its log says so)", agent.name),
                wired,
                &mut failures,
            );
        }
        result(failures)
    })
    .await
}
