//! ENIPool status from its inputs: counts summed over the nodes, each node's health of
//! the pool, whether it is being deleted, and the previous status (a condition keeps its
//! lastTransitionTime while its status stays the same). Pure: the time comes in.

use eni_crds::{AddressCounts, ENIPoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::inventory::PoolCounts;
use super::references::Problem;

/// Health of one pool on one node, from its last maintenance pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolHealth {
    pub subnet_exhausted: bool,
    pub throttled: bool,
    pub last_error: Option<String>,
}

pub struct StatusInput<'a> {
    /// Nodes holding ENIs of the pool.
    pub nodes: u32,
    pub counts: PoolCounts,
    pub health: &'a [PoolHealth],
    /// What the cloud says is wrong with the pool's subnets and security groups.
    pub problems: &'a [Problem],
    /// Nodes its nodeSelector matches.
    pub selected_nodes: u32,
    /// The pool has a deletionTimestamp: it drains.
    pub deleting: bool,
    pub generation: Option<i64>,
    pub previous: Option<&'a ENIPoolStatus>,
    pub now: Time,
}

pub fn pool_status(i: &StatusInput) -> ENIPoolStatus {
    let exhausted = i.health.iter().any(|h| h.subnet_exhausted);
    let throttled = i.health.iter().any(|h| h.throttled);
    let error = i.health.iter().find_map(|h| h.last_error.clone());
    let cond = |type_: &str, on: bool, reason: &str, message: String| {
        let status = if on { "True" } else { "False" };
        let since = i
            .previous
            .and_then(|p| {
                p.conditions
                    .iter()
                    .find(|c| c.type_ == type_ && c.status == status)
            })
            .map_or_else(|| i.now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: i.generation,
            last_transition_time: since,
        }
    };
    // What the user must fix first: references the cloud refuses, then errors of the
    // nodes' maintenance, then a selector that matches no node.
    let (ready, reason, message) = if let Some(first) = i.problems.first() {
        let all: Vec<&str> = i.problems.iter().map(|p| p.message.as_str()).collect();
        (false, first.reason, all.join("; "))
    } else if let Some(error) = error {
        (false, "Errors", error)
    } else if i.selected_nodes == 0 && !i.deleting {
        (
            false,
            "NoMatchingNodes",
            "no node matches spec.nodeSelector; the pool serves no pod until one does".into(),
        )
    } else {
        (true, "Converged", "warm targets met or being met".into())
    };
    let mut conditions = vec![
        cond("Ready", ready, reason, message),
        cond(
            "SubnetExhausted",
            exhausted,
            if exhausted {
                "NoFreeAddresses"
            } else {
                "AddressesAvailable"
            },
            if exhausted {
                "no subnet of the pool has free addresses; growth is paused until one does (add a subnet to spec.subnets)".into()
            } else {
                "subnets have free addresses".into()
            },
        ),
        cond(
            "Throttled",
            throttled,
            if throttled {
                "RequestLimitExceeded"
            } else {
                "NotThrottled"
            },
            if throttled {
                "the cloud is throttling this pool's calls".into()
            } else {
                "no throttling".into()
            },
        ),
    ];
    if i.deleting {
        let c = &i.counts;
        conditions.push(cond(
            "Deleting",
            true,
            if c.enis == 0 { "WaitingForCloud" } else { "Draining" },
            format!(
                "draining: {} ENIs left on {} nodes, {} units used and {} cooling by pods that keep them until they go; no new pod gets one",
                c.enis, i.nodes, c.used, c.cooling
            ),
        ));
    }
    ENIPoolStatus {
        nodes: i.nodes,
        enis: i.counts.enis,
        addresses: AddressCounts {
            total: i.counts.total,
            used: i.counts.used,
            warm: i.counts.warm,
            cooling: i.counts.cooling,
        },
        conditions,
        observed_generation: i.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"))
    }

    fn input<'a>(
        health: &'a [PoolHealth],
        previous: Option<&'a ENIPoolStatus>,
        now: i64,
    ) -> StatusInput<'a> {
        StatusInput {
            nodes: 2,
            counts: PoolCounts {
                enis: 3,
                total: 10,
                used: 4,
                warm: 5,
                cooling: 1,
            },
            health,
            problems: &[],
            selected_nodes: 2,
            deleting: false,
            generation: Some(7),
            previous,
            now: t(now),
        }
    }

    fn cond<'a>(s: &'a ENIPoolStatus, type_: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"))
    }

    #[test]
    fn counts_and_healthy_conditions() {
        let s = pool_status(&input(&[PoolHealth::default()], None, 100));
        assert_eq!((s.nodes, s.enis, s.observed_generation), (2, 3, Some(7)));
        assert_eq!(
            s.addresses,
            AddressCounts {
                total: 10,
                used: 4,
                warm: 5,
                cooling: 1
            }
        );
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "SubnetExhausted").status, "False");
        assert_eq!(cond(&s, "Throttled").reason, "NotThrottled");
        assert!(s.conditions.iter().all(|c| c.type_ != "Deleting"));
    }

    #[test]
    fn errors_exhaustion_throttling() {
        let health = [
            PoolHealth::default(),
            PoolHealth {
                subnet_exhausted: true,
                throttled: true,
                last_error: Some("boom".into()),
            },
        ];
        let s = pool_status(&input(&health, None, 100));
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.message.as_str()),
            ("False", "boom")
        );
        assert_eq!(cond(&s, "SubnetExhausted").reason, "NoFreeAddresses");
        assert_eq!(cond(&s, "Throttled").status, "True");
    }

    #[test]
    fn ready_names_what_to_fix_first() {
        let problems = [
            Problem {
                reason: "SubnetNotFound",
                message: "subnet subnet-9 does not exist".into(),
            },
            Problem {
                reason: "SecurityGroupNotFound",
                message: "security group sg-9 does not exist".into(),
            },
        ];
        let failing = [PoolHealth {
            last_error: Some("boom".into()),
            ..Default::default()
        }];
        let mut i = input(&failing, None, 100);
        i.problems = &problems;
        let s = pool_status(&i);
        let ready = cond(&s, "Ready");
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            (
                "False",
                "SubnetNotFound",
                "subnet subnet-9 does not exist; security group sg-9 does not exist"
            )
        );
        let mut i = input(&[], None, 100);
        i.selected_nodes = 0;
        let ready = pool_status(&i).conditions[0].clone();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NoMatchingNodes")
        );
        // A pool being deleted that selects no node any more is not waiting for one.
        i.deleting = true;
        assert_eq!(pool_status(&i).conditions[0].reason, "Converged");
    }

    #[test]
    fn transition_time_kept_while_status_stays() {
        let first = pool_status(&input(&[], None, 100));
        let same = pool_status(&input(&[], Some(&first), 200));
        assert_eq!(cond(&same, "Ready").last_transition_time, t(100));
        assert_eq!(same, first, "nothing changed: nothing to write");
        let failing = [PoolHealth {
            last_error: Some("x".into()),
            ..Default::default()
        }];
        let flipped = pool_status(&input(&failing, Some(&first), 300));
        assert_eq!(cond(&flipped, "Ready").last_transition_time, t(300));
        assert_eq!(cond(&flipped, "Throttled").last_transition_time, t(100));
    }

    #[test]
    fn deleting_shows_what_still_drains() {
        let mut i = input(&[], None, 100);
        i.deleting = true;
        let s = pool_status(&i);
        let d = cond(&s, "Deleting");
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "Draining"));
        assert!(
            d.message.contains("3 ENIs left on 2 nodes"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("4 units used and 1 cooling"),
            "{}",
            d.message
        );
        i.counts = PoolCounts::default();
        i.nodes = 0;
        assert_eq!(cond(&pool_status(&i), "Deleting").reason, "WaitingForCloud");
    }
}
