//! Network interface calls: create, attach, detach, delete, addresses, groups.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

use ipnet::Ipv4Net;

use super::idempotency::{IdemRequest, IdemResult};
use super::model::{AttachState, Attachment, Eni, EniStatus, InterfaceType, Subnet};
use super::requests::{AssignIps, AssignedIps, CreateEni};
use super::subnet::DELEGATED_PREFIX_LEN;
use super::{Cloud, insufficient_addresses};
use crate::catalog::MAX_IPV4_PER_ENI_ANY_TYPE;
use crate::error::{CloudError, CloudResult, ErrorCode};

/// Longest ClientToken EC2 accepts.
const MAX_CLIENT_TOKEN_LEN: usize = 64;

pub(super) fn check_client_token(token: &str) -> CloudResult<()> {
    if token.is_empty() || token.len() > MAX_CLIENT_TOKEN_LEN || !token.is_ascii() {
        return Err(CloudError::invalid_parameter(format!(
            "ClientToken must be 1 to {MAX_CLIENT_TOKEN_LEN} ASCII characters"
        )));
    }
    Ok(())
}

fn limit_exceeded(eni_id: &str, limit: u32) -> CloudError {
    CloudError::new(
        ErrorCode::PrivateIpAddressLimitExceeded,
        format!("Number of private addresses will exceed limit of {limit} for interface {eni_id}."),
    )
}

impl Cloud {
    /// Address slots the ENI may hold: its instance type's limit when attached (or a
    /// member of an attached trunk), else the largest any type allows.
    pub(super) fn eni_ipv4_limit(&self, eni: &Eni) -> u32 {
        let instance_id = match (&eni.attachment, &eni.trunk_association) {
            (Some(a), _) => Some(a.instance_id.as_str()),
            (None, Some(assoc)) => self
                .state
                .trunk_associations
                .get(assoc)
                .and_then(|a| self.state.enis.get(&a.trunk_eni_id))
                .and_then(|t| t.attachment.as_ref())
                .map(|a| a.instance_id.as_str()),
            (None, None) => None,
        };
        instance_id
            .and_then(|i| self.state.instances.get(i))
            .and_then(|i| self.catalog.get(&i.instance_type))
            .map_or(MAX_IPV4_PER_ENI_ANY_TYPE, |t| t.ipv4_per_eni)
    }

