//! The cloud state machine: strict like EC2, no I/O, time passed in by the caller.

mod enis;
mod idempotency;
mod invariants;
pub mod model;
pub mod requests;
mod subnet;
mod trunk;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::catalog::{Catalog, Cloud as CloudKind, InstanceType};
use crate::dataplane_view::IngressRule;
use crate::error::{CloudError, CloudResult, ErrorCode};
use crate::ids::IdGen;
use crate::layout::Layout;
use idempotency::Idempotency;
pub use idempotency::{IdemRequest, IdemResult};
use model::{
    AttachState, Attachment, Eni, Instance, InterfaceType, SecurityGroup, Subnet, Tags,
    TrunkAssociation, Vpc,
};
use requests::{RegisterInstance, RegisteredInstance};

/// Account id that owns everything in the simulated VPC.
pub const OWNER_ID: &str = "123456789012";
/// Security groups per network interface (EC2's default quota).
pub const MAX_GROUPS_PER_ENI: usize = 5;
/// Tags per resource (EC2's limit).
pub const MAX_TAGS_PER_RESOURCE: usize = 50;

/// How long attachments stay in their transient states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub attach: Duration,
    pub detach: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            attach: Duration::from_secs(2),
            detach: Duration::from_secs(1),
        }
    }
}

/// Everything the cloud holds; cloneable so the server can keep lagged snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct CloudState {
    pub vpc: Vpc,
    pub subnets: BTreeMap<String, Subnet>,
    pub groups: BTreeMap<String, SecurityGroup>,
    pub instances: BTreeMap<String, Instance>,
    pub enis: BTreeMap<String, Eni>,
    pub trunk_associations: BTreeMap<String, TrunkAssociation>,
}

pub struct Cloud {
    catalog: Catalog,
    timing: Timing,
    ids: IdGen,
    state: CloudState,
    /// The state right after building the layout; `reset` returns to it.
    initial: CloudState,
    idempotency: Idempotency,
}

impl Cloud {
    pub fn new(catalog: Catalog, layout: &Layout, seed: u64) -> Self {
        let mut ids = IdGen::new(seed, layout.vpc.cloud);
        let state = build_state(layout, &mut ids);
        Self {
            catalog,
            timing: Timing::default(),
            ids,
            initial: state.clone(),
            state,
            idempotency: Idempotency::default(),
        }
    }

