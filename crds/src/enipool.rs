use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mode::{Datapath, Mode};

/// A pool of ENIs and addresses for the nodes it selects.
///
/// A pool names the subnets and security groups its ENIs are created in, the mode pods
/// get their network in, and the warm targets that keep pod starts free of cloud calls.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eni-operator.io",
    version = "v1alpha1",
    kind = "ENIPool",
    plural = "enipools",
    shortname = "enip",
    category = "eni",
    status = "ENIPoolStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority","priority":1}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.nodes"}"#,
    printcolumn = r#"{"name":"ENIs","type":"integer","jsonPath":".status.enis"}"#,
    printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".status.addresses.used"}"#,
    printcolumn = r#"{"name":"Warm","type":"integer","jsonPath":".status.addresses.warm"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'SharedIP' || !has(self.datapath)").message("datapath only applies to mode SharedIP"))]
#[x_kube(validation = Rule::new("self.mode == 'SharedIP' || !self.prefixDelegation").message("prefixDelegation only applies to mode SharedIP"))]
#[x_kube(validation = Rule::new("self.mode == 'SharedIP' || !has(self.stickyIPForStatefulSets)").message("stickyIPForStatefulSets only applies to mode SharedIP"))]
#[x_kube(validation = Rule::new("self.mode == 'SharedIP' || !has(self.warm) || (!has(self.warm.minIPs) && !has(self.warm.warmIPs) && !has(self.warm.maxIPs))").message("warm.minIPs, warm.warmIPs and warm.maxIPs only apply to mode SharedIP; Exclusive and Trunk pools size with warmENIs and maxENIs"))]
#[x_kube(validation = Rule::new("self.mode != 'Trunk' || size(self.securityGroups) > 0").message("mode Trunk needs at least one security group for its member ENIs"))]
#[x_kube(validation = Rule::new("!has(self.datapath) || self.datapath != 'IPVlan' || !self.prefixDelegation").message("prefixDelegation is not supported with datapath IPVlan"))]
pub struct ENIPoolSpec {
    /// How pods of this pool get their address: SharedIP, Exclusive or Trunk. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("mode is immutable; create a new pool instead"))]
    pub mode: Mode,

    /// Nodes this pool serves. An empty selector selects every node.
    #[schemars(schema_with = "crate::selector::label_selector")]
    pub node_selector: LabelSelector,

    /// Pods this pool serves; when absent, every pod on a selected node (subject to
    /// namespaceSelector and priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::selector::label_selector")]
    pub pod_selector: Option<LabelSelector>,

    /// Namespaces whose pods this pool serves; when absent, all namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::selector::label_selector")]
    pub namespace_selector: Option<LabelSelector>,

    /// When several pools match a pod, the highest priority wins (ties: the name that
    /// sorts first).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: i32,

    /// Subnets new ENIs are created in.
    pub subnets: SubnetSelection,

    /// Security group ids for the pool's ENIs (member ENIs in mode Trunk).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(g, g.matches('^sg-[0-9a-z]{1,32}$'))").message("securityGroups must be ids like sg-0123abcd (EC2) or sg-bp1a2b3c4d (ECS)"))]
    #[schemars(length(max = 5), inner(length(max = 32)), extend("x-kubernetes-list-type" = "set"))]
    pub security_groups: Vec<String>,

    /// Warm-pool targets: how much free capacity each node keeps ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmTargets>,

    /// How long a released address rests before another pod may get it, so that
    /// connections to the old pod (conntrack entries, SYN retries) die first.
    #[serde(default = "default_ip_cooldown", rename = "ipCooldown")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]{1,5}(ms|s|m|h))+$') && duration(self) <= duration('1h')").message("ipCooldown must be a duration such as 30s, 2m or 1h, at most 1h"))]
    #[schemars(length(max = 16))]
    pub ip_cooldown: String,

    /// Assign /28 prefixes instead of single addresses (SharedIP only): 16 addresses per
    /// slot, far fewer cloud calls.
    #[serde(default)]
    pub prefix_delegation: bool,

    /// SharedIP datapath; defaults to VethPolicyRouting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath: Option<Datapath>,

    /// Give a StatefulSet pod the address its predecessor of the same name had
    /// (SharedIP only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "stickyIPForStatefulSets"
    )]
    pub sticky_ip_for_stateful_sets: Option<StickyIPs>,

    /// Extra tags put on every cloud resource created for this pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40), inner(length(max = 256)))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('eni-operator.io/'))").message("tags must not use the reserved prefix eni-operator.io/"))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 128 && !k.startsWith('aws:'))").message("tag keys are at most 128 characters and must not start with aws: (reserved by AWS)"))]
    pub tags: BTreeMap<String, String>,
}