    pub fn create_network_interface(
        &mut self,
        req: &CreateEni,
        client_token: Option<&str>,
    ) -> CloudResult<Eni> {
        let idem = IdemRequest::CreateEni(req.clone());
        if let Some(token) = client_token {
            check_client_token(token)?;
            if let Some(IdemResult::Eni(eni)) = self.idempotency.lookup(token, &idem)? {
                return Ok(*eni);
            }
        }
        let subnet = self
            .state
            .subnets
            .get(&req.subnet_id)
            .ok_or_else(|| CloudError::subnet_not_found(&req.subnet_id))?;
        let groups = if req.groups.is_empty() {
            vec![self.default_group()?]
        } else {
            self.resolve_groups(&req.groups)?
        };
        if req.interface_type == Some(InterfaceType::Trunk)
            && (!req.prefixes.is_empty() || req.prefix_count > 0)
        {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                "Prefix delegation is not supported on trunk interfaces",
            ));
        }
        if !req.secondary_ips.is_empty() && req.secondary_count > 0 {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                "Specify either explicit secondary addresses or SecondaryPrivateIpAddressCount",
            ));
        }
        if !req.prefixes.is_empty() && req.prefix_count > 0 {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                "Specify either Ipv4Prefix or Ipv4PrefixCount",
            ));
        }
        let slots = 1
            + req.secondary_ips.len() as u32
            + req.secondary_count
            + req.prefixes.len() as u32
            + req.prefix_count;
        if slots > MAX_IPV4_PER_ENI_ANY_TYPE {
            return Err(limit_exceeded("(new)", MAX_IPV4_PER_ENI_ANY_TYPE));
        }
        let mut explicit: Vec<Ipv4Addr> = req
            .primary_ip
            .into_iter()
            .chain(req.secondary_ips.iter().copied())
            .collect();
        check_explicit_ips(subnet, &explicit, None, false)?;
        let exclude: BTreeSet<Ipv4Addr> = explicit.iter().copied().collect();
        let wanted = req.secondary_count as usize + usize::from(req.primary_ip.is_none());
        let picked = subnet
            .pick_addresses(wanted, &exclude)
            .ok_or_else(|| insufficient_addresses(&req.subnet_id))?;
        let prefixes = plan_prefixes(
            subnet,
            &req.prefixes,
            req.prefix_count,
            &explicit.iter().chain(&picked).copied().collect(),
        )?;
        let mut picked = picked.into_iter();
        let primary = match req.primary_ip {
            Some(ip) => {
                explicit.remove(0);
                ip
            }
            None => picked
                .next()
                .ok_or_else(|| insufficient_addresses(&req.subnet_id))?,
        };
        let secondaries: Vec<Ipv4Addr> = explicit.into_iter().chain(picked).collect();
        let id = self.ids.id("eni");
        let eni = Eni {
            id: id.clone(),
            subnet_id: subnet.id.clone(),
            az: subnet.az.clone(),
            description: req.description.clone(),
            mac: self.ids.mac(),
            interface_type: req.interface_type.unwrap_or(InterfaceType::Interface),
            primary_ip: primary,
            secondary_ips: secondaries,
            prefixes,
            groups,
            tags: req.tags.clone(),
            attachment: None,
            trunk_association: None,
            source_dest_check: true,
        };
        let ips: Vec<Ipv4Addr> = eni.all_ips().collect();
        self.take_addresses(&eni.subnet_id, &id, &ips, &eni.prefixes);
        self.state.enis.insert(id, eni.clone());
        if let Some(token) = client_token {
            self.idempotency.record(
                token.to_owned(),
                idem,
                IdemResult::Eni(Box::new(eni.clone())),
            );
        }
        Ok(eni)
    }

    /// AttachNetworkInterface. The ENI goes through `attaching` for the configured
    /// attach time before it is `in-use`.
    pub fn attach_network_interface(
        &mut self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
        now: Instant,
    ) -> CloudResult<String> {
        self.settle(now);
        let eni = self.eni(eni_id)?;
        let instance = self.instance(instance_id)?;
        let itype = self.instance_type_of(instance)?;
        if eni.status() != EniStatus::Available {
            return Err(CloudError::new(
                ErrorCode::InvalidNetworkInterfaceInUse,
                format!("Interface: [{eni_id}] in use."),
            ));
        }
        if eni.az != instance.az {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                format!(
                    "The network interface {eni_id} and instance {instance_id} are not in the same availability zone"
                ),
            ));
        }
        if eni.interface_type == InterfaceType::Branch {
            return Err(CloudError::invalid_parameter(format!(
                "Branch interface {eni_id} can only be associated with a trunk interface"
            )));
        }
        let attached: Vec<&Eni> = self
            .state
            .enis
            .values()
            .filter(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == instance_id)
            })
            .collect();
        if attached.len() as u32 >= itype.max_enis {
            return Err(CloudError::new(
                ErrorCode::AttachmentLimitExceeded,
                format!(
                    "Interface count {} exceeds the limit for {}",
                    attached.len() + 1,
                    itype.name
                ),
            ));
        }
        if attached.iter().any(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|a| a.device_index == device_index)
        }) {
            return Err(CloudError::invalid_parameter(format!(
                "Instance '{instance_id}' already has an interface attached at device index '{device_index}'."
            )));
        }
        if eni.interface_type == InterfaceType::Trunk {
            if !itype.trunk {
                return Err(CloudError::new(
                    ErrorCode::UnsupportedOperation,
                    format!(
                        "Instance type {} does not support trunk network interfaces",
                        itype.name
                    ),
                ));
            }
            if attached
                .iter()
                .any(|e| e.interface_type == InterfaceType::Trunk)
            {
                return Err(CloudError::new(
                    ErrorCode::OperationNotPermitted,
                    format!("Instance '{instance_id}' already has a trunk network interface"),
                ));
            }
        }
        if eni.ipv4_slots() > itype.ipv4_per_eni {
            return Err(limit_exceeded(eni_id, itype.ipv4_per_eni));
        }
        let attach_delay = self.timing.attach;
        let attachment_id = self.ids.id("eni-attach");
        let (state, transition_at) = if attach_delay.is_zero() {
            (AttachState::Attached, None)
        } else {
            (AttachState::Attaching, Some(now + attach_delay))
        };
        if let Some(eni) = self.state.enis.get_mut(eni_id) {
            eni.attachment = Some(Attachment {
                id: attachment_id.clone(),
                instance_id: instance_id.to_owned(),
                device_index,
                state,
                transition_at,
                attach_time: SystemTime::now(),
                delete_on_termination: false,
            });
        }
        Ok(attachment_id)
    }

    /// DetachNetworkInterface. The primary interface never detaches; a trunk with
    /// members does not either.
    pub fn detach_network_interface(
        &mut self,
        attachment_id: &str,
        now: Instant,
    ) -> CloudResult<()> {
        self.settle(now);
        let eni = self
            .state
            .enis
            .values()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.id == attachment_id))
            .ok_or_else(|| {
                CloudError::new(
                    ErrorCode::InvalidAttachmentIdNotFound,
                    format!("The attachment ID '{attachment_id}' does not exist"),
                )
            })?;
        let eni_id = eni.id.clone();
        let Some(att) = &eni.attachment else {
            return Err(CloudError::new(
                ErrorCode::InvalidAttachmentIdNotFound,
                attachment_id.to_owned(),
            ));
        };
        if att.device_index == 0 {
            return Err(CloudError::new(
                ErrorCode::OperationNotPermitted,
                format!("The network interface at device index 0 cannot be detached ({eni_id})."),
            ));
        }
        if att.state == AttachState::Detaching {
            return Ok(());
        }
        if self
            .state
            .trunk_associations
            .values()
            .any(|a| a.trunk_eni_id == eni_id)
        {
            return Err(CloudError::new(
                ErrorCode::OperationNotPermitted,
                format!("Trunk interface {eni_id} still has branch interfaces associated"),
            ));
        }
        let delay = self.timing.detach;
        if let Some(eni) = self.state.enis.get_mut(&eni_id) {
            if delay.is_zero() {
                eni.attachment = None;
            } else if let Some(att) = &mut eni.attachment {
                att.state = AttachState::Detaching;
                att.transition_at = Some(now + delay);
            }
        }
        Ok(())
    }

    pub fn delete_network_interface(&mut self, eni_id: &str, now: Instant) -> CloudResult<()> {
        self.settle(now);
        let eni = self.eni(eni_id)?;
        if eni.attachment.is_some() || eni.trunk_association.is_some() {
            return Err(CloudError::new(
                ErrorCode::InvalidNetworkInterfaceInUse,
                format!("Network interface '{eni_id}' is currently in use."),
            ));
        }
        self.remove_eni(eni_id);
        Ok(())
    }

    /// [`Cloud::assign_private_ips`] with a client token (ECS's): a repeat with the same
    /// token and request answers what the first call assigned and assigns nothing more.
    pub fn assign_private_ips_once(
        &mut self,
        eni_id: &str,
        req: &AssignIps,
        client_token: Option<&str>,
    ) -> CloudResult<AssignedIps> {
        let Some(token) = client_token else {
            return self.assign_private_ips(eni_id, req);
        };
        check_client_token(token)?;
        let idem = IdemRequest::AssignIps(eni_id.to_owned(), req.clone());
        if let Some(IdemResult::Assigned(got)) = self.idempotency.lookup(token, &idem)? {
            return Ok(got);
        }
        let got = self.assign_private_ips(eni_id, req)?;
        self.idempotency
            .record(token.to_owned(), idem, IdemResult::Assigned(got.clone()));
        Ok(got)
    }

    /// AssignPrivateIpAddresses: explicit addresses or a count, or explicit prefixes or a
    /// prefix count; all or nothing.
    pub fn assign_private_ips(
        &mut self,
        eni_id: &str,
        req: &AssignIps,
    ) -> CloudResult<AssignedIps> {
        let eni = self.eni(eni_id)?;
        let wants_ips = !req.ips.is_empty() || req.count > 0;
        let wants_prefixes = !req.prefixes.is_empty() || req.prefix_count > 0;
        if (!req.ips.is_empty() && req.count > 0)
            || (!req.prefixes.is_empty() && req.prefix_count > 0)
            || (wants_ips && wants_prefixes)
        {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                "Specify one of PrivateIpAddress, SecondaryPrivateIpAddressCount, Ipv4Prefix or Ipv4PrefixCount",
            ));
        }
        if !wants_ips && !wants_prefixes {
            return Err(CloudError::new(
                ErrorCode::MissingParameter,
                "Either PrivateIpAddress, SecondaryPrivateIpAddressCount, Ipv4Prefix or Ipv4PrefixCount is required",
            ));
        }
        if wants_prefixes && eni.interface_type == InterfaceType::Trunk {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                "Prefix delegation is not supported on trunk interfaces",
            ));
        }
        let limit = self.eni_ipv4_limit(eni);
        let new_slots =
            req.ips.len() as u32 + req.count + req.prefixes.len() as u32 + req.prefix_count;
        if eni.ipv4_slots() + new_slots > limit {
            return Err(limit_exceeded(eni_id, limit));
        }
        let subnet = &self.state.subnets[&eni.subnet_id];
        check_explicit_ips(subnet, &req.ips, Some(eni), req.allow_reassignment)?;
        // Addresses moved here from other ENIs, with their current holder.
        let moved: Vec<(Ipv4Addr, String)> = req
            .ips
            .iter()
            .filter_map(|ip| {
                subnet
                    .addresses
                    .get(ip)
                    .filter(|h| *h != eni_id)
                    .map(|h| (*ip, h.clone()))
            })
            .collect();
        if let Some((ip, _)) = moved.iter().find(|(ip, holder)| {
            self.state
                .enis
                .get(holder)
                .is_some_and(|h| h.primary_ip == *ip)
        }) {
            return Err(CloudError::new(
                ErrorCode::InvalidIpAddressInUse,
                format!("Address {ip} is the primary address of another interface."),
            ));
        }
        let picked = subnet
            .pick_addresses(req.count as usize, &BTreeSet::new())
            .ok_or_else(|| insufficient_addresses(&eni.subnet_id))?;
        let prefixes = plan_prefixes(subnet, &req.prefixes, req.prefix_count, &BTreeSet::new())?;
        let ips: Vec<Ipv4Addr> = req
            .ips
            .iter()
            .copied()
            .filter(|ip| !eni.secondary_ips.contains(ip))
            .chain(picked)
            .collect();
        let subnet_id = eni.subnet_id.clone();
        for (ip, holder) in &moved {
            if let Some(h) = self.state.enis.get_mut(holder) {
                h.secondary_ips.retain(|x| x != ip);
            }
        }
        self.take_addresses(&subnet_id, eni_id, &ips, &prefixes);
        if let Some(eni) = self.state.enis.get_mut(eni_id) {
            eni.secondary_ips.extend(&ips);
            eni.prefixes.extend(&prefixes);
        }
        Ok(AssignedIps { ips, prefixes })
    }

    pub fn unassign_private_ips(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> CloudResult<()> {
        let eni = self.eni(eni_id)?;
        if ips.is_empty() && prefixes.is_empty() {
            return Err(CloudError::new(
                ErrorCode::MissingParameter,
                "PrivateIpAddress or Ipv4Prefix is required",
            ));
        }
        if ips.contains(&eni.primary_ip) {
            return Err(CloudError::invalid_parameter(format!(
                "The primary address {} of {eni_id} cannot be unassigned",
                eni.primary_ip
            )));
        }
        if let Some(ip) = ips.iter().find(|ip| !eni.secondary_ips.contains(ip)) {
            return Err(CloudError::invalid_parameter(format!(
                "Some of the specified addresses are not assigned to interface {eni_id} ({ip})"
            )));
        }
        if let Some(p) = prefixes.iter().find(|p| !eni.prefixes.contains(p)) {
            return Err(CloudError::invalid_parameter(format!(
                "Prefix {p} is not assigned to interface {eni_id}"
            )));
        }
        let subnet_id = eni.subnet_id.clone();
        self.release_addresses(&subnet_id, ips, prefixes);
        if let Some(eni) = self.state.enis.get_mut(eni_id) {
            eni.secondary_ips.retain(|ip| !ips.contains(ip));
            eni.prefixes.retain(|p| !prefixes.contains(p));
        }
        Ok(())
    }

    /// ModifyNetworkInterfaceAttribute with SecurityGroupId.N.
    pub fn set_security_groups(&mut self, eni_id: &str, groups: &[String]) -> CloudResult<()> {
        self.eni(eni_id)?;
        if groups.is_empty() {
            return Err(CloudError::new(
                ErrorCode::MissingParameter,
                "SecurityGroupId is required",
            ));
        }
        let ids = self.resolve_groups(groups)?;
        if let Some(eni) = self.state.enis.get_mut(eni_id) {
            eni.groups = ids;
        }
        Ok(())
    }
}

