//! Domain types of the cloud layer. Providers translate their SDK's shapes into these, so
//! the pool engine and controllers never see a cloud vendor's types.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Tags as key → value, the way every cloud stores them.
pub type Tags = BTreeMap<String, String>;

/// A virtual machine that is a node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub vpc_id: String,
    /// Subnet of the primary interface.
    pub subnet_id: String,
    pub primary_eni_id: String,
    pub private_ip: Option<Ipv4Addr>,
}

/// Network limits of an instance type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Interfaces including the primary one.
    pub max_enis: u32,
    /// Primary plus secondary IPv4 addresses per interface (a /28 prefix takes one slot).
    pub ipv4_per_eni: u32,
    /// Whether a trunk interface can be attached to this type.
    pub trunking_supported: bool,
    /// Branch (member) interfaces one trunk can carry; 0 without trunking.
    pub branch_enis_per_trunk: u32,
}

/// What an interface is for; fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EniKind {
    /// A plain interface (primary, SharedIP or Exclusive mode).
    Standard,
    /// A trunk interface that carries branch interfaces as VLANs.
    Trunk,
    /// A branch (member) interface, associated with a trunk instead of attached.
    Branch,
}

/// Life-cycle state of an interface as the cloud reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EniStatus {
    Available,
    Attaching,
    InUse,
    Detaching,
    Associated,
    /// A state this code does not know yet; kept verbatim for logs.
    Other(String),
}

impl EniStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "available" => Self::Available,
            "attaching" => Self::Attaching,
            "in-use" => Self::InUse,
            "detaching" => Self::Detaching,
            "associated" => Self::Associated,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The attachment of an interface to an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub instance_id: String,
    pub device_index: u32,
    /// `attaching`, `attached`, `detaching` or `detached`.
    pub status: String,
}

/// An elastic network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eni {
    pub id: String,
    pub mac: String,
    pub kind: EniKind,
    pub status: EniStatus,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub description: String,
    pub primary_ip: Option<Ipv4Addr>,
    /// Secondary addresses, without the primary one.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Delegated IPv4 prefixes (/28 on AWS).
    pub prefixes: Vec<Ipv4Net>,
    pub security_groups: Vec<String>,
    pub attachment: Option<Attachment>,
    pub tags: Tags,
}

/// A security group and the VPC it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
}

/// A subnet with its free capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    pub availability_zone: String,
    pub available_ips: u32,
    pub tags: Tags,
}

/// A branch interface riding a trunk interface as one VLAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkAssociation {
    pub id: String,
    pub trunk_eni_id: String,
    pub branch_eni_id: String,
    pub vlan_id: u16,
}

/// Who an interface belongs to; becomes the ownership tags (see [`crate::cloud::tags`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    pub pool: String,
    pub node: Option<String>,
    pub instance_id: Option<String>,
}

/// Secondary capacity requested together with a new interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialAddresses {
    /// This many secondary addresses.
    Ips(u32),
    /// This many delegated /28 prefixes.
    Prefixes(u32),
}

/// Everything needed to create an interface. The ownership tags (cluster, pool, node,
/// instance) are added by the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateEniRequest {
    pub subnet_id: String,
    pub security_groups: Vec<String>,
    pub description: String,
    pub kind: EniKind,
    pub owner: Ownership,
    /// Extra tags (e.g. the pool's `tags`); ownership keys here are overwritten.
    pub tags: Tags,
    pub initial_addresses: Option<InitialAddresses>,
    /// Idempotency token: the same token always yields the same interface.
    pub client_token: String,
}

/// Addresses to add to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressAssignment {
    /// Let the cloud pick this many secondary addresses.
    IpCount(u32),
    /// These exact secondary addresses.
    Ips(Vec<Ipv4Addr>),
    /// Let the cloud pick this many prefixes.
    PrefixCount(u32),
    /// These exact prefixes.
    Prefixes(Vec<Ipv4Net>),
}

impl AddressAssignment {
    /// Whether repeating the request after an unknown outcome could assign twice.
    pub fn is_idempotent(&self) -> bool {
        matches!(self, Self::Ips(_) | Self::Prefixes(_))
    }
}

/// Addresses to remove from an interface (clouds only release named addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressRelease {
    Ips(Vec<Ipv4Addr>),
    Prefixes(Vec<Ipv4Net>),
}

/// What one assign call added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignedAddresses {
    pub ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
}

/// Which interfaces to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EniQuery {
    /// Interfaces carrying this cluster's ownership tag, optionally narrowed by the other
    /// ownership tags. The garbage collector only ever sees these.
    Owned {
        pool: Option<String>,
        node: Option<String>,
        instance_id: Option<String>,
    },
    /// Every interface attached to an instance, owned or not (device index bookkeeping).
    AttachedTo(String),
    /// Those of these interfaces that exist (unknown ids are left out, not an error).
    Ids(Vec<String>),
}

impl EniQuery {
    /// All interfaces this cluster owns.
    pub fn owned() -> Self {
        Self::Owned {
            pool: None,
            node: None,
            instance_id: None,
        }
    }
}

/// Which subnets to describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubnetQuery {
    Ids(Vec<String>),
    /// Subnets carrying all of these tags (a pool may select subnets by tag).
    Tagged(Tags),
}

/// A request to put a branch interface on a trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociateTrunkRequest {
    pub trunk_eni_id: String,
    pub branch_eni_id: String,
    pub vlan_id: u16,
    pub client_token: String,
}
