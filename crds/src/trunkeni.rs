use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The trunk ENI of one trunk-mode node and its member ENIs. Named after the node;
/// written by the operator.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eni-operator.io",
    version = "v1alpha1",
    kind = "TrunkENI",
    plural = "trunkenis",
    shortname = "trunk",
    category = "eni",
    status = "TrunkENIStatus",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceID"}"#,
    printcolumn = r#"{"name":"Trunk","type":"string","jsonPath":".status.trunkENIID"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.memberCount"}"#,
    printcolumn = r#"{"name":"Capacity","type":"integer","jsonPath":".status.memberCapacity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.nodeName == oldSelf.nodeName && self.instanceID == oldSelf.instanceID").message("nodeName and instanceID are immutable"))]
pub struct TrunkENISpec {
    /// The node whose trunk this is.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// The node's cloud instance.
    #[serde(rename = "instanceID")]
    #[x_kube(validation = Rule::new("self.matches('^i-[0-9a-z]{1,32}$')").message("instanceID must be an instance id like i-0123abcd (EC2) or i-bp1a2b3c4d (ECS)"))]
    #[schemars(length(max = 32))]
    pub instance_id: String,
    /// The ENIPool (mode Trunk) that manages this node.
    #[schemars(length(min = 1, max = 253))]
    pub pool: String,
}

/// Observed state of the trunk, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkENIStatus {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "trunkENIID"
    )]
    pub trunk_eni_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "trunkMAC")]
    pub trunk_mac: Option<String>,
    /// Member ENIs the instance type allows on this trunk.
    #[serde(default)]
    pub member_capacity: u32,
    #[serde(default)]
    pub member_count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<TrunkMember>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One member (branch) ENI of a trunk.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkMember {
    #[serde(rename = "eniID")]
    pub eni_id: String,
    #[serde(rename = "vlanID")]
    pub vlan_id: u16,
    pub mac: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    pub state: MemberState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemberState {
    /// Associated with the trunk, ready for a pod.
    Warm,
    /// Serving a pod.
    InUse,
    /// The pod is gone; cooling down or being deleted.
    Releasing,
}

/// The pod a member ENI serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}
