//! Which subnet a new ENI of a pool goes to: the pool's subnets in the instance's zone,
//! best first by the pool's policy, without those that are full or known exhausted.

use std::collections::BTreeSet;

use eni_crds::SubnetPolicy;

use crate::cloud::Subnet;

use super::settings::PoolSettings;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RankError {
    #[error("pool selects no subnet in the zone")]
    NoSubnet,
    #[error("no subnet of the pool in the zone has free addresses")]
    Exhausted,
}

/// `subnets` (what the pool's selector found) ranked for a new ENI in zone `az`.
pub fn rank(
    s: &PoolSettings,
    az: &str,
    subnets: Vec<Subnet>,
    exhausted: &BTreeSet<String>,
) -> Result<Vec<Subnet>, RankError> {
    let mut subnets: Vec<Subnet> = subnets
        .into_iter()
        .filter(|sn| sn.availability_zone == az)
        .collect();
    if subnets.is_empty() {
        return Err(RankError::NoSubnet);
    }
    match s.subnet_policy {
        SubnetPolicy::MostFree => subnets.sort_by_key(|sn| std::cmp::Reverse(sn.available_ips)),
        SubnetPolicy::Ordered => subnets.sort_by_key(|sn| {
            s.subnet_ids
                .iter()
                .position(|id| *id == sn.id)
                .unwrap_or(usize::MAX)
        }),
    }
    subnets.retain(|sn| sn.available_ips > 0 && !exhausted.contains(&sn.id));
    if subnets.is_empty() {
        return Err(RankError::Exhausted);
    }
    Ok(subnets)
}

#[cfg(test)]
mod tests {
    use eni_crds::Mode;

    use super::*;
    use crate::engine::testkit::settings;

    fn subnet(id: &str, az: &str, free: u32) -> Subnet {
        Subnet {
            id: id.into(),
            vpc_id: "vpc-1".into(),
            cidr: "10.0.0.0/24".parse().expect("cidr"),
            availability_zone: az.into(),
            available_ips: free,
            tags: Default::default(),
        }
    }

    /// (case, pool, zone, exhausted subnets, ranking wanted)
    type Row<'a> = (
        &'a str,
        &'a PoolSettings,
        &'a str,
        &'a BTreeSet<String>,
        Result<Vec<&'a str>, RankError>,
    );

    fn ids(r: Result<Vec<Subnet>, RankError>) -> Result<Vec<String>, RankError> {
        r.map(|v| v.into_iter().map(|s| s.id).collect())
    }

    #[test]
    fn table() {
        let none = BTreeSet::new();
        let all = || {
            vec![
                subnet("s-a", "az1", 10),
                subnet("s-b", "az1", 50),
                subnet("s-c", "az2", 99),
                subnet("s-d", "az1", 0),
            ]
        };
        let most_free = settings(Mode::SharedIp);
        let ordered = PoolSettings {
            subnet_policy: SubnetPolicy::Ordered,
            subnet_ids: vec!["s-d".into(), "s-a".into(), "s-b".into()],
            ..settings(Mode::SharedIp)
        };
        let exhausted_b = BTreeSet::from(["s-b".to_owned()]);
        let exhausted_ab = BTreeSet::from(["s-a".to_owned(), "s-b".to_owned()]);
        let rows: Vec<Row> = vec![
            (
                "most free first, other zones and full subnets out",
                &most_free,
                "az1",
                &none,
                Ok(vec!["s-b", "s-a"]),
            ),
            (
                "ordered by the pool's list",
                &ordered,
                "az1",
                &none,
                Ok(vec!["s-a", "s-b"]),
            ),
            (
                "known exhausted skipped",
                &most_free,
                "az1",
                &exhausted_b,
                Ok(vec!["s-a"]),
            ),
            (
                "all exhausted",
                &most_free,
                "az1",
                &exhausted_ab,
                Err(RankError::Exhausted),
            ),
            (
                "no subnet in the zone",
                &most_free,
                "az9",
                &none,
                Err(RankError::NoSubnet),
            ),
        ];
        for (name, s, az, exhausted, want) in rows {
            let want = want.map(|v| v.into_iter().map(str::to_owned).collect());
            assert_eq!(ids(rank(s, az, all(), exhausted)), want, "{name}");
        }
    }
}
