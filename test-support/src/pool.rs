//! ENIPool fixtures, typed: one builder for every test, the demo and the benchmark.

use std::collections::BTreeMap;

use eni_crds::{ENIPool, ENIPoolSpec, Mode, StickyIPs, SubnetPolicy, SubnetSelection, WarmTargets};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Tag that marks vpc-sim's layout subnets meant for pods.
pub const POD_SUBNET_TAG: (&str, &str) = ("eni-operator.io/pods", "true");

/// An ENIPool being built.
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    pool: ENIPool,
}

/// Pool `name` of `mode` with the API's defaults: every node, the subnets tagged
/// `eni-operator.io/pods=true`, no security groups, no warm targets, `ipCooldown` 30s.
pub fn pool(name: &str, mode: Mode) -> PoolBuilder {
    PoolBuilder {
        pool: ENIPool::new(
            name,
            ENIPoolSpec {
                mode,
                node_selector: LabelSelector::default(),
                pod_selector: None,
                namespace_selector: None,
                priority: 0,
                subnets: SubnetSelection {
                    tags: BTreeMap::from([(
                        POD_SUBNET_TAG.0.to_owned(),
                        POD_SUBNET_TAG.1.to_owned(),
                    )]),
                    ..SubnetSelection::default()
                },
                security_groups: Vec::new(),
                warm: None,
                ip_cooldown: "30s".into(),
                prefix_delegation: false,
                datapath: None,
                sticky_ip_for_stateful_sets: None,
                tags: BTreeMap::new(),
            },
        ),
    }
}

impl PoolBuilder {
    /// Selects the nodes labelled `key=value`.
    pub fn nodes(mut self, key: &str, value: &str) -> Self {
        self.pool.spec.node_selector = selector(key, value);
        self
    }

    /// Serves only pods labelled `key=value`.
    pub fn pods(mut self, key: &str, value: &str) -> Self {
        self.pool.spec.pod_selector = Some(selector(key, value));
        self
    }

    /// Creates ENIs in these subnets (by id) instead of the tagged ones.
    pub fn subnet_ids(mut self, ids: &[&str], policy: SubnetPolicy) -> Self {
        self.pool.spec.subnets = SubnetSelection {
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            tags: BTreeMap::new(),
            policy,
        };
        self
    }

    pub fn security_groups(mut self, ids: &[&str]) -> Self {
        self.pool.spec.security_groups = ids.iter().map(|id| (*id).to_owned()).collect();
        self
    }

    pub fn ip_cooldown(mut self, duration: &str) -> Self {
        self.pool.spec.ip_cooldown = duration.into();
        self
    }

    pub fn min_ips(mut self, n: u32) -> Self {
        self.warm().min_ips = Some(n);
        self
    }

    pub fn warm_ips(mut self, n: u32) -> Self {
        self.warm().warm_ips = Some(n);
        self
    }

    pub fn warm_enis(mut self, n: u32) -> Self {
        self.warm().warm_enis = Some(n);
        self
    }

    /// At most `n` ENIs (Exclusive) or member ENIs (Trunk) per node.
    pub fn max_enis(mut self, n: u32) -> Self {
        self.warm().max_enis = Some(n);
        self
    }

    pub fn release_delay(mut self, duration: &str) -> Self {
        self.warm().release_delay = duration.into();
        self
    }

    /// StatefulSet pods get their predecessor's address back within `release_after`.
    pub fn sticky(mut self, release_after: &str) -> Self {
        self.pool.spec.sticky_ip_for_stateful_sets = Some(StickyIPs {
            release_after: release_after.into(),
        });
        self
    }

    pub fn build(self) -> ENIPool {
        self.pool
    }

    /// The manifest, for `kubectl`-style server-side apply.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.pool).expect("an ENIPool serialises")
    }

    /// Warm targets, created with the API's default release delay on first use.
    fn warm(&mut self) -> &mut WarmTargets {
        self.pool.spec.warm.get_or_insert_with(|| WarmTargets {
            release_delay: "5m".into(),
            ..WarmTargets::default()
        })
    }
}

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        match_expressions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_same(a: &ENIPool, b: &ENIPool) {
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.spec, b.spec);
    }

    #[test]
    fn defaults_match_what_the_api_server_fills_in() {
        let built = pool("p", Mode::SharedIp).build();
        let parsed: ENIPool = serde_yaml::from_str(
            "apiVersion: eni-operator.io/v1alpha1\nkind: ENIPool\nmetadata: {name: p}\nspec:\n  mode: SharedIP\n  nodeSelector: {}\n  subnets: {tags: {eni-operator.io/pods: \"true\"}}\n",
        )
        .unwrap();
        assert_same(&built, &parsed);
    }

    #[test]
    fn options_land_where_the_api_reads_them() {
        let built = pool("web", Mode::Trunk)
            .nodes("pool", "trunk")
            .pods("app", "web")
            .security_groups(&["sg-1"])
            .ip_cooldown("2s")
            .warm_enis(1)
            .build();
        let parsed: ENIPool = serde_yaml::from_str(
            "apiVersion: eni-operator.io/v1alpha1\nkind: ENIPool\nmetadata: {name: web}\nspec:\n  mode: Trunk\n  nodeSelector: {matchLabels: {pool: trunk}}\n  podSelector: {matchLabels: {app: web}}\n  subnets: {tags: {eni-operator.io/pods: \"true\"}}\n  securityGroups: [sg-1]\n  ipCooldown: 2s\n  warm: {warmENIs: 1}\n",
        )
        .unwrap();
        assert_same(&built, &parsed);
        let shared = pool("p", Mode::SharedIp)
            .subnet_ids(&["subnet-1"], SubnetPolicy::Ordered)
            .min_ips(4)
            .warm_ips(2)
            .release_delay("1h")
            .sticky("20s")
            .build();
        let parsed: ENIPool = serde_yaml::from_str(
            "apiVersion: eni-operator.io/v1alpha1\nkind: ENIPool\nmetadata: {name: p}\nspec:\n  mode: SharedIP\n  nodeSelector: {}\n  subnets: {ids: [subnet-1], policy: Ordered}\n  warm: {minIPs: 4, warmIPs: 2, releaseDelay: 1h}\n  stickyIPForStatefulSets: {releaseAfter: 20s}\n",
        )
        .unwrap();
        assert_same(&shared, &parsed);
        let round: ENIPool = serde_yaml::from_str(&pool("p", Mode::Exclusive).yaml()).unwrap();
        assert_same(&round, &pool("p", Mode::Exclusive).build());
    }
}
