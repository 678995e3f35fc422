//! Sticky addresses for StatefulSet pods (SharedIP pools with `stickyIPForStatefulSets`).
//!
//! The reservation lives in the API, not in the operator: a released PodNetwork of a
//! StatefulSet pod keeps its finalizer, and so its unit, for `releaseAfter` counted from
//! its deletionTimestamp. A new pod of the same namespace/name on the same node and pool
//! inside that window takes the unit over (the old PodNetwork's finalizer goes, the new
//! one is written with the same address). A restarted operator finds the deleting
//! PodNetwork and resumes the reservation where it was. Pure: no clock, no I/O.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

pub fn owned_by_statefulset(owners: &[OwnerReference]) -> bool {
    owners
        .iter()
        .any(|o| o.kind == "StatefulSet" && o.api_version.starts_with("apps/"))
}

/// The reservation window of a released unit: the pool's `releaseAfter`, for a
/// StatefulSet pod only.
pub fn window(release_after: Option<Duration>, stateful: bool) -> Option<Duration> {
    release_after.filter(|_| stateful)
}

/// Where the pod of the same name as a released PodNetwork is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Successor {
    /// No such pod (yet).
    None,
    SameNode,
    /// Elsewhere: the unit cannot follow it (an address belongs to an ENI of one node),
    /// and the successor waits for the old PodNetwork's name, so the reservation ends.
    OtherNode,
}

/// How long after its PodNetwork's deletion a unit stays out of the warm pool: the
/// cooldown, or the reservation window when it is longer and still of use.
pub fn hold(cooldown: Duration, window: Option<Duration>, successor: Successor) -> Duration {
    match (window, successor) {
        (Some(w), Successor::None | Successor::SameNode) => w.max(cooldown),
        _ => cooldown,
    }
}

/// Whether a new pod takes over the unit its predecessor's deleting PodNetwork reserves.
pub fn hands_over(
    window: Option<Duration>,
    since_deletion: Duration,
    same_node: bool,
    same_pool: bool,
) -> bool {
    same_node && same_pool && window.is_some_and(|w| since_deletion < w)
}

/// Time from the API server's `deleted_at` stamp to `now` (its clock; the local one
/// only adds), zero if `now` is earlier.
pub fn since_deletion(deleted_at: &Time, now: &Time) -> Duration {
    Duration::from_secs((now.0.as_second() - deleted_at.0.as_second()).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_deletion_counts_whole_seconds_and_never_goes_negative() {
        let t = |s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"));
        assert_eq!(since_deletion(&t(100), &t(130)), Duration::from_secs(30));
        assert_eq!(since_deletion(&t(100), &t(90)), Duration::ZERO);
    }

    fn owner(api_version: &str, kind: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "db".into(),
            uid: "u".into(),
            ..Default::default()
        }
    }

    #[test]
    fn statefulset_ownership() {
        assert!(owned_by_statefulset(&[owner("apps/v1", "StatefulSet")]));
        assert!(owned_by_statefulset(&[
            owner("v1", "Node"),
            owner("apps/v1", "StatefulSet")
        ]));
        assert!(!owned_by_statefulset(&[owner("apps/v1", "ReplicaSet")]));
        assert!(!owned_by_statefulset(&[owner(
            "example.com/v1",
            "StatefulSet"
        )]));
        assert!(!owned_by_statefulset(&[]));
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn only_statefulset_pods_of_sticky_pools_are_reserved() {
        assert_eq!(window(Some(S(600)), true), Some(S(600)));
        assert_eq!(window(Some(S(600)), false), None);
        assert_eq!(window(None, true), None);
    }

    #[test]
    fn hold_table() {
        let cooldown = S(30);
        let cases = [
            // (window, successor, hold)
            (None, Successor::None, S(30)),
            (None, Successor::SameNode, S(30)),
            (Some(S(600)), Successor::None, S(600)),
            (Some(S(600)), Successor::SameNode, S(600)),
            // The pod came back elsewhere: only the cooldown is left to wait.
            (Some(S(600)), Successor::OtherNode, S(30)),
            // A window shorter than the cooldown never shortens the cooldown.
            (Some(S(10)), Successor::None, S(30)),
        ];
        for (w, succ, want) in cases {
            assert_eq!(hold(cooldown, w, succ), want, "{w:?} {succ:?}");
        }
    }

    #[test]
    fn hand_over_table() {
        let w = Some(S(600));
        assert!(hands_over(w, S(0), true, true));
        // Within the cooldown too: the address goes back to the same identity.
        assert!(hands_over(w, S(5), true, true));
        assert!(!hands_over(w, S(600), true, true), "window over");
        assert!(!hands_over(w, S(5), false, true), "other node");
        assert!(!hands_over(w, S(5), true, false), "other pool");
        assert!(!hands_over(None, S(5), true, true), "not sticky");
    }
}
