//! The ECS front end: Alibaba Cloud's RPC-style OpenAPI (ECS 2014-05-26, and
//! `DescribeVSwitches` of VPC 2016-04-28) over the same state machine as the EC2 front
//! end. One cloud, two APIs: a request carrying `x-acs-action` comes here. Requests are
//! checked with the ACS3-HMAC-SHA256 signature (`auth`), parameters are ECS's
//! (`Tag.N.Key`, `SecurityGroupIds.N`, JSON-array `InstanceIds`), answers are JSON with a
//! `RequestId`, and errors carry ECS's codes (`errors`).

mod auth;
mod describe;
pub mod errors;
mod mutate;
mod render;

use std::time::Instant;

use crate::catalog::Catalog;
use crate::cloud::{Cloud, CloudState};
use crate::ec2::params::Params;
use crate::error::{CloudError, CloudResult, ErrorCode};

pub use auth::verify;

pub const ECS_VERSION: &str = "2014-05-26";
pub const VPC_VERSION: &str = "2016-04-28";

pub const DESCRIBE_ACTIONS: &[&str] = &[
    "DescribeInstances",
    "DescribeInstanceTypes",
    "DescribeVSwitches",
    "DescribeSecurityGroups",
    "DescribeNetworkInterfaces",
];

pub const MUTATING_ACTIONS: &[&str] = &[
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "TagResources",
];

pub fn is_describe(action: &str) -> bool {
    DESCRIBE_ACTIONS.contains(&action)
}

/// Whether `action` exists in API `version` (vSwitches belong to the VPC API).
pub fn is_known(action: &str, version: &str) -> bool {
    let expected = if action == "DescribeVSwitches" {
        VPC_VERSION
    } else {
        ECS_VERSION
    };
    version == expected && (is_describe(action) || MUTATING_ACTIONS.contains(&action))
}

pub fn unknown_action(action: &str, version: &str) -> CloudError {
    CloudError::new(
        ErrorCode::InvalidAction,
        format!("Specified api {action} of version {version} is not found."),
    )
}

pub fn describe(
    action: &str,
    params: &Params,
    state: &CloudState,
    catalog: &Catalog,
    request_id: &str,
) -> CloudResult<String> {
    let body = match action {
        "DescribeInstances" => describe::instances(params, state)?,
        "DescribeInstanceTypes" => describe::instance_types(params, catalog)?,
        "DescribeVSwitches" => describe::vswitches(params, state)?,
        "DescribeSecurityGroups" => describe::security_groups(params, state)?,
        "DescribeNetworkInterfaces" => describe::network_interfaces(params, state)?,
        other => return Err(unknown_action(other, ECS_VERSION)),
    };
    Ok(render::with_request_id(body, request_id))
}

pub fn mutate(
    action: &str,
    params: &Params,
    cloud: &mut Cloud,
    now: Instant,
    request_id: &str,
) -> CloudResult<String> {
    let body = match action {
        "CreateNetworkInterface" => mutate::create_network_interface(params, cloud)?,
        "AttachNetworkInterface" => mutate::attach_network_interface(params, cloud, now)?,
        "DetachNetworkInterface" => mutate::detach_network_interface(params, cloud, now)?,
        "DeleteNetworkInterface" => mutate::delete_network_interface(params, cloud, now)?,
        "ModifyNetworkInterfaceAttribute" => mutate::modify_attribute(params, cloud)?,
        "AssignPrivateIpAddresses" => mutate::assign_private_ip_addresses(params, cloud)?,
        "UnassignPrivateIpAddresses" => mutate::unassign_private_ip_addresses(params, cloud)?,
        "TagResources" => mutate::tag_resources(params, cloud)?,
        other => return Err(unknown_action(other, ECS_VERSION)),
    };
    Ok(render::with_request_id(body, request_id))
}
