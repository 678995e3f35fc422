//! Alibaba Cloud's request signature V3, `ACS3-HMAC-SHA256`: the ECS provider signs its
//! requests with it and vpc-sim's ECS front end checks them. No maintained Rust crate
//! implements it; this is the whole algorithm, tested against the worked example of
//! Alibaba Cloud's signature documentation.
//!
//! The signature is HMAC-SHA256, keyed by the AccessKey secret, over
//! `ACS3-HMAC-SHA256\n` + hex(SHA-256(canonical request)), where the canonical request is
//! the method, the path, the query (names and values percent-encoded as RFC 3986, sorted),
//! the signed headers (`host`, `content-type` and every `x-acs-*`, lower-cased, sorted,
//! `name:value` lines), their names joined by `;`, and the hex SHA-256 of the body.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Everything but RFC 3986's unreserved characters is encoded (a space as `%20`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// RFC 3986 percent-encoding, as the signature wants it.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// Hex SHA-256 of a request body (`x-acs-content-sha256`).
pub fn hashed_payload(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// What of a request the signature covers.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, as sent (`/` for RPC-style APIs).
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(String, String)],
    /// Request headers, any case; the ones signed are picked by name.
    pub headers: &'a [(String, String)],
    /// `x-acs-content-sha256` of the body.
    pub hashed_payload: &'a str,
}

/// Whether a header takes part in the signature.
fn signed(name: &str) -> bool {
    name == "host" || name == "content-type" || name.starts_with("x-acs-")
}

/// The canonical request and the signed headers' names (`a;b;c`), signing `host`,
/// `content-type` and every `x-acs-*` header.
pub fn canonical_request(request: &Request<'_>) -> (String, String) {
    let mut names: Vec<String> = request
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| signed(k))
        .collect();
    names.sort();
    names.dedup();
    let canonical = canonical_request_signing(request, &names);
    (canonical, names.join(";"))
}

/// The canonical request over the headers `names` (lower case, as a server reads them
/// from `SignedHeaders`); a named header the request lacks is signed as empty.
pub fn canonical_request_signing(request: &Request<'_>, names: &[String]) -> String {
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        request.method,
        request.path,
        query.join("&")
    );
    for name in names {
        let value = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .unwrap_or_default();
        canonical.push_str(&format!("{name}:{value}\n"));
    }
    canonical.push_str(&format!(
        "\n{}\n{}",
        names.join(";"),
        request.hashed_payload
    ));
    canonical
}

/// The hex signature of `canonical` with `secret`.
pub fn signature(secret: &str, canonical: &str) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for `request`.
pub fn authorization(access_key_id: &str, secret: &str, request: &Request<'_>) -> String {
    let (canonical, signed_headers) = canonical_request(request);
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={}",
        signature(secret, &canonical)
    )
}

/// The parts of an `Authorization` header, for checking a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// Parses `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`; `None`
    /// when it is not of that form.
    pub fn parse(header: &str) -> Option<Self> {
        let rest = header.strip_prefix(ALGORITHM)?.trim_start();
        let (mut credential, mut headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part.trim().split_once('=')?;
            match key {
                "Credential" => credential = Some(value.to_owned()),
                "SignedHeaders" => headers = Some(value.split(';').map(str::to_owned).collect()),
                "Signature" => signature = Some(value.to_owned()),
                _ => return None,
            }
        }
        Some(Authorization {
            access_key_id: credential.filter(|c| !c.is_empty())?,
            signed_headers: headers?,
            signature: signature.filter(|s| !s.is_empty())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The worked example of Alibaba Cloud's "V3 request body & signature mechanism"
    /// (RunInstances on ECS, AccessKey secret `YourAccessKeySecret`, empty body): its two
    /// published Authorization headers, for two dates and nonces.
    #[test]
    fn the_published_example() {
        let query = pairs(&[
            ("RegionId", "cn-shanghai"),
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
        ]);
        let empty = hashed_payload(b"");
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (date, nonce, want) in [
            (
                "2023-10-26T10:22:32Z",
                "3156853299f313e23d1673dc12e1703d",
                "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
            ),
            (
                "2023-10-26T09:01:01Z",
                "d410180a5abf7fe235dd9b74aca91fc0",
                "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804",
            ),
        ] {
            let headers = pairs(&[
                ("host", "ecs.cn-shanghai.aliyuncs.com"),
                ("x-acs-action", "RunInstances"),
                ("x-acs-version", "2014-05-26"),
                ("x-acs-date", date),
                ("x-acs-signature-nonce", nonce),
                ("x-acs-content-sha256", &empty),
                // Not signed: neither host, content-type nor x-acs-*.
                ("User-Agent", "eni-operator"),
            ]);
            let request = Request {
                method: "POST",
                path: "/",
                query: &query,
                headers: &headers,
                hashed_payload: &empty,
            };
            assert_eq!(
                authorization("YourAccessKeyId", "YourAccessKeySecret", &request),
                format!(
                    "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature={want}"
                )
            );
        }
    }

    #[test]
    fn canonical_request_encodes_and_sorts() {
        let query = pairs(&[("Tag.1.Key", "a b"), ("B", "x*y~"), ("A", "")]);
        let headers = pairs(&[("X-Acs-Date", " 2024-01-01T00:00:00Z "), ("Host", "ecs")]);
        let (canonical, signed) = canonical_request(&Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            hashed_payload: "h",
        });
        assert_eq!(signed, "host;x-acs-date");
        assert_eq!(
            canonical,
            "POST\n/\nA=&B=x%2Ay~&Tag.1.Key=a%20b\nhost:ecs\nx-acs-date:2024-01-01T00:00:00Z\n\nhost;x-acs-date\nh"
        );
    }

    #[test]
    fn authorization_headers_parse_or_are_refused() {
        let parsed = Authorization::parse(
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature=abc",
        );
        assert_eq!(
            parsed,
            Some(Authorization {
                access_key_id: "AK".into(),
                signed_headers: vec!["host".into(), "x-acs-date".into()],
                signature: "abc".into(),
            })
        );
        for bad in [
            "",
            "AWS4-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=abc",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=abc",
            "ACS3-HMAC-SHA256 Credential=AK,Other=1,SignedHeaders=host,Signature=abc",
        ] {
            assert_eq!(Authorization::parse(bad), None, "{bad:?}");
        }
    }
}