fn default_ip_cooldown() -> String {
    "30s".into()
}

/// Which subnets ENIs are created in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.ids) > 0 || size(self.tags) > 0").message("at least one subnet is required: give subnets.ids or subnets.tags"))]
pub struct SubnetSelection {
    /// Subnet ids, e.g. subnet-0a1b2c3d.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^(subnet-[0-9a-f]{1,17}|vsw-[0-9a-z]{1,32})$'))").message("subnets.ids must be subnet ids like subnet-0a1b2c3d (EC2) or vSwitch ids like vsw-bp1a2b3c4d (ECS)"))]
    #[schemars(length(max = 16), inner(length(max = 32)), extend("x-kubernetes-list-type" = "set"))]
    pub ids: Vec<String>,
    /// Select subnets carrying all of these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, size(k) >= 1 && size(k) <= 128)").message("subnets.tags keys are 1 to 128 characters"))]
    #[schemars(extend("maxProperties" = 10), inner(length(max = 256)))]
    pub tags: BTreeMap<String, String>,
    /// MostFree picks the subnet with the most free addresses; Ordered takes them in the
    /// order given and moves on when one is exhausted.
    #[serde(default)]
    pub policy: SubnetPolicy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SubnetPolicy {
    #[default]
    MostFree,
    Ordered,
}

/// Warm-pool targets per node. Address targets apply to SharedIP pools; ENI targets to
/// all modes (ready ENIs in Exclusive, ready member ENIs in Trunk).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.minIPs) || !has(self.maxIPs) || self.minIPs <= self.maxIPs").message("minIPs must not exceed maxIPs"))]
#[x_kube(validation = Rule::new("!has(self.warmIPs) || !has(self.maxIPs) || self.warmIPs <= self.maxIPs").message("warmIPs must not exceed maxIPs"))]
#[x_kube(validation = Rule::new("!has(self.warmENIs) || !has(self.maxENIs) || self.warmENIs <= self.maxENIs").message("warmENIs must not exceed maxENIs"))]
pub struct WarmTargets {
    /// Addresses a node holds at least, used or not.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "minIPs")]
    #[schemars(range(min = 0, max = 5000))]
    pub min_ips: Option<u32>,
    /// Free addresses a node keeps ready for new pods (default 2 for SharedIP).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "warmIPs")]
    #[schemars(range(min = 0, max = 5000))]
    pub warm_ips: Option<u32>,
    /// Addresses a node holds at most, used or not.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "maxIPs")]
    #[schemars(range(min = 1, max = 5000))]
    pub max_ips: Option<u32>,
    /// Free ENIs (Exclusive) or member ENIs (Trunk) a node keeps ready.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "warmENIs")]
    #[schemars(range(min = 0, max = 500))]
    pub warm_enis: Option<u32>,
    /// ENIs (or member ENIs) a node holds at most; the instance type's limit applies too.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "maxENIs")]
    #[schemars(range(min = 1, max = 500))]
    pub max_enis: Option<u32>,
    /// How long excess warm capacity stays before it is released to the cloud.
    #[serde(default = "default_release_delay", rename = "releaseDelay")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]{1,5}(ms|s|m|h))+$') && duration(self) <= duration('24h')").message("releaseDelay must be a duration such as 30s, 5m or 1h, at most 24h"))]
    #[schemars(length(max = 16))]
    pub release_delay: String,
}

fn default_release_delay() -> String {
    "5m".into()
}

/// Sticky addresses for StatefulSet pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StickyIPs {
    /// How long an address waits for the pod of the same name to come back before it
    /// returns to the warm pool.
    #[x_kube(validation = Rule::new("self.matches('^([0-9]{1,5}(ms|s|m|h))+$') && duration(self) <= duration('168h')").message("releaseAfter must be a duration such as 10m or 1h, at most 168h (a week)"))]
    #[schemars(length(max = 16))]
    pub release_after: String,
}

/// Observed state of the pool, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ENIPoolStatus {
    /// Nodes the pool serves.
    #[serde(default)]
    pub nodes: u32,
    /// ENIs held by the pool across its nodes (trunk and member ENIs in mode Trunk).
    #[serde(default, rename = "enis")]
    pub enis: u32,
    /// Address (or member ENI) counts across the pool's nodes.
    #[serde(default)]
    pub addresses: AddressCounts,
    /// Ready, SubnetExhausted, Throttled, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AddressCounts {
    pub total: u32,
    pub used: u32,
    pub warm: u32,
    pub cooling: u32,
}
