//! EC2 error codes → [`CloudError`]. Codes are matched by name (and by EC2's naming
//! patterns such as `*.NotFound`) because the SDK models none of EC2's errors as types.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::cloud::error::{CloudError, Limit};

/// Classifies an EC2 error answer by its code, falling back on the HTTP status.
pub(crate) fn classify(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> CloudError {
    let message = message.unwrap_or_default().to_owned();
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return match status {
            Some(s) if s >= 500 => CloudError::Transient {
                code: format!("HTTP {s}"),
                message,
            },
            Some(s) if s == 429 => CloudError::Throttled {
                code: format!("HTTP {s}"),
                message,
            },
            _ => CloudError::Unexpected(format!(
                "error answer without a code (HTTP {}): {message}",
                status.map_or_else(|| "?".to_owned(), |s| s.to_string())
            )),
        };
    };
    let owned = code.to_owned();
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "TooManyRequestsException"
        | "SlowDown" => CloudError::Throttled {
            code: owned,
            message,
        },
        "AttachmentLimitExceeded" => limit(Limit::Attachments, message),
        "PrivateIpAddressLimitExceeded" => limit(Limit::AddressesPerEni, message),
        "NetworkInterfaceLimitExceeded" => limit(Limit::NetworkInterfaces, message),
        "BranchInterfaceLimitExceeded" | "TrunkInterfaceAssociationLimitExceeded" => {
            limit(Limit::BranchInterfaces, message)
        }
        "InsufficientFreeAddressesInSubnet" | "InsufficientCidrBlocks" => {
            CloudError::SubnetExhausted {
                code: owned,
                message,
            }
        }
        "IncorrectState" | "IncorrectInstanceState" | "OperationNotPermitted" => {
            CloudError::InvalidState {
                code: owned,
                message,
            }
        }
        "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "Unavailable"
        | "RequestTimeout"
        | "RequestTimeoutException" => CloudError::Transient {
            code: owned,
            message,
        },
        "IdempotentParameterMismatch" => CloudError::IdempotencyMismatch { message },
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired"
        | "Blocked"
        | "PendingVerification" => CloudError::Unauthorized {
            code: owned,
            message,
        },
        "UnsupportedOperation" | "InvalidAction" | "NotImplemented" | "Unsupported" => {
            CloudError::Unsupported {
                code: owned,
                message,
            }
        }
        _ if code.ends_with(".NotFound") => CloudError::NotFound {
            code: owned,
            message,
        },
        _ if code.ends_with(".InUse") => CloudError::InvalidState {
            code: owned,
            message,
        },
        _ if code.ends_with("LimitExceeded") => limit(Limit::Other(owned), message),
        _ if code.starts_with("Invalid")
            || code.starts_with("Missing")
            || code.ends_with(".Malformed") =>
        {
            CloudError::InvalidRequest {
                code: owned,
                message,
            }
        }
        _ => match status {
            Some(s) if s >= 500 => CloudError::Transient {
                code: owned,
                message,
            },
            Some(s) if (400..500).contains(&s) => CloudError::InvalidRequest {
                code: owned,
                message,
            },
            _ => CloudError::Unexpected(format!("{owned}: {message}")),
        },
    }
}

fn limit(limit: Limit, message: String) -> CloudError {
    CloudError::LimitExceeded { limit, message }
}

