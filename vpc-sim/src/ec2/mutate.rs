//! Mutating actions: parse the query parameters, call the state machine, render.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::params::Params;
use super::render;
use super::xml::Xml;
use crate::cloud::Cloud;
use crate::cloud::model::{InterfaceType, Tags};
use crate::cloud::requests::{AssignIps, AssociateTrunk, CreateEni};
use crate::error::{CloudError, CloudResult, ErrorCode};

fn returned_true(action: &str, request_id: &str) -> String {
    Xml::response(action, request_id, |x| x.leaf("return", true))
}

/// TagSpecification.N for one resource type; other types are refused.
fn tag_specifications(params: &Params, resource_type: &str) -> CloudResult<Tags> {
    let mut tags = Tags::new();
    for spec in params.structs("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or_default();
        if rt != resource_type {
            return Err(CloudError::invalid_parameter(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            )));
        }
        tags.extend(spec.tags("Tag"));
    }
    Ok(tags)
}

pub fn create_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    request_id: &str,
) -> CloudResult<String> {
    let interface_type = match params.get("InterfaceType") {
        None => None,
        Some("interface") => Some(InterfaceType::Interface),
        Some("trunk") => Some(InterfaceType::Trunk),
        Some("branch") => Some(InterfaceType::Branch),
        Some(other @ ("efa" | "efa-only")) => {
            return Err(CloudError::new(
                ErrorCode::UnsupportedOperation,
                format!("InterfaceType {other} is not supported in this VPC"),
            ));
        }
        Some(other) => {
            return Err(CloudError::invalid_parameter(format!(
                "Invalid value '{other}' for InterfaceType"
            )));
        }
    };
    let mut primary_ip = params.ipv4("PrivateIpAddress")?;
    let mut secondary_ips = Vec::new();
    for spec in params.structs("PrivateIpAddresses") {
        let ip: Ipv4Addr = spec.ipv4("PrivateIpAddress")?.ok_or_else(|| {
            CloudError::new(
                ErrorCode::MissingParameter,
                "PrivateIpAddresses.N.PrivateIpAddress",
            )
        })?;
        if spec.flag("Primary")? {
            if primary_ip.is_some_and(|p| p != ip) {
                return Err(CloudError::new(
                    ErrorCode::InvalidParameterCombination,
                    "Two primary addresses given",
                ));
            }
            primary_ip = Some(ip);
        } else {
            secondary_ips.push(ip);
        }
    }
    let prefixes = params.prefixes(
        params
            .structs("Ipv4Prefix")
            .iter()
            .filter_map(|s| s.get("Ipv4Prefix").map(str::to_owned))
            .collect(),
    )?;
    let req = CreateEni {
        subnet_id: params.required("SubnetId")?.to_owned(),
        description: params.get("Description").unwrap_or_default().to_owned(),
        primary_ip,
        secondary_ips,
        secondary_count: params
            .parsed("SecondaryPrivateIpAddressCount")?
            .unwrap_or(0),
        prefixes,
        prefix_count: params.parsed("Ipv4PrefixCount")?.unwrap_or(0),
        groups: params.list("SecurityGroupId"),
        interface_type,
        tags: tag_specifications(params, "network-interface")?,
    };
    let token = params.get("ClientToken");
    let eni = cloud.create_network_interface(&req, token)?;
    let state = cloud.state();
    Ok(Xml::response("CreateNetworkInterface", request_id, |x| {
        x.elem("networkInterface", |x| {
            render::network_interface(x, state, &eni)
        });
        x.opt_leaf("clientToken", token);
    }))
}

pub fn attach_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
    request_id: &str,
) -> CloudResult<String> {
    if params
        .parsed::<u32>("NetworkCardIndex")?
        .is_some_and(|n| n != 0)
    {
        return Err(CloudError::invalid_parameter(
            "Only network card 0 exists on these instance types",
        ));
    }
    let device_index = params.parsed::<u32>("DeviceIndex")?.ok_or_else(|| {
        CloudError::new(
            ErrorCode::MissingParameter,
            "The request must contain the parameter DeviceIndex",
        )
    })?;
    let attachment_id = cloud.attach_network_interface(
        params.required("NetworkInterfaceId")?,
        params.required("InstanceId")?,
        device_index,
        now,
    )?;
    Ok(Xml::response("AttachNetworkInterface", request_id, |x| {
        x.leaf("attachmentId", attachment_id);
        x.leaf("networkCardIndex", 0);
    }))
}

pub fn detach_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
    request_id: &str,
) -> CloudResult<String> {
    params.flag("Force")?;
    cloud.detach_network_interface(params.required("AttachmentId")?, now)?;
    Ok(returned_true("DetachNetworkInterface", request_id))
}