    pub fn state(&self) -> &CloudState {
        &self.state
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn set_timing(&mut self, timing: Timing) {
        self.timing = timing;
    }

    /// Back to the layout: no instances, no ENIs, same VPC, subnet and group ids. Ids
    /// issued before are never issued again.
    pub fn reset(&mut self) {
        self.state = self.initial.clone();
        self.idempotency.clear();
    }

    /// Completes attachments and detachments whose time has come. Returns whether
    /// anything changed.
    pub fn settle(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for eni in self.state.enis.values_mut() {
            let Some(att) = &mut eni.attachment else {
                continue;
            };
            if att.transition_at.is_some_and(|t| t <= now) {
                changed = true;
                match att.state {
                    AttachState::Attaching => {
                        att.state = AttachState::Attached;
                        att.transition_at = None;
                    }
                    AttachState::Detaching => eni.attachment = None,
                    AttachState::Attached => att.transition_at = None,
                }
            }
        }
        changed
    }

    /// When the next attachment or detachment completes.
    pub fn next_transition(&self) -> Option<Instant> {
        self.state
            .enis
            .values()
            .filter_map(|e| e.attachment.as_ref()?.transition_at)
            .min()
    }

    fn instance(&self, id: &str) -> CloudResult<&Instance> {
        self.state
            .instances
            .get(id)
            .ok_or_else(|| CloudError::instance_not_found(id))
    }

    fn eni(&self, id: &str) -> CloudResult<&Eni> {
        if !id.starts_with("eni-") {
            return Err(CloudError::new(
                ErrorCode::InvalidNetworkInterfaceIdMalformed,
                format!("Invalid id: \"{id}\" (expecting \"eni-...\")"),
            ));
        }
        self.state
            .enis
            .get(id)
            .ok_or_else(|| CloudError::eni_not_found(id))
    }

    fn instance_type_of(&self, instance: &Instance) -> CloudResult<&InstanceType> {
        self.catalog.get(&instance.instance_type).ok_or_else(|| {
            CloudError::new(
                ErrorCode::InternalError,
                format!("instance type {} vanished", instance.instance_type),
            )
        })
    }

    /// Resolves group ids or names to ids; refuses unknown ones.
    fn resolve_groups(&self, groups: &[String]) -> CloudResult<Vec<String>> {
        let mut out = Vec::new();
        for g in groups {
            let id = if self.state.groups.contains_key(g) {
                g.clone()
            } else {
                self.state
                    .groups
                    .values()
                    .find(|sg| &sg.name == g)
                    .map(|sg| sg.id.clone())
                    .ok_or_else(|| CloudError::group_not_found(g))?
            };
            if !out.contains(&id) {
                out.push(id);
            }
        }
        if out.len() > MAX_GROUPS_PER_ENI {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterValue,
                format!("at most {MAX_GROUPS_PER_ENI} security groups per network interface"),
            ));
        }
        Ok(out)
    }

    fn default_group(&self) -> CloudResult<String> {
        self.state
            .groups
            .values()
            .find(|g| g.name == "default")
            .map(|g| g.id.clone())
            .ok_or_else(|| CloudError::group_not_found("default"))
    }

    /// Admin call: creates the instance of a node with its primary ENI attached at
    /// device index 0. Registering the same node again with the same parameters
    /// returns the existing instance.
    pub fn register_instance(&mut self, req: &RegisterInstance) -> CloudResult<RegisteredInstance> {
        if req.node_name.is_empty() {
            return Err(CloudError::new(
                ErrorCode::MissingParameter,
                "node_name is required",
            ));
        }
        let itype = self
            .catalog
            .get(&req.instance_type)
            .filter(|t| t.cloud == self.state.vpc.cloud)
            .ok_or_else(|| {
                CloudError::invalid_parameter(format!(
                    "Invalid value '{}' for InstanceType",
                    req.instance_type
                ))
            })?
            .clone();
        let subnet_id = self.resolve_subnet(&req.subnet)?;
        let groups = if req.security_groups.is_empty() {
            vec![self.default_group()?]
        } else {
            self.resolve_groups(&req.security_groups)?
        };
        let netns = req.netns.clone().unwrap_or_else(|| req.node_name.clone());
        if let Some(existing) = self
            .state
            .instances
            .values()
            .find(|i| i.node_name == req.node_name)
        {
            if existing.instance_type == itype.name
                && existing.subnet_id == subnet_id
                && existing.netns == netns
            {
                return self.registered(&existing.id);
            }
            return Err(CloudError::new(
                ErrorCode::IdempotentParameterMismatch,
                format!(
                    "node {} is already registered with other parameters",
                    req.node_name
                ),
            ));
        }
        let subnet = &self.state.subnets[&subnet_id];
        let ip = subnet
            .pick_addresses(1, &BTreeSet::new())
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| insufficient_addresses(&subnet_id))?;
        let az = subnet.az.clone();
        let instance_id = self.ids.id("i");
        let eni_id = self.ids.id("eni");
        let now = SystemTime::now();
        let eni = Eni {
            id: eni_id.clone(),
            subnet_id: subnet_id.clone(),
            az: az.clone(),
            description: "Primary network interface".into(),
            mac: self.ids.mac(),
            interface_type: InterfaceType::Interface,
            primary_ip: ip,
            secondary_ips: Vec::new(),
            prefixes: Vec::new(),
            groups,
            tags: Tags::new(),
            attachment: Some(Attachment {
                id: self.ids.id("eni-attach"),
                instance_id: instance_id.clone(),
                device_index: 0,
                state: AttachState::Attached,
                transition_at: None,
                attach_time: now,
                delete_on_termination: true,
            }),
            trunk_association: None,
            source_dest_check: true,
        };
        let mut tags = Tags::new();
        tags.insert("Name".into(), req.node_name.clone());
        let instance = Instance {
            id: instance_id.clone(),
            reservation_id: self.ids.id("r"),
            node_name: req.node_name.clone(),
            netns,
            instance_type: itype.name,
            subnet_id: subnet_id.clone(),
            az,
            private_ip: ip,
            primary_eni: eni_id.clone(),
            tags,
            launch_time: now,
        };
        self.take_addresses(&subnet_id, &eni_id, &[ip], &[]);
        self.state.enis.insert(eni_id, eni);
        self.state.instances.insert(instance_id.clone(), instance);
        self.registered(&instance_id)
    }

    fn registered(&self, instance_id: &str) -> CloudResult<RegisteredInstance> {
        let i = self.instance(instance_id)?;
        let eni = self.eni(&i.primary_eni)?;
        Ok(RegisteredInstance {
            instance_id: i.id.clone(),
            // What each cloud's controller manager writes into Node.spec.providerID.
            provider_id: match self.state.vpc.cloud {
                CloudKind::Aws => format!("aws:///{}/{}", i.az, i.id),
                CloudKind::Alibaba => format!("{}.{}", self.state.vpc.region, i.id),
            },
            instance_type: i.instance_type.clone(),
            availability_zone: i.az.clone(),
            subnet_id: i.subnet_id.clone(),
            primary_eni_id: eni.id.clone(),
            primary_eni_mac: eni.mac.clone(),
            primary_ip: i.private_ip,
            netns: i.netns.clone(),
        })
    }

    /// Admin call: the instance goes away like a terminated one. ENIs marked
    /// delete-on-termination (the primary) are deleted, others are detached; a trunk's
    /// members are disassociated.
    pub fn terminate_instance(&mut self, instance_id: &str) -> CloudResult<()> {
        self.instance(instance_id)?;
        let attached: Vec<String> = self
            .state
            .enis
            .values()
            .filter(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == instance_id)
            })
            .map(|e| e.id.clone())
            .collect();
        for eni_id in attached {
            let assocs: Vec<String> = self
                .state
                .trunk_associations
                .values()
                .filter(|a| a.trunk_eni_id == eni_id)
                .map(|a| a.id.clone())
                .collect();
            for a in assocs {
                self.remove_association(&a);
            }
            let Some(eni) = self.state.enis.get_mut(&eni_id) else {
                continue;
            };
            let delete = eni
                .attachment
                .take()
                .is_some_and(|a| a.delete_on_termination);
            if delete {
                self.remove_eni(&eni_id);
            }
        }
        self.state.instances.remove(instance_id);
        Ok(())
    }

    fn resolve_subnet(&self, subnet: &str) -> CloudResult<String> {
        if self.state.subnets.contains_key(subnet) {
            return Ok(subnet.to_owned());
        }
        self.state
            .subnets
            .values()
            .find(|s| s.tags.get("Name").is_some_and(|n| n == subnet))
            .map(|s| s.id.clone())
            .ok_or_else(|| CloudError::subnet_not_found(subnet))
    }

    fn take_addresses(
        &mut self,
        subnet_id: &str,
        eni_id: &str,
        ips: &[std::net::Ipv4Addr],
        prefixes: &[ipnet::Ipv4Net],
    ) {
        if let Some(s) = self.state.subnets.get_mut(subnet_id) {
            for ip in ips {
                s.addresses.insert(*ip, eni_id.to_owned());
            }
            for p in prefixes {
                s.prefixes.insert(*p, eni_id.to_owned());
            }
        }
    }

    fn release_addresses(
        &mut self,
        subnet_id: &str,
        ips: &[std::net::Ipv4Addr],
        prefixes: &[ipnet::Ipv4Net],
    ) {
        if let Some(s) = self.state.subnets.get_mut(subnet_id) {
            for ip in ips {
                s.addresses.remove(ip);
            }
            for p in prefixes {
                s.prefixes.remove(p);
            }
        }
    }

    /// Drops an ENI and gives its addresses back to the subnet.
    fn remove_eni(&mut self, eni_id: &str) {
        if let Some(eni) = self.state.enis.remove(eni_id) {
            let ips: Vec<_> = eni.all_ips().collect();
            self.release_addresses(&eni.subnet_id, &ips, &eni.prefixes);
        }
    }

    /// CreateTags: all resources must exist, or nothing is tagged.
    pub fn create_tags(&mut self, resource_ids: &[String], tags: &Tags) -> CloudResult<()> {
        if resource_ids.is_empty() {
            return Err(CloudError::new(
                ErrorCode::MissingParameter,
                "The request must contain the parameter resourceIdSet",
            ));
        }
        if let Some(k) = tags
            .keys()
            .find(|k| k.starts_with("aws:") || k.is_empty() || k.len() > 128)
        {
            return Err(CloudError::invalid_parameter(format!(
                "Tag key '{k}' is not allowed"
            )));
        }
        for id in resource_ids {
            let existing = self.tags_of(id)?;
            let merged = existing
                .keys()
                .chain(tags.keys())
                .collect::<BTreeSet<_>>()
                .len();
            if merged > MAX_TAGS_PER_RESOURCE {
                return Err(CloudError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("resource {id} would have more than {MAX_TAGS_PER_RESOURCE} tags"),
                ));
            }
        }
        for id in resource_ids {
            let t = self.tags_of_mut(id)?;
            t.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }

    fn tags_of(&self, id: &str) -> CloudResult<&Tags> {
        let s = &self.state;
        let found = if id.starts_with("eni-attach-") {
            None
        } else if id.starts_with("eni-") {
            return s
                .enis
                .get(id)
                .map(|e| &e.tags)
                .ok_or_else(|| CloudError::eni_not_found(id));
        } else if id.starts_with("i-") {
            return s
                .instances
                .get(id)
                .map(|e| &e.tags)
                .ok_or_else(|| CloudError::instance_not_found(id));
        } else if id.starts_with("subnet-") || id.starts_with("vsw-") {
            return s
                .subnets
                .get(id)
                .map(|e| &e.tags)
                .ok_or_else(|| CloudError::subnet_not_found(id));
        } else if id.starts_with("sg-") {
            return s
                .groups
                .get(id)
                .map(|e| &e.tags)
                .ok_or_else(|| CloudError::group_not_found(id));
        } else if id.starts_with("trunk-assoc-") {
            return s
                .trunk_associations
                .get(id)
                .map(|e| &e.tags)
                .ok_or_else(|| {
                    CloudError::new(
                        ErrorCode::InvalidAssociationIdNotFound,
                        format!("The association ID '{id}' does not exist"),
                    )
                });
        } else {
            None
        };
        found.ok_or_else(|| {
            CloudError::new(ErrorCode::InvalidId, format!("The ID '{id}' is not valid"))
        })
    }

    fn tags_of_mut(&mut self, id: &str) -> CloudResult<&mut Tags> {
        self.tags_of(id)?;
        let s = &mut self.state;
        let tags = if id.starts_with("eni-") {
            s.enis.get_mut(id).map(|e| &mut e.tags)
        } else if id.starts_with("i-") {
            s.instances.get_mut(id).map(|e| &mut e.tags)
        } else if id.starts_with("subnet-") || id.starts_with("vsw-") {
            s.subnets.get_mut(id).map(|e| &mut e.tags)
        } else if id.starts_with("sg-") {
            s.groups.get_mut(id).map(|e| &mut e.tags)
        } else {
            s.trunk_associations.get_mut(id).map(|e| &mut e.tags)
        };
        tags.ok_or_else(|| {
            CloudError::new(ErrorCode::InvalidId, format!("The ID '{id}' is not valid"))
        })
    }
}

