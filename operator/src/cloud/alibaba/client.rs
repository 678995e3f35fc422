//! The ECS/VPC OpenAPI client: RPC-style requests (parameters in the query, empty body)
//! signed with ACS3-HMAC-SHA256, JSON answers, errors classified by their code. One
//! attempt per call; retries and pacing are the caller's `CallPolicy`.

use std::time::{Duration, SystemTime};

use rand::Rng;
use serde_json::Value;

use super::errors::classify;
use crate::cloud::error::CloudError;
use crate::cloud::provider::CloudResult;

pub const ECS_VERSION: &str = "2014-05-26";
pub const VPC_VERSION: &str = "2016-04-28";

/// Which API an action belongs to: each has its own endpoint and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Ecs,
    Vpc,
}

/// Where and as whom to call.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// `https://ecs.<region>.aliyuncs.com` or an override (vpc-sim).
    pub ecs: String,
    pub vpc: String,
    pub region: String,
    pub access_key_id: String,
    pub access_key_secret: String,
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
}

/// Query parameters of one request, in ECS's flattened form (`Tag.1.Key`).
pub type Params = Vec<(String, String)>;

impl Client {
    pub fn new(endpoints: Endpoints, attempt_timeout: Duration) -> CloudResult<Self> {
        let http = reqwest::Client::builder()
            .timeout(attempt_timeout)
            .build()
            .map_err(|e| CloudError::InvalidRequest {
                code: "ClientSetup".to_owned(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { http, endpoints })
    }

    pub fn region(&self) -> &str {
        &self.endpoints.region
    }

    /// Sends `action` with `params` (RegionId is added) and returns the JSON answer.
    pub async fn call(&self, api: Api, action: &str, mut params: Params) -> CloudResult<Value> {
        let (base, version) = match api {
            Api::Ecs => (&self.endpoints.ecs, ECS_VERSION),
            Api::Vpc => (&self.endpoints.vpc, VPC_VERSION),
        };
        params.push(("RegionId".to_owned(), self.endpoints.region.clone()));
        let host = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_owned();
        let nonce = hex::encode(rand::rng().random::<[u8; 16]>());
        let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let payload = eni_acs3::hashed_payload(b"");
        let headers: Vec<(String, String)> = vec![
            ("host".to_owned(), host),
            ("x-acs-action".to_owned(), action.to_owned()),
            ("x-acs-version".to_owned(), version.to_owned()),
            ("x-acs-date".to_owned(), date),
            ("x-acs-signature-nonce".to_owned(), nonce),
            ("x-acs-content-sha256".to_owned(), payload.clone()),
        ];
        let authorization = eni_acs3::authorization(
            &self.endpoints.access_key_id,
            &self.endpoints.access_key_secret,
            &eni_acs3::Request {
                method: "POST",
                path: "/",
                query: &params,
                headers: &headers,
                hashed_payload: &payload,
            },
        );
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    eni_acs3::percent_encode(k),
                    eni_acs3::percent_encode(v)
                )
            })
            .collect();
        let url = format!("{}/?{}", base.trim_end_matches('/'), query.join("&"));
        let mut request = self.http.post(url).header("authorization", authorization);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            request = request.header(k, v);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport)?;
        let json: Value = serde_json::from_str(&body).map_err(|e| CloudError::Transient {
            code: "InvalidResponse".to_owned(),
            message: format!("HTTP {status}, not JSON ({e}): {}", truncate(&body)),
        })?;
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let field = |k: &str| json[k].as_str().unwrap_or_default();
        Err(classify(field("Code"), field("Message"), status))
    }
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(200).map_or(s, |(i, _)| &s[..i])
}

/// Connection failures and timeouts: the request may or may not have happened.
fn transport(e: reqwest::Error) -> CloudError {
    CloudError::Transient {
        code: if e.is_timeout() {
            "Timeout"
        } else {
            "Transport"
        }
        .to_owned(),
        message: e.to_string(),
    }
}

/// `Name.1`, `Name.2`, ... for a list parameter.
pub fn list(params: &mut Params, name: &str, values: impl IntoIterator<Item = String>) {
    for (i, v) in values.into_iter().enumerate() {
        params.push((format!("{name}.{}", i + 1), v));
    }
}

/// `Tag.N.Key` / `Tag.N.Value`.
pub fn tags<'a>(params: &mut Params, tags: impl IntoIterator<Item = (&'a String, &'a String)>) {
    for (i, (k, v)) in tags.into_iter().enumerate() {
        params.push((format!("Tag.{}.Key", i + 1), k.clone()));
        params.push((format!("Tag.{}.Value", i + 1), v.clone()));
    }
}
