//! The records the cloud keeps: VPC, subnets, groups, instances, ENIs, trunk associations.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::dataplane_view::IngressRule;

pub type Tags = BTreeMap<String, String>;

#[derive(Clone, Debug, Serialize)]
pub struct Vpc {
    /// Whose cloud this VPC is in (id shapes, instance types, provider ids).
    pub cloud: crate::catalog::Cloud,
    pub id: String,
    pub cidr: Ipv4Net,
    pub region: String,
    pub owner_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Subnet {
    pub id: String,
    pub cidr: Ipv4Net,
    pub az: String,
    pub tags: Tags,
    /// Addresses in use, with the ENI holding each.
    pub addresses: BTreeMap<Ipv4Addr, String>,
    /// Delegated /28 prefixes, with the ENI holding each.
    pub prefixes: BTreeMap<Ipv4Net, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tags: Tags,
    pub ingress: Vec<IngressRule>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Instance {
    pub id: String,
    pub reservation_id: String,
    pub node_name: String,
    pub netns: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub az: String,
    pub private_ip: Ipv4Addr,
    pub primary_eni: String,
    pub tags: Tags,
    pub launch_time: SystemTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceType {
    Interface,
    Trunk,
    Branch,
}

impl InterfaceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interface => "interface",
            Self::Trunk => "trunk",
            Self::Branch => "branch",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachState {
    Attaching,
    Attached,
    Detaching,
}

impl AttachState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attaching => "attaching",
            Self::Attached => "attached",
            Self::Detaching => "detaching",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Attachment {
    pub id: String,
    pub instance_id: String,
    pub device_index: u32,
    pub state: AttachState,
    /// When `Attaching`/`Detaching` ends.
    #[serde(skip)]
    pub transition_at: Option<Instant>,
    pub attach_time: SystemTime,
    pub delete_on_termination: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Eni {
    pub id: String,
    pub subnet_id: String,
    pub az: String,
    pub description: String,
    pub mac: String,
    pub interface_type: InterfaceType,
    pub primary_ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
    pub groups: Vec<String>,
    pub tags: Tags,
    pub attachment: Option<Attachment>,
    /// Trunk association id when this ENI is a member of a trunk.
    pub trunk_association: Option<String>,
    pub source_dest_check: bool,
}

/// EC2's `status` of a network interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EniStatus {
    Available,
    Attaching,
    InUse,
    Detaching,
}

impl EniStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Attaching => "attaching",
            Self::InUse => "in-use",
            Self::Detaching => "detaching",
        }
    }
}

impl Eni {
    pub fn status(&self) -> EniStatus {
        match &self.attachment {
            Some(a) => match a.state {
                AttachState::Attaching => EniStatus::Attaching,
                AttachState::Attached => EniStatus::InUse,
                AttachState::Detaching => EniStatus::Detaching,
            },
            None if self.trunk_association.is_some() => EniStatus::InUse,
            None => EniStatus::Available,
        }
    }

    /// Address slots in use: primary, secondaries and prefixes (one slot each).
    pub fn ipv4_slots(&self) -> u32 {
        (1 + self.secondary_ips.len() + self.prefixes.len()) as u32
    }

    pub fn all_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.primary_ip).chain(self.secondary_ips.iter().copied())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrunkAssociation {
    pub id: String,
    pub trunk_eni_id: String,
    pub branch_eni_id: String,
    pub vlan_id: u16,
    pub gre_key: Option<u32>,
    pub tags: Tags,
}
