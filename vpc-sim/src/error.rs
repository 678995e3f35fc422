//! Errors of the simulated cloud, carrying EC2's real error codes (and the few that only
//! the ECS front end answers with; `ecs::errors` renames the rest for ECS).

use std::fmt;

/// EC2 error codes the simulator answers with (names as EC2 spells them on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AttachmentLimitExceeded,
    PrivateIpAddressLimitExceeded,
    InvalidNetworkInterfaceInUse,
    OperationNotPermitted,
    InvalidIpAddressInUse,
    InvalidNetworkInterfaceIdNotFound,
    InvalidNetworkInterfaceIdMalformed,
    InvalidAttachmentIdNotFound,
    InvalidAssociationIdNotFound,
    InvalidSubnetIdNotFound,
    InvalidInstanceIdNotFound,
    InvalidGroupNotFound,
    InvalidId,
    InsufficientFreeAddressesInSubnet,
    InsufficientCidrBlocks,
    InvalidParameterValue,
    InvalidParameterCombination,
    MissingParameter,
    IdempotentParameterMismatch,
    IncorrectState,
    UnsupportedOperation,
    RequestLimitExceeded,
    InternalError,
    ServiceUnavailable,
    AuthFailure,
    SignatureDoesNotMatch,
    InvalidAction,
    InvalidInstanceType,
    DryRunOperation,
    /// ECS: the ACS3 signature lacks a part (header, signed header).
    IncompleteSignature,
    /// ECS: an address to unassign is not on the ENI.
    InvalidIpUnassigned,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttachmentLimitExceeded => "AttachmentLimitExceeded",
            Self::PrivateIpAddressLimitExceeded => "PrivateIpAddressLimitExceeded",
            Self::InvalidNetworkInterfaceInUse => "InvalidNetworkInterface.InUse",
            Self::OperationNotPermitted => "OperationNotPermitted",
            Self::InvalidIpAddressInUse => "InvalidIPAddress.InUse",
            Self::InvalidNetworkInterfaceIdNotFound => "InvalidNetworkInterfaceID.NotFound",
            Self::InvalidNetworkInterfaceIdMalformed => "InvalidNetworkInterfaceID.Malformed",
            Self::InvalidAttachmentIdNotFound => "InvalidAttachmentID.NotFound",
            Self::InvalidAssociationIdNotFound => "InvalidAssociationID.NotFound",
            Self::InvalidSubnetIdNotFound => "InvalidSubnetID.NotFound",
            Self::InvalidInstanceIdNotFound => "InvalidInstanceID.NotFound",
            Self::InvalidGroupNotFound => "InvalidGroup.NotFound",
            Self::InvalidId => "InvalidID",
            Self::InsufficientFreeAddressesInSubnet => "InsufficientFreeAddressesInSubnet",
            Self::InsufficientCidrBlocks => "InsufficientCidrBlocks",
            Self::InvalidParameterValue => "InvalidParameterValue",
            Self::InvalidParameterCombination => "InvalidParameterCombination",
            Self::MissingParameter => "MissingParameter",
            Self::IdempotentParameterMismatch => "IdempotentParameterMismatch",
            Self::IncorrectState => "IncorrectState",
            Self::UnsupportedOperation => "UnsupportedOperation",
            Self::RequestLimitExceeded => "RequestLimitExceeded",
            Self::InternalError => "InternalError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::AuthFailure => "AuthFailure",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::InvalidAction => "InvalidAction",
            Self::InvalidInstanceType => "InvalidInstanceType",
            Self::DryRunOperation => "DryRunOperation",
            Self::IncompleteSignature => "IncompleteSignature",
            Self::InvalidIpUnassigned => "InvalidIp.IpUnassigned",
        }
    }

    /// HTTP status EC2 uses for the code: client errors are 400, authentication 401,
    /// throttling and unavailability 503 (what EC2 really sends for RequestLimitExceeded),
    /// internal errors 500.
    pub fn http_status(self) -> u16 {
        match self {
            Self::AuthFailure => 401,
            Self::SignatureDoesNotMatch => 403,
            Self::DryRunOperation => 412,
            Self::RequestLimitExceeded | Self::ServiceUnavailable => 503,
            Self::InternalError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused cloud request: the EC2 error code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CloudError {
    pub code: ErrorCode,
    pub message: String,
}

impl CloudError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn eni_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidNetworkInterfaceIdNotFound,
            format!("The networkInterface ID '{id}' does not exist"),
        )
    }

    pub fn instance_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidInstanceIdNotFound,
            format!("The instance ID '{id}' does not exist"),
        )
    }

    pub fn subnet_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidSubnetIdNotFound,
            format!("The subnet ID '{id}' does not exist"),
        )
    }

    pub fn group_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidGroupNotFound,
            format!("The security group '{id}' does not exist"),
        )
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
}

pub type CloudResult<T> = Result<T, CloudError>;