/// Explicit addresses must be in the subnet, not reserved, not repeated, and free unless
/// reassignment is allowed (it never takes a primary address or one inside a prefix).
fn check_explicit_ips(
    subnet: &Subnet,
    ips: &[Ipv4Addr],
    target: Option<&Eni>,
    allow_reassignment: bool,
) -> CloudResult<()> {
    let mut seen = BTreeSet::new();
    for ip in ips {
        if !seen.insert(*ip) {
            return Err(CloudError::invalid_parameter(format!(
                "Address {ip} is given twice"
            )));
        }
        if !subnet.cidr.contains(ip) {
            return Err(CloudError::invalid_parameter(format!(
                "Address {ip} does not fall within the subnet's address range ({})",
                subnet.cidr
            )));
        }
        if subnet.is_reserved(*ip) {
            return Err(CloudError::invalid_parameter(format!(
                "Address {ip} is in subnet's reserved address range"
            )));
        }
        let in_use = || {
            CloudError::new(
                ErrorCode::InvalidIpAddressInUse,
                format!("Address {ip} is in use."),
            )
        };
        if let Some(holder) = subnet.addresses.get(ip) {
            let own_primary = target.is_some_and(|t| &t.id == holder && t.primary_ip == *ip);
            // Reassignment moves secondaries only; the caller refuses other ENIs' primaries.
            if !allow_reassignment || own_primary {
                return Err(in_use());
            }
        } else if subnet.holder(*ip).is_some() {
            return Err(in_use());
        }
    }
    Ok(())
}