fn insufficient_addresses(subnet_id: &str) -> CloudError {
    CloudError::new(
        ErrorCode::InsufficientFreeAddressesInSubnet,
        format!(
            "There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of instances."
        ),
    )
}

fn build_state(layout: &Layout, ids: &mut IdGen) -> CloudState {
    let fixed = |id: &Option<String>, prefix: &str, ids: &mut IdGen| match id {
        Some(id) => {
            ids.reserve(id);
            id.clone()
        }
        None => ids.id(prefix),
    };
    let vpc = Vpc {
        cloud: layout.vpc.cloud,
        id: fixed(&layout.vpc.id, "vpc", ids),
        cidr: layout.vpc.cidr.trunc(),
        region: layout.vpc.region.clone(),
        owner_id: OWNER_ID.into(),
    };
    let mut subnets = BTreeMap::new();
    for s in &layout.subnets {
        let id = fixed(&s.id, "subnet", ids);
        let mut tags = s.tags.clone();
        tags.insert("Name".into(), s.name.clone());
        subnets.insert(
            id.clone(),
            Subnet {
                id,
                cidr: s.cidr,
                az: s.az.clone(),
                tags,
                addresses: BTreeMap::new(),
                prefixes: BTreeMap::new(),
            },
        );
    }
    let group_ids: BTreeMap<&str, String> = layout
        .security_groups
        .iter()
        .map(|g| (g.name.as_str(), fixed(&g.id, "sg", ids)))
        .collect();
    let mut groups = BTreeMap::new();
    for g in &layout.security_groups {
        let id = group_ids[g.name.as_str()].clone();
        let ingress = g
            .ingress
            .iter()
            .map(|r| IngressRule {
                protocol: r.protocol.into(),
                from_port: r.from_port,
                to_port: r.to_port,
                cidrs: r.cidrs.clone(),
                source_group_ids: r
                    .source_groups
                    .iter()
                    .filter_map(|n| group_ids.get(n.as_str()).cloned())
                    .collect(),
            })
            .collect();
        groups.insert(
            id.clone(),
            SecurityGroup {
                id,
                name: g.name.clone(),
                description: g.description.clone(),
                tags: g.tags.clone(),
                ingress,
            },
        );
    }
    CloudState {
        vpc,
        subnets,
        groups,
        instances: BTreeMap::new(),
        enis: BTreeMap::new(),
        trunk_associations: BTreeMap::new(),
    }
}
