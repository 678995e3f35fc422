//! The network configuration the runtime streams on stdin.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{AttachmentKey, Bandwidth, DEFAULT_SOCKET_PATH};

use super::error::CniError;
use super::version::SpecVersion;

/// How long the plugin waits for the agent unless the config says otherwise. It is above
/// the agent's default wait for a pending allocation, so a slow allocation comes back as
/// the agent's "try again later" and not as a plugin-side timeout.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// DNS settings, passed through to the result unchanged.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// The fields of the plugin's network configuration it uses. Unknown fields (runtime
/// `args`, `capabilities`, `runtimeConfig`, ...) are accepted and ignored, as the spec
/// lets plugins do.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    name: String,
    #[serde(rename = "type")]
    plugin_type: String,
    #[serde(default)]
    socket_path: Option<PathBuf>,
    #[serde(default)]
    agent_timeout_seconds: Option<f64>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<AttachmentKey>>,
    // libcni before v1.2.3 wrote this key; it now writes both.
    #[serde(default, rename = "cni.dev/attachments")]
    attachments: Option<Vec<AttachmentKey>>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
}

/// The capabilities eni-cni advertises, as the runtime fills them in.
#[derive(Deserialize, Debug, Clone, Default)]
struct RuntimeConfig {
    #[serde(default)]
    bandwidth: Option<Bandwidth>,
}

/// A parsed and checked network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub version: SpecVersion,
    pub name: String,
    pub plugin_type: String,
    pub socket_path: PathBuf,
    pub agent_timeout: Duration,
    pub dns: Dns,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC only).
    pub valid_attachments: Option<Vec<AttachmentKey>>,
    /// `runtimeConfig.bandwidth`, when it limits anything.
    pub bandwidth: Option<Bandwidth>,
}

/// Reads only `cniVersion`, for VERSION and for labelling errors.
pub fn peek_version(stdin: &[u8]) -> Option<SpecVersion> {
    #[derive(Deserialize)]
    struct VersionOnly {
        #[serde(rename = "cniVersion")]
        cni_version: String,
    }
    serde_json::from_slice::<VersionOnly>(stdin)
        .ok()
        .and_then(|v| SpecVersion::parse(&v.cni_version))
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::decode(format!(
                "the network configuration on stdin is not valid JSON: {e}"
            ))
        })?;
        let object = value.as_object().ok_or_else(|| {
            CniError::invalid_config("the network configuration must be a JSON object")
        })?;
        let version_text = match object.get("cniVersion") {
            Some(Value::String(v)) => v,
            Some(other) => {
                return Err(CniError::invalid_config(format!(
                    "cniVersion must be a string such as \"1.1.0\", got {other}"
                )));
            }
            None => return Err(CniError::invalid_config("cniVersion is missing")),
        };
        let version = SpecVersion::parse(version_text).ok_or_else(|| {
            CniError::incompatible_version(format!(
                "cniVersion {version_text:?} is not supported; eni-cni speaks {}",
                super::version::supported_versions().join(", ")
            ))
        })?;
        let raw: RawConfig = serde_json::from_value(value)
            .map_err(|e| CniError::invalid_config(format!("invalid network configuration: {e}")))?;
        if raw.name.is_empty() {
            return Err(CniError::invalid_config("network name must not be empty"));
        }
        let agent_timeout = match raw.agent_timeout_seconds {
            None => DEFAULT_AGENT_TIMEOUT,
            Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(CniError::invalid_config(format!(
                    "agentTimeoutSeconds must be in (0, 3600], got {s}"
                )));
            }
        };
        let socket_path = raw
            .socket_path
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
        Ok(NetConf {
            version,
            name: raw.name,
            plugin_type: raw.plugin_type,
            socket_path,
            agent_timeout,
            dns: raw.dns.unwrap_or_default(),
            prev_result: raw.prev_result,
            valid_attachments: raw.valid_attachments.or(raw.attachments),
            bandwidth: raw.runtime_config.bandwidth.filter(|b| !b.is_unlimited()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"eni","type":"eni-cni"}"#).unwrap();
        assert_eq!(c.version, SpecVersion::V1_1_0);
        assert_eq!(c.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(c.agent_timeout, DEFAULT_AGENT_TIMEOUT);
        assert!(c.dns.is_empty());
    }

    #[test]
    fn full_config() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"eni","type":"eni-cni","socketPath":"/tmp/a.sock",
                "agentTimeoutSeconds":2.5,"dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]},
                "runtimeConfig":{"portMappings":[]},"args":{"x":1},
                "cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.socket_path, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.agent_timeout, Duration::from_millis(2500));
        assert_eq!(c.dns.nameservers, vec!["10.96.0.10"]);
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
        assert_eq!(c.bandwidth, None);
    }

    #[test]
    fn bandwidth_capability() {
        let parse = |runtime: &str| {
            NetConf::parse(
                format!(r#"{{"cniVersion":"1.0.0","name":"eni","type":"eni-cni","runtimeConfig":{runtime}}}"#)
                    .as_bytes(),
            )
        };
        let c = parse(r#"{"bandwidth":{"ingressRate":8000000,"ingressBurst":4294967295,"egressRate":1000000}}"#)
            .unwrap();
        assert_eq!(
            c.bandwidth,
            Some(Bandwidth {
                ingress_rate: 8_000_000,
                ingress_burst: 4_294_967_295,
                egress_rate: 1_000_000,
                egress_burst: 0,
            })
        );
        // containerd's spelling (go-cni's struct has no JSON tags).
        let c = parse(r#"{"bandwidth":{"IngressRate":8000000,"IngressBurst":2147483647,"EgressRate":8000000,"EgressBurst":2147483647}}"#)
            .unwrap();
        assert_eq!(
            c.bandwidth,
            Some(Bandwidth {
                ingress_rate: 8_000_000,
                ingress_burst: 2_147_483_647,
                egress_rate: 8_000_000,
                egress_burst: 2_147_483_647,
            })
        );
        // All rates 0: nothing to limit.
        assert_eq!(
            parse(r#"{"bandwidth":{"ingressRate":0}}"#)
                .unwrap()
                .bandwidth,
            None
        );
        for bad in [
            r#"{"bandwidth":{"ingressRate":-1}}"#,
            r#"{"bandwidth":{"egressRate":"8M"}}"#,
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.code, codes::INVALID_CONFIG, "{bad}");
            assert!(
                error.msg.contains("invalid network configuration"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn errors_have_the_right_codes() {
        let cases: [(&[u8], u32); 8] = [
            (b"{not json", codes::DECODE_FAILURE),
            (b"", codes::DECODE_FAILURE),
            (b"[1,2]", codes::INVALID_CONFIG),
            (br#"{"name":"eni","type":"eni-cni"}"#, codes::INVALID_CONFIG),
            (
                br#"{"cniVersion":1,"name":"eni","type":"eni-cni"}"#,
                codes::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"7.0.0","name":"eni","type":"eni-cni"}"#,
                codes::INCOMPATIBLE_VERSION,
            ),
            (
                br#"{"cniVersion":"1.0.0","type":"eni-cni"}"#,
                codes::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"eni","type":"eni-cni","agentTimeoutSeconds":-1}"#,
                codes::INVALID_CONFIG,
            ),
        ];
        for (input, code) in cases {
            let err = NetConf::parse(input).unwrap_err();
            assert_eq!(err.code, code, "{}: {err}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn peek_version_is_lenient() {
        assert_eq!(
            peek_version(br#"{"cniVersion":"0.4.0"}"#),
            Some(SpecVersion::V0_4_0)
        );
        assert_eq!(peek_version(b"junk"), None);
    }
}
