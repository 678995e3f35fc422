//! What only the cloud can judge about a pool: do its subnets and security groups exist,
//! and are they in the VPC of the cluster's nodes. The schema checks their form; this
//! checks what they refer to. Pure: the cloud's answers come in.

use std::collections::BTreeSet;

/// What the cloud said about one referenced resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// It exists, in this VPC.
    In(String),
    Missing,
}

/// The cloud's answers for a pool's references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    /// `subnets.ids`, each with what the cloud said.
    pub subnets: Vec<(String, Found)>,
    /// How many subnets carry all of `subnets.tags`, when the pool selects by tag.
    pub tagged: Option<usize>,
    pub groups: Vec<(String, Found)>,
}

/// Something wrong with a pool's references: a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// The problems in `lookup`, given the VPCs the cluster's nodes are in (empty: no node
/// is known yet, so no VPC is judged).
pub fn judge(lookup: &Lookup, vpcs: &BTreeSet<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let nodes_in = || vpcs.iter().cloned().collect::<Vec<_>>().join(", ");
    for (what, items, missing, elsewhere) in [
        (
            "subnet",
            &lookup.subnets,
            "SubnetNotFound",
            "SubnetInOtherVPC",
        ),
        (
            "security group",
            &lookup.groups,
            "SecurityGroupNotFound",
            "SecurityGroupInOtherVPC",
        ),
    ] {
        for (id, found) in items {
            match found {
                Found::Missing => problems.push(Problem {
                    reason: missing,
                    message: format!("{what} {id} does not exist (or this account cannot see it)"),
                }),
                Found::In(vpc) if !vpcs.is_empty() && !vpcs.contains(vpc) => {
                    problems.push(Problem {
                        reason: elsewhere,
                        message: format!(
                            "{what} {id} is in {vpc}, but the cluster's nodes are in {}",
                            nodes_in()
                        ),
                    })
                }
                Found::In(_) => {}
            }
        }
    }
    if lookup.tagged == Some(0) {
        problems.push(Problem {
            reason: "NoSubnetMatchesTags",
            message: "no subnet carries all of spec.subnets.tags".into(),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpcs(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table() {
        let in_vpc = |id: &str, vpc: &str| (id.to_string(), Found::In(vpc.into()));
        let missing = |id: &str| (id.to_string(), Found::Missing);
        let cases: Vec<(&str, Lookup, BTreeSet<String>, Vec<&str>)> = vec![
            (
                "all found in the nodes' VPC",
                Lookup {
                    subnets: vec![in_vpc("subnet-1", "vpc-a")],
                    tagged: None,
                    groups: vec![in_vpc("sg-1", "vpc-a")],
                },
                vpcs(&["vpc-a"]),
                vec![],
            ),
            (
                "a missing subnet and a missing group",
                Lookup {
                    subnets: vec![in_vpc("subnet-1", "vpc-a"), missing("subnet-2")],
                    tagged: None,
                    groups: vec![missing("sg-9")],
                },
                vpcs(&["vpc-a"]),
                vec!["SubnetNotFound", "SecurityGroupNotFound"],
            ),
            (
                "both in another VPC",
                Lookup {
                    subnets: vec![in_vpc("subnet-1", "vpc-b")],
                    tagged: None,
                    groups: vec![in_vpc("sg-1", "vpc-b")],
                },
                vpcs(&["vpc-a"]),
                vec!["SubnetInOtherVPC", "SecurityGroupInOtherVPC"],
            ),
            (
                "no node yet: the VPC is not judged, existence is",
                Lookup {
                    subnets: vec![in_vpc("subnet-1", "vpc-b"), missing("subnet-2")],
                    tagged: None,
                    groups: vec![],
                },
                vpcs(&[]),
                vec!["SubnetNotFound"],
            ),
            (
                "tags that select no subnet",
                Lookup {
                    subnets: vec![],
                    tagged: Some(0),
                    groups: vec![],
                },
                vpcs(&["vpc-a"]),
                vec!["NoSubnetMatchesTags"],
            ),
            (
                "tags that select some",
                Lookup {
                    subnets: vec![],
                    tagged: Some(2),
                    groups: vec![],
                },
                vpcs(&["vpc-a"]),
                vec![],
            ),
        ];
        for (name, lookup, vpcs, want) in cases {
            let got: Vec<&str> = judge(&lookup, &vpcs).iter().map(|p| p.reason).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn messages_name_the_resource_and_the_vpcs() {
        let lookup = Lookup {
            subnets: vec![("subnet-1".into(), Found::In("vpc-b".into()))],
            tagged: None,
            groups: vec![("sg-9".into(), Found::Missing)],
        };
        let problems = judge(&lookup, &vpcs(&["vpc-a"]));
        assert_eq!(
            problems[0].message,
            "subnet subnet-1 is in vpc-b, but the cluster's nodes are in vpc-a"
        );
        assert_eq!(
            problems[1].message,
            "security group sg-9 does not exist (or this account cannot see it)"
        );
    }
}
