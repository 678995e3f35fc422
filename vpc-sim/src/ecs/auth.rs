//! ACS3-HMAC-SHA256 checking, refusing as ECS does: `IncompleteSignature` for a missing
//! or malformed part, `InvalidAccessKeyId.NotFound` for an unknown key,
//! `SignatureDoesNotMatch` for a wrong signature or body hash.

use eni_acs3::{Authorization, Request, canonical_request_signing, hashed_payload, signature};

use crate::error::{CloudError, CloudResult, ErrorCode};
use crate::sigv4::{Credentials, RequestParts};

/// Headers every ECS request must sign.
const REQUIRED: &[&str] = &[
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

fn incomplete(message: impl Into<String>) -> CloudError {
    CloudError::new(ErrorCode::IncompleteSignature, message)
}

pub fn verify(
    req: &RequestParts<'_>,
    known: &[Credentials],
    check_signature: bool,
) -> CloudResult<()> {
    let header = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("The request has no Authorization header."))?;
    let auth = Authorization::parse(header).ok_or_else(|| {
        incomplete("The Authorization header is not ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..")
    })?;
    let creds = known
        .iter()
        .find(|c| c.access_key == auth.access_key_id)
        .ok_or_else(|| {
            CloudError::new(ErrorCode::AuthFailure, "Specified access key is not found.")
        })?;
    if !check_signature {
        return Ok(());
    }
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    for name in REQUIRED {
        if value(name).is_none() || !auth.signed_headers.iter().any(|h| h == name) {
            return Err(incomplete(format!(
                "The header {name} is missing or not signed."
            )));
        }
    }
    let declared = value("x-acs-content-sha256").unwrap_or_default();
    if declared != hashed_payload(req.body) {
        return Err(CloudError::new(
            ErrorCode::SignatureDoesNotMatch,
            "The request body does not match x-acs-content-sha256.",
        ));
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let canonical = canonical_request_signing(
        &Request {
            method: req.method,
            path: req.path,
            query: &query,
            headers: &headers,
            hashed_payload: declared,
        },
        &auth.signed_headers,
    );
    if signature(&creds.secret_key, &canonical) != auth.signature {
        return Err(CloudError::new(
            ErrorCode::SignatureDoesNotMatch,
            "The request signature does not conform to Aliyun standards.",
        ));
    }
    Ok(())
}
