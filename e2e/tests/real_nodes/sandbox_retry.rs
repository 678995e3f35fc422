//! A sandbox recreated by kubelet after a failed CNI ADD.

use super::*;

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
pub(super) async fn sandbox_recreated_after_a_failed_add() -> Result<(), Failed> {
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