pub fn delete_network_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
    request_id: &str,
) -> CloudResult<String> {
    cloud.delete_network_interface(params.required("NetworkInterfaceId")?, now)?;
    Ok(returned_true("DeleteNetworkInterface", request_id))
}

pub fn modify_network_interface_attribute(
    params: &Params,
    cloud: &mut Cloud,
    request_id: &str,
) -> CloudResult<String> {
    let eni_id = params.required("NetworkInterfaceId")?;
    let groups = params.list("SecurityGroupId");
    let description = params.get("Description.Value");
    let source_dest_check = params.parsed::<bool>("SourceDestCheck.Value")?;
    let given = usize::from(!groups.is_empty())
        + usize::from(description.is_some())
        + usize::from(source_dest_check.is_some());
    if given != 1 {
        return Err(CloudError::new(
            ErrorCode::InvalidParameterCombination,
            "Exactly one attribute (SecurityGroupId, Description, SourceDestCheck) must be modified per call",
        ));
    }
    if !groups.is_empty() {
        cloud.set_security_groups(eni_id, &groups)?;
    } else {
        cloud.set_eni_attribute(eni_id, description, source_dest_check)?;
    }
    Ok(returned_true("ModifyNetworkInterfaceAttribute", request_id))
}

pub fn assign_private_ip_addresses(
    params: &Params,
    cloud: &mut Cloud,
    request_id: &str,
) -> CloudResult<String> {
    let eni_id = params.required("NetworkInterfaceId")?;
    let req = AssignIps {
        ips: params.parsed_list("PrivateIpAddress")?,
        count: params
            .parsed("SecondaryPrivateIpAddressCount")?
            .unwrap_or(0),
        prefixes: params.prefixes(params.list("Ipv4Prefix"))?,
        prefix_count: params.parsed("Ipv4PrefixCount")?.unwrap_or(0),
        allow_reassignment: params.flag("AllowReassignment")?,
    };
    let got = cloud.assign_private_ips(eni_id, &req)?;
    Ok(Xml::response("AssignPrivateIpAddresses", request_id, |x| {
        x.leaf("networkInterfaceId", eni_id);
        x.list("assignedPrivateIpAddressesSet", &got.ips, |x, ip| {
            x.leaf("privateIpAddress", ip)
        });
        x.list("assignedIpv4PrefixSet", &got.prefixes, |x, p| {
            x.leaf("ipv4Prefix", p)
        });
    }))
}

pub fn unassign_private_ip_addresses(
    params: &Params,
    cloud: &mut Cloud,
    request_id: &str,
) -> CloudResult<String> {
    let ips: Vec<Ipv4Addr> = params.parsed_list("PrivateIpAddress")?;
    let prefixes = params.prefixes(params.list("Ipv4Prefix"))?;
    cloud.unassign_private_ips(params.required("NetworkInterfaceId")?, &ips, &prefixes)?;
    Ok(returned_true("UnassignPrivateIpAddresses", request_id))
}

pub fn create_tags(params: &Params, cloud: &mut Cloud, request_id: &str) -> CloudResult<String> {
    cloud.create_tags(&params.list("ResourceId"), &params.tags("Tag"))?;
    Ok(returned_true("CreateTags", request_id))
}

pub fn associate_trunk_interface(
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
    request_id: &str,
) -> CloudResult<String> {
    let req = AssociateTrunk {
        branch_eni_id: params.required("BranchInterfaceId")?.to_owned(),
        trunk_eni_id: params.required("TrunkInterfaceId")?.to_owned(),
        vlan_id: params.parsed("VlanId")?.ok_or_else(|| {
            CloudError::new(
                ErrorCode::MissingParameter,
                "The request must contain the parameter VlanId",
            )
        })?,
        gre_key: params.parsed("GreKey")?,
    };
    let token = params.get("ClientToken");
    let assoc = cloud.associate_trunk_interface(&req, token, now)?;
    Ok(Xml::response("AssociateTrunkInterface", request_id, |x| {
        x.elem("interfaceAssociation", |x| {
            render::trunk_association(x, &assoc)
        });
        x.opt_leaf("clientToken", token);
    }))
}

pub fn disassociate_trunk_interface(
    params: &Params,
    cloud: &mut Cloud,
    request_id: &str,
) -> CloudResult<String> {
    let token = params.get("ClientToken");
    cloud.disassociate_trunk_interface(params.required("AssociationId")?, token)?;
    Ok(Xml::response(
        "DisassociateTrunkInterface",
        request_id,
        |x| {
            x.leaf("return", true);
            x.opt_leaf("clientToken", token);
        },
    ))
}
