//! Typed requests and answers of the state machine (the EC2 front end parses into these).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::model::{InterfaceType, Tags};

/// Admin call: a node's instance joins the VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterInstance {
    pub node_name: String,
    pub instance_type: String,
    /// Subnet id, or the value of its `Name` tag.
    pub subnet: String,
    /// Group ids or names; the VPC's `default` group when empty.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Network namespace the node lives in; the node name when absent.
    #[serde(default)]
    pub netns: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredInstance {
    pub instance_id: String,
    /// Kubernetes providerID: `aws:///<az>/<instance-id>`, or `<region>.<instance-id>` on
    /// Alibaba Cloud.
    pub provider_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: String,
    pub primary_eni_id: String,
    pub primary_eni_mac: String,
    pub primary_ip: Ipv4Addr,
    pub netns: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateEni {
    pub subnet_id: String,
    pub description: String,
    pub primary_ip: Option<Ipv4Addr>,
    pub secondary_ips: Vec<Ipv4Addr>,
    pub secondary_count: u32,
    pub prefixes: Vec<Ipv4Net>,
    pub prefix_count: u32,
    pub groups: Vec<String>,
    pub interface_type: Option<InterfaceType>,
    pub tags: Tags,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignIps {
    pub ips: Vec<Ipv4Addr>,
    pub count: u32,
    pub prefixes: Vec<Ipv4Net>,
    pub prefix_count: u32,
    pub allow_reassignment: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignedIps {
    pub ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociateTrunk {
    pub branch_eni_id: String,
    pub trunk_eni_id: String,
    pub vlan_id: u32,
    pub gre_key: Option<u32>,
}
