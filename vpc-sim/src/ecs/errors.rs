//! The state machine's refusals under ECS's names. The state machine speaks EC2's codes;
//! an ECS client must see what ECS would answer (`InvalidEniId.NotFound`,
//! `InvalidVSwitchId.IpNotEnough`, `Throttling.User`, ...) with ECS's HTTP statuses.

use serde_json::json;

use crate::error::{CloudError, ErrorCode};

/// ECS code and HTTP status for a refusal.
pub fn code_of(code: ErrorCode) -> (&'static str, u16) {
    use ErrorCode::*;
    match code {
        AttachmentLimitExceeded => ("EniPerInstanceLimitExceeded", 403),
        PrivateIpAddressLimitExceeded => ("InvalidOperation.Ipv4CountExceeded", 403),
        InvalidNetworkInterfaceInUse | IncorrectState | OperationNotPermitted => {
            ("InvalidOperation.InvalidEniState", 403)
        }
        InvalidIpAddressInUse => ("InvalidPrivateIpAddress.Duplicated", 400),
        InvalidNetworkInterfaceIdNotFound
        | InvalidNetworkInterfaceIdMalformed
        | InvalidAttachmentIdNotFound
        | InvalidAssociationIdNotFound => ("InvalidEniId.NotFound", 404),
        InvalidSubnetIdNotFound => ("InvalidVSwitchId.NotFound", 404),
        InvalidInstanceIdNotFound => ("InvalidEcsId.NotFound", 404),
        InvalidGroupNotFound => ("InvalidSecurityGroupId.NotFound", 404),
        InvalidId => ("InvalidResourceId.NotFound", 404),
        InsufficientFreeAddressesInSubnet | InsufficientCidrBlocks => {
            ("InvalidVSwitchId.IpNotEnough", 403)
        }
        InvalidParameterValue | InvalidParameterCombination | DryRunOperation => {
            ("InvalidParameter", 400)
        }
        MissingParameter => ("MissingParameter", 400),
        IdempotentParameterMismatch => ("IdempotentParameterMismatch", 400),
        UnsupportedOperation => ("OperationDenied", 403),
        RequestLimitExceeded => ("Throttling.User", 400),
        InternalError => ("InternalError", 500),
        ServiceUnavailable => ("ServiceUnavailable", 503),
        AuthFailure => ("InvalidAccessKeyId.NotFound", 404),
        SignatureDoesNotMatch => ("SignatureDoesNotMatch", 400),
        IncompleteSignature => ("IncompleteSignature", 400),
        InvalidAction => ("InvalidAction.NotFound", 404),
        InvalidInstanceType => ("InvalidInstanceType.NotFound", 404),
        InvalidIpUnassigned => ("InvalidIp.IpUnassigned", 400),
    }
}

/// The JSON error body ECS sends, with its HTTP status.
pub fn render(e: &CloudError, request_id: &str, host: &str) -> (u16, String) {
    let (code, status) = code_of(e.code);
    let body = json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": code,
        "Message": e.message,
    });
    (status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_an_ecs_client_acts_on() {
        assert_eq!(
            code_of(ErrorCode::RequestLimitExceeded).0,
            "Throttling.User"
        );
        assert_eq!(
            code_of(ErrorCode::InsufficientFreeAddressesInSubnet).0,
            "InvalidVSwitchId.IpNotEnough"
        );
        assert_eq!(
            code_of(ErrorCode::InvalidNetworkInterfaceIdNotFound),
            ("InvalidEniId.NotFound", 404)
        );
        assert_eq!(
            code_of(ErrorCode::AttachmentLimitExceeded).0,
            "EniPerInstanceLimitExceeded"
        );
        let (status, body) = render(
            &CloudError::new(ErrorCode::AuthFailure, "nope"),
            "r-1",
            "ecs.cn-hangzhou.aliyuncs.com",
        );
        assert_eq!(status, 404);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Code"], "InvalidAccessKeyId.NotFound");
        assert_eq!(v["RequestId"], "r-1");
    }
}
