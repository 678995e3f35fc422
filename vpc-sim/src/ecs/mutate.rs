//! Mutating actions with ECS's parameters and semantics: the cloud picks a new ENI's
//! device index, and a member ENI is attached to a trunk (its VLAN id is its device
//! index on the trunk) instead of being associated by the caller's VLAN id.

use std::net::Ipv4Addr;
use std::time::Instant;

use serde_json::{Value, json};

use super::render;
use crate::cloud::Cloud;
use crate::cloud::model::{Eni, InterfaceType};
use crate::cloud::requests::{AssignIps, AssociateTrunk, CreateEni};
use crate::ec2::params::Params;
use crate::error::{CloudError, CloudResult, ErrorCode};

/// Secondary addresses ECS assigns with a new ENI at most.
const MAX_SECONDARY_AT_CREATE: u32 = 49;
const VLAN_IDS: std::ops::RangeInclusive<u16> = 1..=4094;

fn missing(name: &str) -> CloudError {
    CloudError::new(
        ErrorCode::MissingParameter,
        format!(
            "The input parameter {name} that is mandatory for processing this request is not supplied."
        ),
    )
}

fn required<'a>(params: &'a Params, name: &str) -> CloudResult<&'a str> {
    params.required(name).map_err(|_| missing(name))
}

fn eni<'a>(cloud: &'a Cloud, id: &str) -> CloudResult<&'a Eni> {
    cloud
        .state()
        .enis
        .get(id)
        .ok_or_else(|| CloudError::eni_not_found(id))
}

fn wrong_state(eni: &Eni, wanted: &str) -> CloudError {
    CloudError::new(
        ErrorCode::IncorrectState,
        format!(
            "The ENI {} is {} ({}); the operation needs it {wanted}.",
            eni.id,
            render::status(eni),
            render::eni_type(eni)
        ),
    )
}

/// `SecurityGroupIds.N`, or the single `SecurityGroupId`.
fn groups(params: &Params) -> Vec<String> {
    let mut groups = params.list("SecurityGroupIds");
    if groups.is_empty() {
        groups.extend(params.get("SecurityGroupId").map(str::to_owned));
    }
    groups
}

fn empty() -> Value {
    json!({})
}

pub fn create_network_interface(params: &Params, cloud: &mut Cloud) -> CloudResult<Value> {
    let interface_type = match params.get("InstanceType") {
        None | Some("Secondary") => InterfaceType::Interface,
        Some("Trunk") => InterfaceType::Trunk,
        Some(other) => {
            return Err(CloudError::invalid_parameter(format!(
                "The specified parameter InstanceType is not valid: {other} (Secondary or Trunk)."
            )));
        }
    };
    let groups = groups(params);
    if groups.is_empty() {
        return Err(missing("SecurityGroupIds"));
    }
    let secondary_count = params
        .parsed("SecondaryPrivateIpAddressCount")?
        .unwrap_or(0);
    if secondary_count > MAX_SECONDARY_AT_CREATE {
        return Err(CloudError::invalid_parameter(format!(
            "SecondaryPrivateIpAddressCount {secondary_count} exceeds {MAX_SECONDARY_AT_CREATE} at creation."
        )));
    }
    let req = CreateEni {
        subnet_id: required(params, "VSwitchId")?.to_owned(),
        description: params.get("Description").unwrap_or_default().to_owned(),
        primary_ip: params.ipv4("PrimaryIpAddress")?,
        secondary_ips: params.parsed_list("PrivateIpAddress")?,
        secondary_count,
        prefixes: params.prefixes(params.list("Ipv4Prefix"))?,
        prefix_count: params.parsed("Ipv4PrefixCount")?.unwrap_or(0),
        groups,
        interface_type: Some(interface_type),
        tags: tags(params)?,
    };
    let created = cloud.create_network_interface(&req, params.get("ClientToken"))?;
    Ok(render::network_interface(cloud.state(), &created))
}

