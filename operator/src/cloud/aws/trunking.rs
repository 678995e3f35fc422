//! Branch interfaces per trunk. EC2's DescribeInstanceTypes does not report ENI trunking,
//! so the figures come from the table AWS publishes for "Security groups for Pods"
//! (aws/amazon-vpc-resource-controller-k8s, pkg/aws/vpc/limits.go: `IsTrunkingCompatible`,
//! `BranchInterface`). Types missing here count as not trunking-capable unless the
//! operator's settings name them.

use std::collections::BTreeMap;

/// (instance type, branch interfaces per trunk) for the trunking-capable Nitro types.
const PUBLISHED: &[(&str, u32)] = &[
    ("c5.large", 9),
    ("c5.xlarge", 18),
    ("c5.2xlarge", 38),
    ("c5.4xlarge", 54),
    ("c5.9xlarge", 54),
    ("c6i.large", 9),
    ("c6i.xlarge", 18),
    ("c6i.2xlarge", 38),
    ("c6i.4xlarge", 54),
    ("m5.large", 9),
    ("m5.xlarge", 18),
    ("m5.2xlarge", 38),
    ("m5.4xlarge", 54),
    ("m5.8xlarge", 54),
    ("m6i.large", 9),
    ("m6i.xlarge", 18),
    ("m6i.2xlarge", 38),
    ("m6i.4xlarge", 54),
    ("r5.large", 9),
    ("r5.xlarge", 18),
    ("r5.2xlarge", 38),
    ("r5.4xlarge", 54),
    ("r6i.large", 9),
    ("r6i.xlarge", 18),
    ("r6i.2xlarge", 38),
    ("r6i.4xlarge", 54),
];

/// Branch interfaces per trunk for `instance_type`, `None` without trunking. Entries in
/// `overrides` win over the published table (new types, or a value of 0 to opt out).
pub(crate) fn branch_limit(instance_type: &str, overrides: &BTreeMap<String, u32>) -> Option<u32> {
    if let Some(&n) = overrides.get(instance_type) {
        return (n > 0).then_some(n);
    }
    PUBLISHED
        .iter()
        .find(|(name, _)| *name == instance_type)
        .map(|&(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_and_overridden_limits() {
        let none = BTreeMap::new();
        assert_eq!(branch_limit("m5.large", &none), Some(9));
        assert_eq!(branch_limit("m5.4xlarge", &none), Some(54));
        // No t-family type supports trunking.
        assert_eq!(branch_limit("t3.medium", &none), None);
        let overrides = BTreeMap::from([("m7i.large".to_owned(), 9), ("m5.large".to_owned(), 0)]);
        assert_eq!(branch_limit("m7i.large", &overrides), Some(9));
        assert_eq!(branch_limit("m5.large", &overrides), None);
    }
}
