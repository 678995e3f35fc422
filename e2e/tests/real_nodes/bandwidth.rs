//! The chained bandwidth plugin and the pods' bandwidth annotations.

use super::*;

/// What both bandwidth annotations ask for: 8 Mbit/s (Kubernetes quantities, bit/s).
const BANDWIDTH_LIMIT: &str = "8M";
const LIMIT_MBIT: f64 = 8.0;

/// A test pod with `kubernetes.io/ingress-bandwidth` and `egress-bandwidth` set to
/// [`BANDWIDTH_LIMIT`].
fn shaped_pod(name: &str, node: &str, mode: &str) -> serde_json::Value {
    let mut pod = test_pod("default", name, node, &[("mode", mode)]);
    pod["metadata"]["annotations"] = json!({
        "kubernetes.io/ingress-bandwidth": BANDWIDTH_LIMIT,
        "kubernetes.io/egress-bandwidth": BANDWIDTH_LIMIT,
    });
    pod
}

/// The events of pod `default/name`: reason and message.
async fn pod_events(bed: &Bed, name: &str) -> Result<Vec<(String, String)>, kube::Error> {
    let events: Api<Event> = Api::namespaced(bed.client.clone(), "default");
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    Ok(events
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

/// Errors of the bandwidth plugin when the pod's interface has no veth peer among the
/// host interfaces of eni-cni's result (v1.10.0, `getHostInterface`).
const NO_HOST_PEER: [&str; 3] = [
    "has no veth peer",
    "is not in host ns",
    "no veth peer of container interface found in host ns",
];

/// What became of an Exclusive or Trunk pod with the annotations.
enum Outcome {
    Ready(Ipv4Addr),
    /// The runtime's sandbox creation failed in the bandwidth plugin: the event.
    Refused(String),
}

/// The chained bandwidth plugin on real pods. A SharedIP pod annotated
/// `kubernetes.io/{ingress,egress}-bandwidth: 8M` gets token buckets at 8 Mbit/s on the
/// host veth eni-cni names (VM -> pod) and on an ifb (pod -> VM), with the burst
/// containerd asks for (2^32-1 bits, which the plugin turns into minutes of the rate).
/// Measured both ways past that burst, the rate stays within 1.3x the limit while an
/// unannotated pod measured the same way runs over 10x faster; the burst itself passes at
/// full speed. Exclusive and Trunk pods (eth0 is the ENI, no veth to the node): the
/// plugin refuses the ADD, or, in this bed only, shapes the pod's host veth that VPC
/// traffic never crosses (docs/operations.md).
pub(super) async fn bandwidth_annotation_is_enforced() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        bed.create_pod_from(shaped_pod("shaped", "r1", "shared"))
            .await?;
        bed.create_test_pod("default", "unshaped", "r1", &[("mode", "shared")])
            .await?;
        bed.create_pod_from(shaped_pod("exclusive-shaped", "r2", "exclusive"))
            .await?;
        bed.create_pod_from(shaped_pod("trunk-shaped", "r2", "trunk"))
            .await?;
        let mut failures = Vec::new();
        let wait = Duration::from_secs(120);
        let shaped_ip = bed.wait_ready("default", "shaped", wait).await?;
        let unshaped_ip = bed.wait_ready("default", "unshaped", wait).await?;

        let r1 = bed.node("r1")?.netns;
        let host_veth = netns::route_device(&r1, shaped_ip)?;
        let tbfs = traffic::tbf_qdiscs(&r1)?;
        let limit_bytes = (LIMIT_MBIT * 1e6 / 8.0) as u64;
        let at_limit = |t: &traffic::Tbf| t.rate_bytes_per_s == limit_bytes;
        check(
            &format!(
                "r1 shapes at {BANDWIDTH_LIMIT}bit/s the shaped pod's host veth {host_veth} (VM -> pod) and an ifb (pod -> VM), nothing else: {tbfs:?}"
            ),
            tbfs.len() == 2
                && tbfs.iter().any(|t| t.dev == host_veth && at_limit(t))
                && tbfs.iter().any(|t| t.dev.starts_with("bwp") && at_limit(t)),
            &mut failures,
        );
        let burst = tbfs.iter().map(|t| t.burst_bytes).max().unwrap_or_default();
        println!(
            "  the buckets' burst: {burst} bytes, {:.0}s of the limit",
            burst as f64 / limit_bytes as f64
        );
        // Past the burst, then 2 MiB for the shaper to settle, then the measured part.
        let measured = 6u64 << 20;
        let total = burst + (2 << 20) + measured;
        let timeout = Duration::from_secs(120);
        for (name, ip) in [("shaped", shaped_ip), ("unshaped", unshaped_ip)] {
            let ns = bed.expose_pod_netns("default", name).await?;
            let vm_to_pod = traffic::transfer(
                &vm.netns,
                &ns,
                SocketAddr::from((ip, 7100)),
                total,
                timeout,
            )?;
            let pod_to_vm = traffic::transfer(
                &ns,
                &vm.netns,
                SocketAddr::from((vm.primary_ip, 7101)),
                total,
                timeout,
            )?;
            for (direction, timeline) in [("VM -> pod", vm_to_pod), ("pod -> VM", pod_to_vm)] {
                let rate = |from, to| {
                    timeline.rate(from, to).ok_or_else(|| {
                        BedError::Other(format!("{name} {direction}: no rate from {from} to {to}"))
                    })
                };
                let first_half = rate(0, burst / 2)?.mbit_per_s();
                let last = rate(total - measured, total)?.mbit_per_s();
                println!(
                    "  {name} {direction}: {total} bytes; the first {} at {first_half:.0} Mbit/s, the last {measured} at {last:.1} Mbit/s",
                    burst / 2
                );
                if name == "shaped" {
                    check(
                        &format!("shaped {direction}: past the burst {last:.1} Mbit/s, within 0.5x..1.3x of {LIMIT_MBIT}"),
                        (0.5 * LIMIT_MBIT..=1.3 * LIMIT_MBIT).contains(&last),
                        &mut failures,
                    );
                    check(
                        &format!("shaped {direction}: the burst passes unshaped ({first_half:.0} Mbit/s > 10x the limit)"),
                        first_half > 10.0 * LIMIT_MBIT,
                        &mut failures,
                    );
                } else {
                    check(
                        &format!("unshaped {direction}: {last:.0} Mbit/s over the same bytes, > 10x the limit"),
                        last > 10.0 * LIMIT_MBIT,
                        &mut failures,
                    );
                }
            }
        }

        let pods: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        let r2 = bed.node("r2")?.netns;
        for name in ["exclusive-shaped", "trunk-shaped"] {
            let outcome = wait_for(
                &format!("{name} Ready or refused by the bandwidth plugin"),
                Duration::from_secs(120),
                || {
                    let (bed, pods) = (&bed, &pods);
                    async move {
                        let pod = pods.get(name).await?;
                        if let Some(ip) = eni_e2e::bed::ready_ip(&pod) {
                            return Ok(Some(Outcome::Ready(ip)));
                        }
                        let refused = pod_events(bed, name).await?.into_iter().find(|(r, m)| {
                            r == "FailedCreatePodSandBox"
                                && m.contains("plugin type=\"bandwidth\" failed (add)")
                        });
                        Ok(refused.map(|(_, m)| Outcome::Refused(m)))
                    }
                },
            )
            .await?;
            match outcome {
                Outcome::Refused(message) => {
                    println!("  {name}: refused: {message}");
                    check(
                        &format!("{name}: the bandwidth plugin finds no veth peer of eth0 (the ENI) among the node's interfaces and fails the ADD"),
                        NO_HOST_PEER.iter().any(|e| message.contains(e)),
                        &mut failures,
                    );
                    bed.delete_pod("default", name).await?;
                    let gone = bed.wait_gone("default", name, Duration::from_secs(60)).await;
                    check(
                        &format!("{name} refused by the plugin is deleted cleanly ({gone:?})"),
                        gone.is_ok(),
                        &mut failures,
                    );
                }
                Outcome::Ready(ip) => {
                    // The bed's ENIs are veths whose peer is in the VPC namespace: the
                    // peer's index can name an interface of the node, here the pod's own
                    // host veth.
                    let host = netns::route_device(&r2, ip)?;
                    let sent = || -> Result<Option<u64>, BedError> {
                        Ok(traffic::tbf_qdiscs(&r2)?
                            .into_iter()
                            .find(|t| t.dev == host)
                            .map(|t| t.sent_bytes))
                    };
                    let before = sent()?;
                    let ns = bed.expose_pod_netns("default", name).await?;
                    traffic::transfer(&vm.netns, &ns, SocketAddr::from((ip, 7100)), 8 << 20, timeout)?;
                    let after = sent()?;
                    println!("  {name}: Ready at {ip}; tbf on its host veth {host}: {before:?} -> {after:?} bytes");
                    check(
                        &format!("{name}: the plugin shaped the pod's host veth {host}, which 8 MiB VM -> pod over the ENI did not cross ({before:?} -> {after:?} bytes)"),
                        matches!((before, after), (Some(b), Some(a)) if a.saturating_sub(b) < 1 << 20),
                        &mut failures,
                    );
                }
            }
        }
        result(failures)
    })
    .await
}
