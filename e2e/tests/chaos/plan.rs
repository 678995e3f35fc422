//! The disruptions of one chaos run, drawn from its seed: how many of each, and at which
//! of the churn's operations they happen. Fixed counts, random order and placement, so
//! that every run exercises every kind and the counts can be asserted.

use rand::{Rng, rngs::StdRng, seq::SliceRandom};

/// Something that happens to the product or the control plane mid-churn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Disruption {
    /// SIGKILL of the operator replica holding the lease.
    KillLeader,
    /// SIGKILL of the other replica.
    KillStandby,
    /// SIGKILL of one node's agent.
    KillAgent,
    /// SIGKILL of kube-apiserver, started again after a few seconds.
    RestartApiServer,
    /// SIGKILL of etcd, started again after a few seconds.
    RestartEtcd,
}

impl Disruption {
    pub fn as_str(self) -> &'static str {
        match self {
            Disruption::KillLeader => "leader killed",
            Disruption::KillStandby => "standby killed",
            Disruption::KillAgent => "agent killed",
            Disruption::RestartApiServer => "kube-apiserver restarted",
            Disruption::RestartEtcd => "etcd restarted",
        }
    }
}

/// How many of each kind a run has.
pub const COUNTS: [(Disruption, usize); 5] = [
    (Disruption::KillLeader, 5),
    (Disruption::KillStandby, 4),
    (Disruption::KillAgent, 8),
    (Disruption::RestartApiServer, 1),
    (Disruption::RestartEtcd, 1),
];

/// The disruptions, each at an operation index in `ops / 20 .. ops * 9 / 10` (the
/// churn is under way and has time left to feel it), sorted by index; at most one per
/// index.
pub fn plan(rng: &mut StdRng, ops: usize) -> Vec<(usize, Disruption)> {
    let mut kinds: Vec<Disruption> = COUNTS
        .iter()
        .flat_map(|(kind, n)| std::iter::repeat_n(*kind, *n))
        .collect();
    kinds.shuffle(rng);
    let (first, last) = (ops / 20, ops * 9 / 10);
    let slot = (last - first) / kinds.len().max(1);
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let start = first + i * slot;
            (start + rng.random_range(0..slot.max(1)), kind)
        })
        .collect()
}
