//! ECS error codes → [`CloudError`]. ECS answers errors as JSON with a `Code` such as
//! `InvalidVSwitchId.IpNotEnough`; what the caller must do depends on the code, its
//! dotted family (`Throttling.User`) and, for unknown codes, the HTTP status.

use crate::cloud::error::{CloudError, Limit};

/// Classifies an ECS error answer by its code, falling back on the HTTP status.
pub fn classify(code: &str, message: &str, status: u16) -> CloudError {
    let owned = code.to_owned();
    let message = message.to_owned();
    let family = code.split('.').next().unwrap_or_default();
    match code {
        // Every throttling code (Throttling, Throttling.User, Throttling.Api, ...).
        _ if family == "Throttling" => CloudError::Throttled {
            code: owned,
            message,
        },
        "InvalidVSwitchId.IpNotEnough" | "QuotaExceeded.PrivateIpAddress" => {
            CloudError::SubnetExhausted {
                code: owned,
                message,
            }
        }
        "EniPerInstanceLimitExceeded" => CloudError::LimitExceeded {
            limit: Limit::Attachments,
            message,
        },
        "InvalidOperation.Ipv4CountExceeded" => CloudError::LimitExceeded {
            limit: Limit::AddressesPerEni,
            message,
        },
        "SecurityGroupInstanceLimitExceed" => CloudError::LimitExceeded {
            limit: Limit::Other(owned),
            message,
        },
        // Gone already: detach and delete of a missing ENI, unassign of an address the
        // ENI no longer has. The calls treat NotFound as done.
        "InvalidEniId.NotFound" | "InvalidEcsId.NotFound" | "InvalidIp.IpUnassigned" => {
            CloudError::NotFound {
                code: owned,
                message,
            }
        }
        // Retried: the ENI is between states, or a concurrent call holds it.
        "InternalError"
        | "ServiceUnavailable"
        | "Operation.Conflict"
        | "IdempotentFailed"
        | "InvalidOperation.InvalidEniState" => CloudError::Transient {
            code: owned,
            message,
        },
        "IdempotentParameterMismatch" => CloudError::IdempotencyMismatch { message },
        "IncompleteSignature"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "Forbidden.RAM"
        | "NoPermission" => CloudError::Unauthorized {
            code: owned,
            message,
        },
        // The action, or the operation on this resource (a trunk on a type without
        // trunking), is not offered.
        "InvalidAction.NotFound" | "OperationDenied" => CloudError::Unsupported {
            code: owned,
            message,
        },
        _ if code.ends_with(".NotFound") => CloudError::NotFound {
            code: owned,
            message,
        },
        _ if family.starts_with("Invalid") || family.starts_with("Missing") => {
            CloudError::InvalidRequest {
                code: owned,
                message,
            }
        }
        _ if status >= 500 => CloudError::Transient {
            code: owned,
            message,
        },
        _ if status == 429 => CloudError::Throttled {
            code: owned,
            message,
        },
        _ if (400..500).contains(&status) => CloudError::InvalidRequest {
            code: owned,
            message,
        },
        _ => CloudError::Unexpected(format!("{owned} (HTTP {status}): {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (code, HTTP status, what the caller is told to do)
        let cases = [
            ("Throttling", 400, "throttled"),
            ("Throttling.User", 400, "throttled"),
            ("Throttling.Api", 503, "throttled"),
            ("InvalidVSwitchId.IpNotEnough", 400, "subnet_exhausted"),
            ("QuotaExceeded.PrivateIpAddress", 400, "subnet_exhausted"),
            ("EniPerInstanceLimitExceeded", 400, "limit_exceeded"),
            ("InvalidOperation.Ipv4CountExceeded", 400, "limit_exceeded"),
            ("InvalidEniId.NotFound", 404, "not_found"),
            ("InvalidEcsId.NotFound", 404, "not_found"),
            ("InvalidIp.IpUnassigned", 400, "not_found"),
            ("InvalidSecurityGroupId.NotFound", 404, "not_found"),
            ("Operation.Conflict", 400, "transient"),
            ("IdempotentFailed", 400, "transient"),
            ("InvalidOperation.InvalidEniState", 403, "transient"),
            ("InternalError", 500, "transient"),
            ("SignatureDoesNotMatch", 400, "unauthorized"),
            ("InvalidAccessKeyId.NotFound", 404, "unauthorized"),
            ("InvalidAction.NotFound", 404, "unsupported"),
            ("OperationDenied", 403, "unsupported"),
            ("InvalidParameter", 400, "invalid_request"),
            ("MissingParameter", 400, "invalid_request"),
            ("SomethingNew", 503, "transient"),
            ("SomethingElse", 403, "invalid_request"),
        ];
        for (code, status, want) in cases {
            assert_eq!(classify(code, "m", status).kind(), want, "{code}");
        }
        assert!(matches!(
            classify("EniPerInstanceLimitExceeded", "m", 400),
            CloudError::LimitExceeded {
                limit: Limit::Attachments,
                ..
            }
        ));
    }
}