/// Converts any failed SDK call. Timeouts and broken connections are `Transient`: the
/// request may or may not have reached the cloud.
pub(crate) fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            classify(e.code(), e.message(), Some(service.raw().status().as_u16()))
        }
        SdkError::TimeoutError(_) => CloudError::Transient {
            code: "Timeout".to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::DispatchFailure(d) if d.is_user() => CloudError::InvalidRequest {
            code: "Dispatch".to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::DispatchFailure(_) => CloudError::Transient {
            code: "Dispatch".to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        },
        // A cut-off or garbled answer: a proxy or the server failing mid-way.
        SdkError::ResponseError(_) => CloudError::Transient {
            code: "ResponseError".to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::ConstructionFailure(_) => CloudError::InvalidRequest {
            code: "ConstructionFailure".to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        },
        _ => CloudError::Unexpected(DisplayErrorContext(&err).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str, status: u16) -> CloudError {
        classify(Some(code), Some("msg"), Some(status))
    }

    #[test]
    fn throttling_codes() {
        for code in ["RequestLimitExceeded", "Throttling"] {
            assert!(
                matches!(kind(code, 503), CloudError::Throttled { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            classify(None, None, Some(429)),
            CloudError::Throttled { .. }
        ));
    }

    #[test]
    fn limit_codes_name_the_limit() {
        let cases = [
            ("AttachmentLimitExceeded", Limit::Attachments),
            ("PrivateIpAddressLimitExceeded", Limit::AddressesPerEni),
            ("NetworkInterfaceLimitExceeded", Limit::NetworkInterfaces),
            (
                "VolumeLimitExceeded",
                Limit::Other("VolumeLimitExceeded".into()),
            ),
        ];
        for (code, expected) in cases {
            match kind(code, 400) {
                CloudError::LimitExceeded { limit, message } => {
                    assert_eq!(limit, expected);
                    assert_eq!(message, "msg");
                }
                other => panic!("{code} → {other:?}"),
            }
        }
        // Throttling also ends in "LimitExceeded" but must not read as a quota.
        assert!(matches!(
            kind("RequestLimitExceeded", 503),
            CloudError::Throttled { .. }
        ));
    }

    #[test]
    fn subnet_exhaustion() {
        for code in [
            "InsufficientFreeAddressesInSubnet",
            "InsufficientCidrBlocks",
        ] {
            assert!(
                matches!(kind(code, 400), CloudError::SubnetExhausted { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn not_found_and_state_codes() {
        for code in [
            "InvalidNetworkInterfaceID.NotFound",
            "InvalidAttachmentID.NotFound",
            "InvalidAssociationID.NotFound",
            "InvalidSubnetID.NotFound",
            "InvalidInstanceID.NotFound",
        ] {
            assert!(
                matches!(kind(code, 400), CloudError::NotFound { .. }),
                "{code}"
            );
        }
        for code in [
            "InvalidNetworkInterface.InUse",
            "IncorrectState",
            "OperationNotPermitted",
            "InvalidIPAddress.InUse",
        ] {
            assert!(
                matches!(kind(code, 400), CloudError::InvalidState { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn transient_failures() {
        for code in [
            "InternalError",
            "ServiceUnavailable",
            "Unavailable",
            "RequestTimeout",
        ] {
            assert!(
                matches!(kind(code, 500), CloudError::Transient { .. }),
                "{code}"
            );
        }
        // Unknown code on a 5xx: the server failed, try again.
        assert!(matches!(
            kind("SomethingNew", 502),
            CloudError::Transient { .. }
        ));
        assert!(matches!(
            classify(None, None, Some(503)),
            CloudError::Transient { .. }
        ));
    }

    #[test]
    fn final_errors() {
        assert!(matches!(
            kind("InvalidParameterValue", 400),
            CloudError::InvalidRequest { .. }
        ));
        assert!(matches!(
            kind("InvalidNetworkInterfaceID.Malformed", 400),
            CloudError::InvalidRequest { .. }
        ));
        assert!(matches!(
            kind("MissingParameter", 400),
            CloudError::InvalidRequest { .. }
        ));
        assert!(matches!(
            kind("IdempotentParameterMismatch", 400),
            CloudError::IdempotencyMismatch { .. }
        ));
        assert!(matches!(
            kind("AuthFailure", 401),
            CloudError::Unauthorized { .. }
        ));
        assert!(matches!(
            kind("UnauthorizedOperation", 403),
            CloudError::Unauthorized { .. }
        ));
        assert!(matches!(
            kind("InvalidAction", 400),
            CloudError::Unsupported { .. }
        ));
        assert!(!kind("InvalidParameterValue", 400).is_retryable());
        assert!(kind("RequestLimitExceeded", 503).is_retryable());
        assert!(kind("InternalError", 500).is_retryable());
    }
}