/// Explicit /28 prefixes (aligned, inside the subnet, free) or `count` free ones.
fn plan_prefixes(
    subnet: &Subnet,
    explicit: &[Ipv4Net],
    count: u32,
    taken: &BTreeSet<Ipv4Addr>,
) -> CloudResult<Vec<Ipv4Net>> {
    for p in explicit {
        if p.prefix_len() != DELEGATED_PREFIX_LEN || p.trunc() != *p || !subnet.cidr.contains(p) {
            return Err(CloudError::invalid_parameter(format!(
                "Prefix {p} is not an aligned /28 inside subnet {}",
                subnet.cidr
            )));
        }
        if !subnet.prefix_is_free(*p) || taken.iter().any(|ip| p.contains(ip)) {
            return Err(CloudError::new(
                ErrorCode::InvalidIpAddressInUse,
                format!("Prefix {p} overlaps addresses in use"),
            ));
        }
    }
    if !explicit.is_empty() {
        return Ok(explicit.to_vec());
    }
    let mut blocked: Vec<Ipv4Net> = Vec::new();
    if !taken.is_empty()
        && let Ok(blocks) = subnet.cidr.subnets(DELEGATED_PREFIX_LEN)
    {
        blocked = blocks
            .filter(|b| taken.iter().any(|ip| b.contains(ip)))
            .collect();
    }
    subnet.pick_prefixes(count as usize, &blocked).ok_or_else(|| {
        CloudError::new(
            ErrorCode::InsufficientCidrBlocks,
            format!(
                "The specified subnet {} does not have enough contiguous free address space for {count} /28 prefixes",
                subnet.id
            ),
        )
    })
}

impl Cloud {
    /// ModifyNetworkInterfaceAttribute with Description or SourceDestCheck.
    pub fn set_eni_attribute(
        &mut self,
        eni_id: &str,
        description: Option<&str>,
        source_dest_check: Option<bool>,
    ) -> CloudResult<()> {
        self.eni(eni_id)?;
        if let Some(eni) = self.state.enis.get_mut(eni_id) {
            if let Some(d) = description {
                eni.description = d.to_owned();
            }
            if let Some(s) = source_dest_check {
                eni.source_dest_check = s;
            }
        }
        Ok(())
    }
}
