//! The EC2 Query API front end: action dispatch onto the state machine.

mod describe;
mod mutate;
pub mod params;
mod render;
pub mod xml;

use std::time::Instant;

use crate::catalog::Catalog;
use crate::cloud::{Cloud, CloudState};
use crate::error::{CloudError, CloudResult, ErrorCode};
use params::Params;

/// The API version every request and response speaks.
pub const API_VERSION: &str = "2016-11-15";

pub const DESCRIBE_ACTIONS: &[&str] = &[
    "DescribeInstances",
    "DescribeInstanceTypes",
    "DescribeSubnets",
    "DescribeSecurityGroups",
    "DescribeNetworkInterfaces",
    "DescribeTrunkInterfaceAssociations",
];

pub const MUTATING_ACTIONS: &[&str] = &[
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "CreateTags",
    "AssociateTrunkInterface",
    "DisassociateTrunkInterface",
];

pub fn is_describe(action: &str) -> bool {
    DESCRIBE_ACTIONS.contains(&action)
}

pub fn is_known(action: &str) -> bool {
    is_describe(action) || MUTATING_ACTIONS.contains(&action)
}

/// DryRun=true answers DryRunOperation for a request that would be accepted.
pub fn check_dry_run(params: &Params) -> CloudResult<()> {
    if params.flag("DryRun")? {
        return Err(CloudError::new(
            ErrorCode::DryRunOperation,
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    Ok(())
}

pub fn describe(
    action: &str,
    params: &Params,
    state: &CloudState,
    catalog: &Catalog,
    request_id: &str,
) -> CloudResult<String> {
    match action {
        "DescribeInstances" => describe::instances(params, state, request_id),
        "DescribeInstanceTypes" => describe::instance_types(params, catalog, request_id),
        "DescribeSubnets" => describe::subnets(params, state, request_id),
        "DescribeSecurityGroups" => describe::security_groups(params, state, request_id),
        "DescribeNetworkInterfaces" => describe::network_interfaces(params, state, request_id),
        "DescribeTrunkInterfaceAssociations" => {
            describe::trunk_associations(params, state, request_id)
        }
        other => Err(unknown_action(other)),
    }
}

pub fn mutate(
    action: &str,
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
    request_id: &str,
) -> CloudResult<String> {
    match action {
        "CreateNetworkInterface" => mutate::create_network_interface(params, cloud, request_id),
        "AttachNetworkInterface" => {
            mutate::attach_network_interface(params, cloud, now, request_id)
        }
        "DetachNetworkInterface" => {
            mutate::detach_network_interface(params, cloud, now, request_id)
        }
        "DeleteNetworkInterface" => {
            mutate::delete_network_interface(params, cloud, now, request_id)
        }
        "ModifyNetworkInterfaceAttribute" => {
            mutate::modify_network_interface_attribute(params, cloud, request_id)
        }
        "AssignPrivateIpAddresses" => {
            mutate::assign_private_ip_addresses(params, cloud, request_id)
        }
        "UnassignPrivateIpAddresses" => {
            mutate::unassign_private_ip_addresses(params, cloud, request_id)
        }
        "CreateTags" => mutate::create_tags(params, cloud, request_id),
        "AssociateTrunkInterface" => {
            mutate::associate_trunk_interface(params, cloud, now, request_id)
        }
        "DisassociateTrunkInterface" => {
            mutate::disassociate_trunk_interface(params, cloud, request_id)
        }
        other => Err(unknown_action(other)),
    }
}

pub fn unknown_action(action: &str) -> CloudError {
    CloudError::new(
        ErrorCode::InvalidAction,
        format!("The action {action} is not valid for this web service."),
    )
}