/// `Tag.N.Key/Value`, refusing keys ECS reserves.
fn tags(params: &Params) -> CloudResult<crate::cloud::model::Tags> {
    let tags = params.tags("Tag");
    if let Some(k) = tags
        .keys()
        .find(|k| k.starts_with("aliyun") || k.starts_with("acs:"))
    {
        return Err(CloudError::invalid_parameter(format!(
            "The tag key {k} starts with a reserved prefix (aliyun, acs:)."
        )));
    }
    Ok(tags)
}

pub fn attach_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
) -> CloudResult<Value> {
    let eni_id = required(params, "NetworkInterfaceId")?;
    let instance_id = required(params, "InstanceId")?;
    if params
        .parsed::<u32>("NetworkCardIndex")?
        .is_some_and(|n| n != 0)
    {
        return Err(CloudError::invalid_parameter(
            "Only network card 0 exists on these instance types.",
        ));
    }
    let state = cloud.state();
    let instance = state
        .instances
        .get(instance_id)
        .ok_or_else(|| CloudError::instance_not_found(instance_id))?;
    let member = eni(cloud, eni_id)?;
    if member.attachment.is_some() || member.trunk_association.is_some() {
        return Err(wrong_state(member, "Available"));
    }
    if let Some(trunk_id) = params.get("TrunkNetworkInstanceId") {
        let trunk = eni(cloud, trunk_id)?;
        if trunk.attachment.as_ref().map(|a| a.instance_id.as_str()) != Some(instance_id) {
            return Err(CloudError::invalid_parameter(format!(
                "The trunk ENI {trunk_id} is not attached to {instance_id}."
            )));
        }
        // The member's device index on the trunk, its VLAN id: the lowest free one.
        let used: Vec<u16> = state
            .trunk_associations
            .values()
            .filter(|a| a.trunk_eni_id == trunk_id)
            .map(|a| a.vlan_id)
            .collect();
        let vlan = VLAN_IDS
            .clone()
            .find(|v| !used.contains(v))
            .ok_or_else(|| {
                CloudError::new(
                    ErrorCode::AttachmentLimitExceeded,
                    format!("The trunk ENI {trunk_id} has no free device index."),
                )
            })?;
        let req = AssociateTrunk {
            branch_eni_id: eni_id.to_owned(),
            trunk_eni_id: trunk_id.to_owned(),
            vlan_id: u32::from(vlan),
            gre_key: None,
        };
        cloud.associate_trunk_interface(&req, None, now)?;
        return Ok(empty());
    }
    let max_enis = cloud
        .catalog()
        .get(&instance.instance_type)
        .map_or(0, |t| t.max_enis);
    let used: Vec<u32> = state
        .enis
        .values()
        .filter_map(|e| e.attachment.as_ref())
        .filter(|a| a.instance_id == instance_id)
        .map(|a| a.device_index)
        .collect();
    let index = (1..max_enis).find(|i| !used.contains(i)).ok_or_else(|| {
        CloudError::new(
            ErrorCode::AttachmentLimitExceeded,
            format!(
                "The instance {instance_id} ({}) has {max_enis} ENIs attached already.",
                instance.instance_type
            ),
        )
    })?;
    cloud.attach_network_interface(eni_id, instance_id, index, now)?;
    Ok(empty())
}

pub fn detach_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
) -> CloudResult<Value> {
    let eni_id = required(params, "NetworkInterfaceId")?;
    let instance_id = required(params, "InstanceId")?;
    let trunk_id = params.get("TrunkNetworkInstanceId");
    let state = cloud.state();
    let target = eni(cloud, eni_id)?;
    if let Some(assoc) = target
        .trunk_association
        .as_ref()
        .and_then(|id| state.trunk_associations.get(id))
    {
        let on_instance = state
            .enis
            .get(&assoc.trunk_eni_id)
            .and_then(|t| t.attachment.as_ref())
            .is_some_and(|a| a.instance_id == instance_id);
        if trunk_id.is_some_and(|t| t != assoc.trunk_eni_id) || !on_instance {
            return Err(CloudError::invalid_parameter(format!(
                "The member ENI {eni_id} is not on trunk {} of {instance_id}.",
                trunk_id.unwrap_or("(none given)")
            )));
        }
        let id = assoc.id.clone();
        cloud.disassociate_trunk_interface(&id, None)?;
        return Ok(empty());
    }
    match &target.attachment {
        Some(a) if a.instance_id == instance_id => {
            let id = a.id.clone();
            cloud.detach_network_interface(&id, now)?;
            Ok(empty())
        }
        _ => Err(wrong_state(target, &format!("InUse on {instance_id}"))),
    }
}

