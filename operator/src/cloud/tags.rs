//! Ownership tags. Every resource the operator creates carries them, and the garbage
//! collector only ever considers resources with this cluster's tag, so two clusters (or
//! other tools) sharing a VPC never touch each other's interfaces.

use super::types::{Ownership, Tags};

/// Name of the cluster that owns the resource.
pub const CLUSTER: &str = "eni-operator.io/cluster";
/// ENIPool the resource was created for.
pub const POOL: &str = "eni-operator.io/pool";
/// Kubernetes node the resource serves.
pub const NODE: &str = "eni-operator.io/node";
/// Cloud instance the resource serves.
pub const INSTANCE: &str = "eni-operator.io/instance";
/// The full tag set of a new resource: the caller's extra tags, then the ownership tags
/// (which win, so a pool's `tags` can never forge ownership).
///
/// Deliberately no creation-time tag: the tags are part of a create request, and a
/// client token repeated with different parameters is refused
/// (`IdempotentParameterMismatch`), so every tag must be a function of the request.
pub fn ownership_tags(cluster: &str, owner: &Ownership, extra: &Tags) -> Tags {
    let mut tags = extra.clone();
    tags.insert(CLUSTER.to_owned(), cluster.to_owned());
    tags.insert(POOL.to_owned(), owner.pool.clone());
    for (key, value) in [(NODE, &owner.node), (INSTANCE, &owner.instance_id)] {
        match value {
            Some(v) => tags.insert(key.to_owned(), v.clone()),
            None => tags.remove(key),
        };
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_tags_override_extra_tags() {
        let owner = Ownership {
            pool: "web".into(),
            node: Some("node-1".into()),
            instance_id: None,
        };
        let extra = Tags::from([
            (CLUSTER.to_owned(), "someone-else".to_owned()),
            (INSTANCE.to_owned(), "i-forged".to_owned()),
            ("team".to_owned(), "payments".to_owned()),
        ]);
        let tags = ownership_tags("prod", &owner, &extra);
        assert_eq!(tags[CLUSTER], "prod");
        assert_eq!(tags[POOL], "web");
        assert_eq!(tags[NODE], "node-1");
        assert!(!tags.contains_key(INSTANCE));
        assert_eq!(tags["team"], "payments");
        // The same request always yields the same tags (client-token idempotency).
        assert_eq!(tags, ownership_tags("prod", &owner, &extra));
    }
}
