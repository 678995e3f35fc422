//! What the operator keeps of a pod: the few fields it reads, instead of the Pod itself.
//!
//! A trimmed `Pod` still costs about 2.4 KB inline (its spec type alone is 1.5 KB), and
//! the operator holds every pod of the cluster. A record is about 100 bytes; the node
//! name and the label set, which many pods share, are interned.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashSet},
    hash::Hash,
    sync::Arc,
};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::{reflector::Lookup, watcher};

use crate::engine::sticky;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq)]
pub struct PodRecord {
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
    /// `spec.nodeName`: the node the pod is bound to.
    pub node: Option<Arc<str>>,
    pub labels: Arc<Labels>,
    pub host_network: bool,
    /// Has a deletion timestamp.
    pub deleting: bool,
    /// Phase Succeeded or Failed: the pod's network is no longer used.
    pub finished: bool,
    /// Owned by a StatefulSet: its address may be kept for its successor.
    pub stateful: bool,
}

impl PodRecord {
    /// The node a pod that needs a unit is bound to.
    pub fn bound_node(&self) -> Option<&str> {
        if self.host_network || self.deleting || self.finished {
            return None;
        }
        self.node.as_deref()
    }

    /// A reference for events about the pod.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.to_string()),
            name: Some(self.name.to_string()),
            uid: Some(self.uid.to_string()),
            ..Default::default()
        }
    }
}

impl Lookup for PodRecord {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
    }
    /// Not kept: the operator never writes a pod, so it needs no version of one.
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.uid))
    }
}

/// Shares equal values between records. Entries no record uses any more are dropped
/// whenever the table has doubled since the last such sweep.
struct Interner<T: ?Sized> {
    values: HashSet<Arc<T>>,
    swept_at: usize,
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    fn new() -> Self {
        Interner {
            values: HashSet::new(),
            swept_at: 64,
        }
    }

    fn get<Q>(&mut self, value: &Q, make: impl FnOnce() -> Arc<T>) -> Arc<T>
    where
        Arc<T>: std::borrow::Borrow<Q>,
        Q: ?Sized + Eq + Hash,
    {
        if let Some(v) = self.values.get(value) {
            return v.clone();
        }
        if self.values.len() >= 2 * self.swept_at {
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.swept_at = self.values.len().max(64);
        }
        let v = make();
        self.values.insert(v.clone());
        v
    }
}

/// Turns watched pods into records, interning what pods share. Owned by the pod watch
/// stream, the only writer of the pod cache.
pub struct PodRecorder {
    strings: Interner<str>,
    labels: Interner<Labels>,
}

impl Default for PodRecorder {
    fn default() -> Self {
        PodRecorder {
            strings: Interner::new(),
            labels: Interner::new(),
        }
    }
}

impl PodRecorder {
    fn intern(&mut self, s: &str) -> Arc<str> {
        self.strings.get(s, || Arc::from(s))
    }

    pub fn record(&mut self, pod: Pod) -> PodRecord {
        let meta = pod.metadata;
        let spec = pod.spec.unwrap_or_default();
        let labels = meta.labels.unwrap_or_default();
        let labels = self.labels.get(&labels, || Arc::new(labels.clone()));
        PodRecord {
            namespace: self.intern(meta.namespace.as_deref().unwrap_or_default()),
            name: meta.name.unwrap_or_default().into(),
            uid: meta.uid.unwrap_or_default().into(),
            node: spec.node_name.as_deref().map(|n| self.intern(n)),
            labels,
            host_network: spec.host_network == Some(true),
            deleting: meta.deletion_timestamp.is_some(),
            finished: matches!(
                pod.status.and_then(|s| s.phase).as_deref(),
                Some("Succeeded" | "Failed")
            ),
            stateful: sticky::owned_by_statefulset(
                meta.owner_references.as_deref().unwrap_or_default(),
            ),
        }
    }

    /// The same watch event, carrying records.
    pub fn event(&mut self, event: watcher::Event<Pod>) -> watcher::Event<PodRecord> {
        use watcher::Event::*;
        match event {
            Apply(p) => Apply(self.record(p)),
            Delete(p) => Delete(self.record(p)),
            Init => Init,
            InitApply(p) => InitApply(self.record(p)),
            InitDone => InitDone,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn keeps_what_allocation_reads() {
        let mut r = PodRecorder::default();
        let rec = r.record(pod(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1",
                         "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "s"}]},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running"},
        })));
        assert_eq!(rec.bound_node(), Some("n1"));
        assert_eq!(
            (&*rec.namespace, &*rec.name, &*rec.uid),
            ("shop", "web-0", "u1")
        );
        assert_eq!(rec.labels.get("app").map(String::as_str), Some("web"));
        assert!(rec.stateful);
        let oref = rec.object_ref();
        assert_eq!(
            (
                oref.kind.as_deref(),
                oref.name.as_deref(),
                oref.uid.as_deref()
            ),
            (Some("Pod"), Some("web-0"), Some("u1"))
        );
    }

    #[test]
    fn pods_without_a_unit_to_get_have_no_bound_node() {
        let mut r = PodRecorder::default();
        let cases = [
            (json!({"spec": {"containers": []}}), "unbound"),
            (
                json!({"spec": {"nodeName": "n1", "hostNetwork": true, "containers": []}}),
                "host network",
            ),
            (
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodeName": "n1", "containers": []}}),
                "deleting",
            ),
            (
                json!({"spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Succeeded"}}),
                "succeeded",
            ),
            (
                json!({"spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Failed"}}),
                "failed",
            ),
        ];
        for (mut v, why) in cases {
            v["metadata"]["name"] = json!("p");
            assert_eq!(r.record(pod(v)).bound_node(), None, "{why}");
        }
    }

    #[test]
    fn pods_share_node_names_and_label_sets() {
        let mut r = PodRecorder::default();
        let mut make = |name: &str, node: &str, app: &str| {
            r.record(pod(json!({
                "metadata": {"name": name, "namespace": "d", "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": []},
            })))
        };
        let (a, b, c) = (
            make("a", "n1", "web"),
            make("b", "n1", "web"),
            make("c", "n2", "db"),
        );
        let node = |p: &PodRecord| p.node.clone().expect("bound");
        assert!(Arc::ptr_eq(&node(&a), &node(&b)));
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(!Arc::ptr_eq(&a.labels, &c.labels));
        assert!(Arc::ptr_eq(&a.namespace, &c.namespace));
    }

    #[test]
    fn interned_values_no_record_uses_are_dropped() {
        let mut t: Interner<str> = Interner::new();
        let kept: Vec<Arc<str>> = (0..10)
            .map(|i| t.get(&*format!("kept-{i}"), || Arc::from(format!("kept-{i}"))))
            .collect();
        for i in 0..200 {
            t.get(&*format!("gone-{i}"), || Arc::from(format!("gone-{i}")));
        }
        // Swept when it reached 128: what survived is what records still hold, plus
        // what came after.
        assert!(t.values.len() < 100, "{}", t.values.len());
        for k in &kept {
            assert!(t.values.contains(k));
        }
    }
}