pub fn delete_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
) -> CloudResult<Value> {
    cloud.delete_network_interface(required(params, "NetworkInterfaceId")?, now)?;
    Ok(empty())
}

pub fn modify_attribute(params: &Params, cloud: &mut Cloud) -> CloudResult<Value> {
    let eni_id = required(params, "NetworkInterfaceId")?;
    let groups = params.list("SecurityGroupId");
    if !groups.is_empty() {
        cloud.set_security_groups(eni_id, &groups)?;
    }
    if let Some(description) = params.get("Description") {
        cloud.set_eni_attribute(eni_id, Some(description), None)?;
    }
    Ok(empty())
}

pub fn assign_private_ip_addresses(params: &Params, cloud: &mut Cloud) -> CloudResult<Value> {
    let eni_id = required(params, "NetworkInterfaceId")?;
    let req = AssignIps {
        ips: params.parsed_list("PrivateIpAddress")?,
        count: params
            .parsed("SecondaryPrivateIpAddressCount")?
            .unwrap_or(0),
        prefixes: params.prefixes(params.list("Ipv4Prefix"))?,
        prefix_count: params.parsed("Ipv4PrefixCount")?.unwrap_or(0),
        allow_reassignment: false,
    };
    let got = cloud.assign_private_ips_once(eni_id, &req, params.get("ClientToken"))?;
    let ips: Vec<String> = got.ips.iter().map(ToString::to_string).collect();
    let prefixes: Vec<String> = got.prefixes.iter().map(ToString::to_string).collect();
    Ok(json!({
        "AssignedPrivateIpAddressesSet": {
            "NetworkInterfaceId": eni_id,
            "PrivateIpSet": {"PrivateIpAddress": ips},
            "Ipv4PrefixSet": {"Ipv4Prefixes": prefixes},
        }
    }))
}

pub fn unassign_private_ip_addresses(params: &Params, cloud: &mut Cloud) -> CloudResult<Value> {
    let eni_id = required(params, "NetworkInterfaceId")?;
    let ips: Vec<Ipv4Addr> = params.parsed_list("PrivateIpAddress")?;
    let prefixes = params.prefixes(params.list("Ipv4Prefix"))?;
    let target = eni(cloud, eni_id)?;
    let absent_ip = ips.iter().find(|ip| !target.secondary_ips.contains(ip));
    let absent_prefix = prefixes.iter().find(|p| !target.prefixes.contains(p));
    if let Some(what) = absent_ip
        .map(ToString::to_string)
        .or(absent_prefix.map(ToString::to_string))
    {
        return Err(CloudError::new(
            ErrorCode::InvalidIpUnassigned,
            format!("The address {what} is not assigned to {eni_id}."),
        ));
    }
    cloud.unassign_private_ips(eni_id, &ips, &prefixes)?;
    Ok(empty())
}

pub fn tag_resources(params: &Params, cloud: &mut Cloud) -> CloudResult<Value> {
    let prefix = match required(params, "ResourceType")? {
        "eni" => "eni-",
        "instance" => "i-",
        "securitygroup" => "sg-",
        other => {
            return Err(CloudError::invalid_parameter(format!(
                "The specified parameter ResourceType is not valid here: {other}."
            )));
        }
    };
    let ids = params.list("ResourceId");
    if let Some(bad) = ids.iter().find(|id| !id.starts_with(prefix)) {
        return Err(CloudError::invalid_parameter(format!(
            "The resource {bad} is not of the given ResourceType."
        )));
    }
    cloud.create_tags(&ids, &tags(params)?)?;
    Ok(empty())
}
