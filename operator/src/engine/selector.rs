//! Label selectors and the choice of a pod's pool.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::settings::PoolSettings;

pub type Labels = BTreeMap<String, String>;

/// Kubernetes label-selector semantics: every matchLabels pair and every expression must
/// hold; an empty selector matches everything. Unknown operators match nothing.
pub fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let pairs = selector.match_labels.iter().flatten();
    let pairs_ok = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let exprs = selector.match_expressions.iter().flatten();
    pairs_ok
        && exprs.into_iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// What a pool needs to know to decide whether it serves a pod.
pub struct Candidate<'a> {
    pub settings: &'a PoolSettings,
    pub node_selector: &'a LabelSelector,
    pub pod_selector: Option<&'a LabelSelector>,
    pub namespace_selector: Option<&'a LabelSelector>,
}

/// The pool for a pod: the node must match the pool's nodeSelector, the pod and its
/// namespace the optional selectors; the highest priority wins, ties go to the name that
/// sorts first (so every operator replica picks the same pool).
pub fn choose<'a>(
    candidates: &'a [Candidate<'a>],
    node: &Labels,
    pod: &Labels,
    namespace: &Labels,
) -> Option<&'a PoolSettings> {
    candidates
        .iter()
        .filter(|c| {
            matches(c.node_selector, node)
                && c.pod_selector.is_none_or(|s| matches(s, pod))
                && c.namespace_selector.is_none_or(|s| matches(s, namespace))
        })
        .map(|c| c.settings)
        .min_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn selector_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(matches(&LabelSelector::default(), &l));
        let ml = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: None,
        };
        assert!(matches(&ml, &l));
        assert!(!matches(&ml, &labels(&[("app", "db")])));
        assert!(matches(&expr("app", "In", &["web", "api"]), &l));
        assert!(!matches(&expr("app", "In", &["api"]), &l));
        assert!(matches(&expr("app", "NotIn", &["api"]), &l));
        assert!(matches(&expr("zone", "NotIn", &["a"]), &l));
        assert!(matches(&expr("tier", "Exists", &[]), &l));
        assert!(!matches(&expr("tier", "DoesNotExist", &[]), &l));
        assert!(!matches(&expr("tier", "Gt", &["1"]), &l));
    }

    fn settings(name: &str, priority: i32) -> PoolSettings {
        let pool: eni_crds::ENIPool = serde_yaml::from_str(&format!(
            "metadata: {{name: {name}}}\nspec: {{mode: SharedIP, priority: {priority}, nodeSelector: {{}}, subnets: {{ids: [subnet-1]}}}}"
        ))
        .expect("pool");
        PoolSettings::from_pool(&pool).expect("settings")
    }

    #[test]
    fn choice_by_selectors_then_priority_then_name() {
        let (a, b, c) = (settings("a", 0), settings("b", 10), settings("c", 10));
        let shared_nodes = LabelSelector {
            match_labels: Some(labels(&[("mode", "shared")])),
            match_expressions: None,
        };
        let payments = LabelSelector {
            match_labels: Some(labels(&[("app", "payments")])),
            match_expressions: None,
        };
        let all = LabelSelector::default();
        let cands = [
            Candidate {
                settings: &a,
                node_selector: &shared_nodes,
                pod_selector: None,
                namespace_selector: None,
            },
            Candidate {
                settings: &b,
                node_selector: &all,
                pod_selector: Some(&payments),
                namespace_selector: None,
            },
            Candidate {
                settings: &c,
                node_selector: &all,
                pod_selector: Some(&payments),
                namespace_selector: Some(&shared_nodes),
            },
        ];
        let node = labels(&[("mode", "shared")]);
        let none = Labels::new();
        let pay = labels(&[("app", "payments")]);
        assert_eq!(
            choose(&cands, &node, &none, &none).map(|s| s.name.as_str()),
            Some("a")
        );
        // b and c tie on priority 10; c also needs the namespace label.
        assert_eq!(
            choose(&cands, &node, &pay, &none).map(|s| s.name.as_str()),
            Some("b")
        );
        assert_eq!(
            choose(&cands, &node, &pay, &node).map(|s| s.name.as_str()),
            Some("b")
        );
        assert_eq!(
            choose(&cands, &none, &none, &none).map(|s| s.name.as_str()),
            None
        );
    }
}
