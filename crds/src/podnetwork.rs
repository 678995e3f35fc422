use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mac::Mac;
use crate::mode::{Datapath, Mode};

/// The network of one pod: same namespace and name as the pod, owned by it.
///
/// The operator writes the spec (the allocation) when the pod is bound to a node; the
/// node agent wires the pod from it and writes the status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eni-operator.io",
    version = "v1alpha1",
    kind = "PodNetwork",
    plural = "podnetworks",
    shortname = "pn",
    category = "eni",
    namespaced,
    status = "PodNetworkStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.allocation.address"}"#,
    printcolumn = r#"{"name":"ENI","type":"string","jsonPath":".spec.allocation.eniID"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.pool","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Trunk' || has(self.allocation.vlanID)").message("a Trunk allocation needs allocation.vlanID"))]
#[x_kube(validation = Rule::new("self.mode == 'SharedIP' || !has(self.allocation.datapath)").message("allocation.datapath only applies to mode SharedIP"))]
pub struct PodNetworkSpec {
    /// UID of the pod this network belongs to. Immutable: a new pod of the same name
    /// gets a new PodNetwork.
    #[serde(rename = "podUID")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("podUID is immutable"))]
    #[schemars(length(min = 1, max = 64))]
    pub pod_uid: String,
    /// Node the pod is bound to; only that node's agent wires it.
    #[x_kube(validation = Rule::new("self == oldSelf").message("nodeName is immutable"))]
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// ENIPool the allocation came from.
    #[schemars(length(min = 1, max = 253))]
    pub pool: String,
    /// Mode of the pool at allocation time.
    pub mode: Mode,
    /// What the pod gets.
    pub allocation: Allocation,
}

/// One pod's share of the VPC.
///
/// Addresses, the CIDR and MACs are typed here and travel as the strings the schema
/// describes, so a malformed value fails when the object is read, once, and nothing
/// downstream parses them again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The pod's IPv4 address.
    #[x_kube(validation = Rule::new("isIP(self) && ip(self).family() == 4").message("address must be an IPv4 address"))]
    #[schemars(with = "String", length(max = 64))]
    pub address: Ipv4Addr,
    /// Prefix length the pod's address is configured with (32 for SharedIP).
    #[schemars(range(min = 1, max = 32))]
    pub prefix_length: u8,
    /// The subnet's gateway (the VPC router).
    #[x_kube(validation = Rule::new("isIP(self)").message("gateway must be an IP address"))]
    #[schemars(with = "String", length(max = 64))]
    pub gateway: Ipv4Addr,
    /// CIDR of the subnet the address is in.
    #[serde(rename = "subnetCIDR")]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("subnetCIDR must be a CIDR such as 10.0.1.0/24"))]
    #[schemars(with = "String", length(max = 64))]
    pub subnet_cidr: Ipv4Net,
    /// Subnet id.
    #[serde(rename = "subnetID")]
    #[schemars(length(max = 32))]
    pub subnet_id: String,
    /// ENI that holds the address (the pod's own ENI in Exclusive, its member ENI in Trunk).
    #[serde(rename = "eniID")]
    #[x_kube(validation = Rule::new("self.matches('^eni-[0-9a-z]{1,32}$')").message("eniID must be an ENI id like eni-0123abcd (EC2) or eni-bp1a2b3c4d (ECS)"))]
    #[schemars(length(max = 32))]
    pub eni_id: String,
    /// MAC address of that ENI; the agent finds the ENI's link by it.
    #[serde(rename = "eniMAC")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9a-f]{2}:){5}[0-9a-f]{2}$')").message("eniMAC must be a lower-case MAC like 02:ab:cd:ef:01:23"))]
    #[schemars(with = "String", length(max = 64))]
    pub eni_mac: Mac,
    /// Device index of the ENI on the instance (0 is the primary ENI).
    #[schemars(range(min = 0, max = 128))]
    pub device_index: u32,
    /// Route table the agent uses for traffic from the pod (SharedIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub route_table: Option<u32>,
    /// VLAN id of the member ENI on the trunk (Trunk).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "vlanID")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan_id: Option<u16>,
    /// MAC of the trunk ENI a member ENI is relayed over (Trunk).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "trunkMAC")]
    #[schemars(with = "Option<String>")]
    pub trunk_mac: Option<Mac>,
    /// Security groups that guard this pod's traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5), inner(length(max = 32)))]
    pub security_groups: Vec<String>,
    /// SharedIP datapath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath: Option<Datapath>,
}

