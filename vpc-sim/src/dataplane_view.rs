//! What the kernel dataplane should look like, derived from the cloud state.
//!
//! The state machine produces a `DataplaneView` after every mutation; the materializer
//! reconciles the kernel to it. Level-triggered on purpose: a restarted vpc-sim (or one
//! that crashed half-way through a change) converges by applying the latest view, and
//! cleanup after a crash is "apply the empty view".

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneView {
    /// One entry per registered instance (a node of the cluster, or a plain VPC host).
    pub nodes: Vec<NodeView>,
    pub security_groups: Vec<SecurityGroupView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub instance_id: String,
    /// Name of the node's network namespace (created by the materializer).
    pub netns: String,
    /// Attached ENIs (state `in-use`), primary first.
    pub enis: Vec<EniPortView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniPortView {
    pub eni_id: String,
    /// Lower-case colon form, e.g. `02:ab:cd:00:00:01`.
    pub mac: String,
    pub device_index: u32,
    pub kind: EniKind,
    /// Primary private address first, then secondaries.
    pub addresses: Vec<Ipv4Addr>,
    /// Delegated /28 prefixes.
    pub prefixes: Vec<Ipv4Net>,
    pub security_group_ids: Vec<String>,
    pub subnet_cidr: Ipv4Net,
    /// First host address of the subnet (AWS convention: .1 is the VPC router).
    pub gateway: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EniKind {
    Primary,
    Secondary,
    Trunk,
    /// A member (branch) ENI associated with a trunk; the simulator hands it to the node
    /// as its own link rather than as VLAN-tagged frames on the trunk.
    Member {
        trunk_eni_id: String,
        vlan_id: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupView {
    pub group_id: String,
    pub ingress: Vec<IngressRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    pub protocol: Protocol,
    /// Inclusive port range; ignored for `Icmp` and `All`.
    pub from_port: u16,
    pub to_port: u16,
    /// Allowed source CIDRs.
    pub cidrs: Vec<Ipv4Net>,
    /// Allowed source security groups (any address of an ENI in that group).
    pub source_group_ids: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}
