//! The security-group trial's probes, run alike on the stand-in bed (tests/end_to_end.rs)
//! and on real nodes (tests/real_nodes/). vpc-sim's layout: `web` admits TCP 80 and
//! ICMP from the VPC, `db` admits TCP 5432 from members of `web` only; `plain` pods have
//! the permissive `default` group. Every pod serves TCP 80 and 5432.

use std::net::{Ipv4Addr, SocketAddr};

use eni_test_support::probe;

/// A Trunk pod of the trial: its network namespace (as `ip netns` names it) and address.
#[derive(Clone, Copy, Debug)]
pub struct GroupPod<'a> {
    pub netns: &'a str,
    pub ip: Ipv4Addr,
}

/// Probes between the `web`, `db` and `plain` pods, each with whether its outcome was
/// the one the groups call for.
pub fn probes(web: GroupPod<'_>, db: GroupPod<'_>, plain: GroupPod<'_>) -> Vec<(String, bool)> {
    let tcp = |from: GroupPod<'_>, to: GroupPod<'_>, port: u16| {
        probe::tcp_echo(from.netns, SocketAddr::from((to.ip, port)))
    };
    let ping = |from: GroupPod<'_>, to: GroupPod<'_>| probe::ping(from.netns, to.ip);
    // (what, passes when the groups are enforced, whether the probe got through)
    let cases = [
        (
            "web -> db tcp/5432 passes (db admits web members)",
            true,
            tcp(web, db, 5432),
        ),
        (
            "plain -> db tcp/5432 dropped (not a web member)",
            false,
            tcp(plain, db, 5432),
        ),
        (
            "web -> db tcp/80 dropped (db admits 5432 only)",
            false,
            tcp(web, db, 80),
        ),
        (
            "ping web -> db dropped (db admits no ICMP)",
            false,
            ping(web, db),
        ),
        ("plain -> web tcp/80 passes", true, tcp(plain, web, 80)),
        ("ping plain -> web passes", true, ping(plain, web)),
        (
            "plain -> web tcp/5432 dropped",
            false,
            tcp(plain, web, 5432),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, wanted, got)| (what.to_owned(), wanted == got))
        .collect()
}