/// The zero allocation (unspecified addresses, all-zero MAC, no ENI), for building
/// one field by field.
impl Default for Allocation {
    fn default() -> Self {
        Allocation {
            address: Ipv4Addr::UNSPECIFIED,
            prefix_length: 0,
            gateway: Ipv4Addr::UNSPECIFIED,
            subnet_cidr: Ipv4Net::default(),
            subnet_id: String::new(),
            eni_id: String::new(),
            eni_mac: Mac::default(),
            device_index: 0,
            route_table: None,
            vlan_id: None,
            trunk_mac: None,
            security_groups: Vec::new(),
            datapath: None,
        }
    }
}

/// Phase of a PodNetwork.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PodNetworkPhase {
    /// Created, allocation not yet done.
    Pending,
    /// Allocation in spec, pod not wired yet.
    Allocated,
    /// The agent wired the pod.
    Ready,
    /// The pod is gone; the address is cooling down before it returns to the pool.
    Releasing,
    /// Wiring failed; see message.
    Failed,
}

/// Observed state of the pod's network, written by the node agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodNetworkStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodNetworkPhase>,
    /// Container (sandbox) id the network is wired for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "containerID"
    )]
    pub container_id: Option<String>,
    /// Interface name inside the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_interface: Option<String>,
    /// Interface name on the node (host veth, or the ENI link it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A human-readable explanation of the phase, e.g. why wiring failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A Trunk allocation as operators before typed fields wrote it.
    fn written() -> Value {
        json!({
            "address": "10.0.1.20",
            "prefixLength": 24,
            "gateway": "10.0.1.1",
            "subnetCIDR": "10.0.1.0/24",
            "subnetID": "subnet-1",
            "eniID": "eni-0a1b",
            "eniMAC": "02:ab:cd:ef:01:23",
            "deviceIndex": 2,
            "vlanID": 7,
            "trunkMAC": "02:00:00:00:00:aa",
            "securityGroups": ["sg-1"]
        })
    }

    #[test]
    fn todays_json_reads_typed_and_writes_back_unchanged() {
        let allocation: Allocation = serde_json::from_value(written()).expect("read");
        assert_eq!(allocation.address, Ipv4Addr::new(10, 0, 1, 20));
        assert_eq!(allocation.gateway, Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(
            allocation.subnet_cidr,
            "10.0.1.0/24".parse::<Ipv4Net>().expect("cidr")
        );
        assert_eq!(
            allocation.eni_mac,
            Mac::new([0x02, 0xab, 0xcd, 0xef, 0x01, 0x23])
        );
        assert_eq!(allocation.trunk_mac, Some(Mac::new([2, 0, 0, 0, 0, 0xaa])));
        assert_eq!(serde_json::to_value(&allocation).expect("write"), written());
    }

    #[test]
    fn upper_case_macs_are_read_and_written_lower_case() {
        let mut upper = written();
        upper["eniMAC"] = json!("02:AB:CD:EF:01:23");
        let allocation: Allocation = serde_json::from_value(upper).expect("read");
        assert_eq!(serde_json::to_value(&allocation).expect("write"), written());
    }

    #[test]
    fn malformed_values_are_read_errors() {
        for (field, value) in [
            ("address", json!("10.0.1")),
            ("address", json!("fe80::1")),
            ("address", json!(42)),
            ("gateway", json!("")),
            ("subnetCIDR", json!("10.0.1.0")),
            ("subnetCIDR", json!("10.0.1.0/33")),
            ("eniMAC", json!("02:ab:cd:ef:01")),
            ("eniMAC", json!("zz:ab:cd:ef:01:23")),
            ("trunkMAC", json!("02-ab")),
        ] {
            let mut bad = written();
            bad[field] = value.clone();
            let read = serde_json::from_value::<Allocation>(bad);
            assert!(read.is_err(), "{field} = {value} accepted");
        }
    }
}
