//! Traffic leaving the VPC, in every mode: vpc-sim's internet namespace holds an
//! internet host behind the VPC's NAT gateway and a host of a peered network; each
//! answers a connection with the source address it arrived from.

use std::net::SocketAddr;

use vpc_sim::materialize::{INTERNET_HOST, NAT_GATEWAY, PEERED_HOST, PEERED_NET, internet_netns};

use super::*;

/// Port of the address-telling servers in the internet namespace.
const TELL_PORT: u16 = 7100;

/// With the chart's default (`agent.egress.externalSNAT: false`) and the peered network
/// in `excludeSNATCIDRs`, a pod of every mode reaches the internet host with its node's
/// address and the peered host with its own. After `helm upgrade --set
/// agent.egress.externalSNAT=true`, new pods reach the internet host through the VPC's
/// NAT gateway (its address) and the peered host still with their own.
pub(super) async fn egress_snat_in_every_mode() -> Result<(), Failed> {
    let (bed, _vm) = real_bed_of(
        Cloud::Aws,
        Pools::OnePerMode,
        "m5.4xlarge",
        ProxyMode::Nftables,
    )
    .await?;
    with_bed(&bed, || async {
        let inet = internet_netns(&bed.vpc.prefix);
        let _server = probe::EchoServer::start_peer(&inet, TELL_PORT)?;
        let mut failures = Vec::new();
        let exclude = format!("agent.egress.excludeSNATCIDRs={{{PEERED_NET}}}");
        for (phase, set) in [
            ("SNAT on", exclude.as_str()),
            ("externalSNAT", "agent.egress.externalSNAT=true"),
        ] {
            upgrade_agents(&bed, set).await?;
            let r1 = bed.node("r1")?.instance.primary_ip;
            for mode in ["shared", "exclusive", "trunk"] {
                let name = format!("{mode}-{}", if phase == "SNAT on" { "snat" } else { "ext" });
                bed.create_test_pod("default", &name, "r1", &[("mode", mode)])
                    .await?;
                let ip = bed
                    .wait_ready("default", &name, Duration::from_secs(120))
                    .await?;
                let netns = bed.expose_pod_netns("default", &name).await?;
                let internet_sees = if phase == "SNAT on" { r1 } else { NAT_GATEWAY };
                for (what, to, want) in [
                    ("internet host", INTERNET_HOST, internet_sees),
                    ("peered host (excluded from SNAT)", PEERED_HOST, ip),
                ] {
                    let got = probe::read_line(&netns, SocketAddr::from((to, TELL_PORT)));
                    check(
                        &format!(
                            "{phase}: {name} ({ip}) -> {what} {to}: seen as {got:?}, want {want}"
                        ),
                        got == Some(want.to_string()),
                        &mut failures,
                    );
                }
            }
        }
        result(failures)
    })
    .await
}

/// `helm upgrade --reuse-values --set <set>`, then waits until every node runs a new
/// agent pod that is Ready.
async fn upgrade_agents(bed: &Bed, set: &str) -> Result<(), BedError> {
    let before: BTreeSet<String> = bed
        .agent_pods()
        .await?
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let before = &before;
    bed.helm_upgrade_set(set).await?;
    wait_for(
        &format!("agents replaced after --set {set}"),
        Duration::from_secs(120),
        || async move {
            let pods = bed.agent_pods().await?;
            let done = pods.len() == 2
                && pods.iter().all(|p| {
                    p.metadata.uid.as_ref().is_some_and(|u| !before.contains(u))
                        && eni_e2e::bed::ready_ip(p).is_some()
                });
            Ok(done.then_some(()))
        },
    )
    .await?;
    Ok(())
}
