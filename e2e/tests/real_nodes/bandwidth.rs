//! The pods' bandwidth annotations, enforced by the agent in every mode.

use super::cni_check_gc::{attached, libcni_check};
use super::*;

/// What both bandwidth annotations ask for: 8 Mbit/s (Kubernetes quantities, bit/s).
const BANDWIDTH_LIMIT: &str = "8M";
const LIMIT_MBIT: f64 = 8.0;
/// The agent's burst at that rate: 100 ms of it, whatever containerd asks for.
const BURST_BYTES: u64 = 100_000;

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

/// The bandwidth annotations on real pods, with the chart's default (`agent.cni.bandwidth:
/// agent`: eni-cni takes the capability). A SharedIP, an Exclusive and a Trunk pod
/// annotated `8M` both ways each get two token buckets at 8 Mbit/s with a 100 ms burst
/// (not the 2^32-1 bits containerd asks for) on ifbs in their own namespace, and none
/// on the node. Measured with TCP both ways between the VPC VM and each pod, past the
/// first megabyte, the rate is within 0.5x..1.3x of the limit, while an unannotated pod
/// measured the same way runs over 10x faster. CNI CHECK through libcni passes for the
/// shaped pods and names a redirect removed inside one of them.
pub(super) async fn bandwidth_annotation_is_enforced() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let shaped = [
            ("shared-shaped", "r1", "shared"),
            ("exclusive-shaped", "r2", "exclusive"),
            ("trunk-shaped", "r2", "trunk"),
        ];
        for (name, node, mode) in shaped {
            bed.create_pod_from(shaped_pod(name, node, mode)).await?;
        }
        bed.create_test_pod("default", "unshaped", "r1", &[("mode", "shared")])
            .await?;
        let mut failures = Vec::new();
        let limit_bytes = (LIMIT_MBIT * 1e6 / 8.0) as u64;
        let mut measured_pods = Vec::new();
        for (name, node, _) in shaped {
            let a = attached(&bed, name, node).await?;
            let tbfs = traffic::tbf_qdiscs(&a.host_netns)?;
            let devices: BTreeSet<&str> = tbfs.iter().map(|t| t.dev.as_str()).collect();
            check(
                &format!(
                    "{name}: two buckets at {BANDWIDTH_LIMIT}bit/s with a {BURST_BYTES} byte burst in its namespace, on bwi-eth0 (to it) and bwo-eth0 (from it): {tbfs:?}"
                ),
                tbfs.len() == 2
                    && devices == BTreeSet::from(["bwi-eth0", "bwo-eth0"])
                    && tbfs
                        .iter()
                        .all(|t| t.rate_bytes_per_s == limit_bytes && t.burst_bytes == BURST_BYTES),
                &mut failures,
            );
            let out = libcni_check(&bed, &a)?;
            check(
                &format!("CHECK {name} passes: {out:?}"),
                out.is_ok(),
                &mut failures,
            );
            measured_pods.push((name, a.ip, a.host_netns));
        }
        for node in ["r1", "r2"] {
            let on_node = traffic::tbf_qdiscs(&bed.node(node)?.netns)?;
            check(
                &format!("no bucket on node {node} itself: {on_node:?}"),
                on_node.is_empty(),
                &mut failures,
            );
        }
        let unshaped_ip = bed
            .wait_ready("default", "unshaped", Duration::from_secs(120))
            .await?;
        let unshaped_ns = bed.expose_pod_netns("default", "unshaped").await?;
        measured_pods.push(("unshaped", unshaped_ip, unshaped_ns));

        // 1 MiB for the burst and the shaper to settle, then the measured part.
        let settle = 1u64 << 20;
        let measured = 3u64 << 20;
        let total = settle + measured;
        let timeout = Duration::from_secs(60);
        for (name, ip, ns) in &measured_pods {
            let vm_to_pod = transfer::transfer(
                &vm.netns,
                ns,
                SocketAddr::from((*ip, 7100)),
                total,
                timeout,
            )?;
            let pod_to_vm = transfer::transfer(
                ns,
                &vm.netns,
                SocketAddr::from((vm.primary_ip, 7101)),
                total,
                timeout,
            )?;
            for (direction, timeline) in [("VM -> pod", vm_to_pod), ("pod -> VM", pod_to_vm)] {
                let rate = timeline
                    .rate(settle, total)
                    .ok_or_else(|| {
                        BedError::Other(format!("{name} {direction}: no rate past {settle}"))
                    })?
                    .mbit_per_s();
                println!("  {name} {direction}: the last {measured} of {total} bytes at {rate:.1} Mbit/s");
                if *name == "unshaped" {
                    check(
                        &format!("unshaped {direction}: {rate:.0} Mbit/s, > 10x the limit"),
                        rate > 10.0 * LIMIT_MBIT,
                        &mut failures,
                    );
                } else {
                    check(
                        &format!("{name} {direction}: {rate:.1} Mbit/s, within 0.5x..1.3x of {LIMIT_MBIT}"),
                        (0.5 * LIMIT_MBIT..=1.3 * LIMIT_MBIT).contains(&rate),
                        &mut failures,
                    );
                }
            }
        }

        // A redirect removed inside the Trunk pod: CHECK names it.
        let trunk = attached(&bed, "trunk-shaped", "r2").await?;
        eni_e2e::netns::run(std::process::Command::new("tc").args([
            "-n", &trunk.host_netns, "filter", "del", "dev", "eth0", "egress",
        ]))?;
        let broken = libcni_check(&bed, &trunk)?;
        println!("  CHECK trunk-shaped without its egress redirect: {broken:?}");
        check(
            "CHECK trunk-shaped fails naming the egress redirect of eth0",
            matches!(&broken, Err(m) if m.contains("the egress of eth0 is not redirected to bwo-eth0")),
            &mut failures,
        );
        result(failures)
    })
    .await
}
