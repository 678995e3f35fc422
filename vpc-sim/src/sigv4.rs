//! AWS Signature Version 4 checks for incoming EC2 requests.
//!
//! The access key id must be known; the signature is recomputed from the canonical
//! request when verification is on (the default), so a client with the wrong secret
//! is refused like EC2 refuses it.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CloudError, CloudResult, ErrorCode};

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            access_key: "vpcsim".into(),
            secret_key: "vpcsim-secret".into(),
        }
    }
}

/// The parts of an HTTP request the signature covers.
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn auth_failure(message: impl Into<String>) -> CloudError {
    CloudError::new(ErrorCode::AuthFailure, message)
}

fn parse_authorization(value: &str) -> CloudResult<Authorization<'_>> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| auth_failure("Unsupported authorization type; use AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(auth_failure(
            "Authorization header is missing Credential, SignedHeaders or Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(auth_failure(format!(
            "Malformed credential scope '{credential}'"
        )));
    };
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Checks the request's Authorization header against the known credentials.
pub fn verify(
    req: &RequestParts<'_>,
    known: &[Credentials],
    check_signature: bool,
) -> CloudResult<()> {
    let header = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| auth_failure("AWS was not able to validate the provided access credentials (no Authorization header)"))?;
    let auth = parse_authorization(header)?;
    let creds = known
        .iter()
        .find(|c| c.access_key == auth.access_key)
        .ok_or_else(|| {
            auth_failure("AWS was not able to validate the provided access credentials")
        })?;
    if !check_signature {
        return Ok(());
    }
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| auth_failure("Request is missing X-Amz-Date"))?;
    let expected = signature(
        &creds.secret_key,
        amz_date,
        auth.date,
        auth.region,
        auth.service,
        &canonical_request(req, &auth.signed_headers),
    );
    if expected != auth.signature {
        return Err(CloudError::new(
            ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, the rest is %XX.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_request(req: &RequestParts<'_>, signed_headers: &[&str]) -> String {
    let mut query: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(Sha256::digest(req.body)));
    let path = if req.path.is_empty() { "/" } else { req.path };
    format!(
        "{}\n{path}\n{query}\n{headers}\n{}\n{payload_hash}",
        req.method,
        signed_headers.join(";")
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn signature(
    secret: &str,
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical: &str,
) -> String {
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    hex::encode(hmac(&k_signing, &string_to_sign))
}

/// The Authorization header value for a request (what an AWS SDK sends); used by
/// clients of the simulator that do not bring an SDK, such as the tests.
pub fn authorization(
    req: &RequestParts<'_>,
    creds: &Credentials,
    amz_date: &str,
    region: &str,
    signed_headers: &[&str],
) -> String {
    let date = &amz_date[..amz_date.len().min(8)];
    let sig = signature(
        &creds.secret_key,
        amz_date,
        date,
        region,
        "ec2",
        &canonical_request(req, signed_headers),
    );
    format!(
        "{ALGORITHM} Credential={}/{date}/{region}/ec2/aws4_request, SignedHeaders={}, Signature={sig}",
        creds.access_key,
        signed_headers.join(";")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// "get-vanilla" from the AWS Signature Version 4 test suite.
    #[test]
    fn matches_the_aws_test_suite_vector() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let req = RequestParts {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "20150830",
            "us-east-1",
            "service",
            &canonical_request(&req, &["host", "x-amz-date"]),
        );
        assert_eq!(
            sig,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn unknown_keys_and_bad_signatures_are_refused() {
        let creds = Credentials::default();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:1"));
        headers.insert("x-amz-date", HeaderValue::from_static("20240101T000000Z"));
        let body = b"Action=DescribeSubnets&Version=2016-11-15";
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let auth = authorization(
            &req,
            &creds,
            "20240101T000000Z",
            "us-east-1",
            &["host", "x-amz-date"],
        );
        headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        verify(&req, std::slice::from_ref(&creds), true).unwrap();

        let other = Credentials {
            access_key: "someone".into(),
            secret_key: "x".into(),
        };
        assert_eq!(
            verify(&req, &[other], true).unwrap_err().code,
            ErrorCode::AuthFailure
        );

        let tampered = RequestParts {
            body: b"Action=DescribeInstances&Version=2016-11-15",
            ..req
        };
        assert_eq!(
            verify(&tampered, &[creds], true).unwrap_err().code,
            ErrorCode::SignatureDoesNotMatch
        );
    }
}
