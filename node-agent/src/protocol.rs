//! The wire protocol between `eni-cni` and `eni-agent` on the agent's unix socket.
//!
//! One request per connection: the plugin writes one JSON object followed by `\n`, the
//! agent answers with one JSON object followed by `\n` and closes. Every message carries
//! [`PROTOCOL_VERSION`] so a plugin binary and an agent of different releases notice the
//! mismatch and say so instead of misreading each other. Newline-delimited JSON was chosen
//! over a binary length prefix because it can be driven by hand (`nc -U`) when debugging a
//! node, and JSON never contains a raw newline.
//!
//! The messages are independent of the CNI spec version: the plugin turns an
//! [`AttachmentResult`] into the result format of the `cniVersion` it was called with.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of this protocol. Bump it on any incompatible change of the messages.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where the agent listens unless the network config says otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/run/eni-operator/agent.sock";

/// Upper bound of one message; a GC request with tens of thousands of attachments fits.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Well-known CNI error codes (SPEC.md, "Error" section) the plugin and agent use.
pub mod codes {
    /// Incompatible CNI version (also: plugin and agent speak different protocol versions).
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Plugin not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific: wiring the pod's network failed.
    pub const WIRING_FAILED: u32 = 100;
    /// Plugin-specific: the pod's mode needs a kernel feature this node lacks.
    pub const UNSUPPORTED_MODE: u32 = 101;
    /// Plugin-specific: the pod's network does not match what was wired (CHECK).
    pub const CHECK_FAILED: u32 = 102;
}

/// A request from the plugin, wrapped with the protocol version.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RequestMessage {
    pub protocol: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// What the runtime asked the plugin to do.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "command", rename_all = "UPPERCASE")]
pub enum Request {
    Add(Attachment),
    Del(Attachment),
    Check(Attachment),
    Gc(GcRequest),
    Status,
}

impl Request {
    /// The CNI command name, for logs and metrics.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Add(_) => "ADD",
            Request::Del(_) => "DEL",
            Request::Check(_) => "CHECK",
            Request::Gc(_) => "GC",
            Request::Status => "STATUS",
        }
    }
}

/// One attachment of a container to the network, as the runtime described it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Network name from the config (the attachment key is network + container + ifname).
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    /// Path of the pod's network namespace; may be absent (or gone) on DEL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The Kubernetes pod, from `CNI_ARGS`; required for ADD, optional otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The runtime's `bandwidth` capability (ADD only; absent: no limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

/// Pod traffic limits as the CNI conventions' `bandwidth` capability carries them (the
/// kubelet's `kubernetes.io/{ingress,egress}-bandwidth` annotations): rates in bit/s,
/// bursts in bits, 0 for no limit. Ingress is traffic to the pod, egress from it.
/// containerd (go-cni's `BandWidth`, no JSON tags) spells the keys `IngressRate`...;
/// Go plugins match keys case-insensitively, so both spellings are accepted.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    #[serde(default, alias = "IngressRate")]
    pub ingress_rate: u64,
    #[serde(default, alias = "IngressBurst")]
    pub ingress_burst: u64,
    #[serde(default, alias = "EgressRate")]
    pub egress_rate: u64,
    #[serde(default, alias = "EgressBurst")]
    pub egress_burst: u64,
}

impl Bandwidth {
    /// No limit in either direction.
    pub fn is_unlimited(&self) -> bool {
        self.ingress_rate == 0 && self.egress_rate == 0
    }
}

/// Identity of a Kubernetes pod.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// Absent when the runtime does not pass `K8S_POD_UID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// GC: everything not in `valid` may be removed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcRequest {
    pub network: String,
    pub valid: Vec<AttachmentKey>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentKey {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The agent's answer, wrapped with the protocol version.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResponseMessage {
    pub protocol: u32,
    #[serde(flatten)]
    pub response: Response,
}

/// Outcome of a request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Response {
    /// ADD succeeded: what the pod got.
    Added(AttachmentResult),
    /// DEL, CHECK, GC or STATUS succeeded.
    Done,
    /// The request failed.
    Failed(ErrorReply),
}

/// A CNI error as the agent reports it; the plugin prints it as the spec's error object.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// What an ADD wired, independent of the CNI spec version.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct AttachmentResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The netns path for interfaces inside the pod; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.0.1.5/32`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces` of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// A message that could not be read.
#[derive(Debug, Error, PartialEq)]
pub enum ProtocolError {
    #[error("message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("message is not valid JSON for this protocol: {0}")]
    Malformed(String),
    #[error("peer speaks protocol version {peer}, this side speaks {PROTOCOL_VERSION}")]
    VersionMismatch { peer: u32 },
    #[error("connection closed before a complete message arrived")]
    Truncated,
}

/// Serialises a message as one line.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Our message types contain only strings, numbers and maps with string keys, which
    // serde_json always serialises; an error here would be a bug in these types.
    let mut bytes = serde_json::to_vec(message).unwrap_or_else(|e| {
        unreachable!("protocol messages always serialise: {e}");
    });
    bytes.push(b'\n');
    bytes
}

/// Parses one line (without or with its trailing newline) into a request.
pub fn decode_request(line: &[u8]) -> Result<Request, ProtocolError> {
    let message: RequestMessage = decode(line)?;
    Ok(message.request)
}

/// Parses one line into a response.
pub fn decode_response(line: &[u8]) -> Result<Response, ProtocolError> {
    let message: ResponseMessage = decode(line)?;
    Ok(message.response)
}

fn decode<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, ProtocolError> {
    if line.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.is_empty() {
        return Err(ProtocolError::Truncated);
    }
    // Check the version before the body, so a newer peer gets "version mismatch" and not
    // a confusing complaint about a field it added.
    #[derive(Deserialize)]
    struct VersionOnly {
        protocol: u32,
    }
    let version: VersionOnly =
        serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if version.protocol != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch {
            peer: version.protocol,
        });
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

impl RequestMessage {
    pub fn new(request: Request) -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            request,
        }
    }
}

impl ResponseMessage {
    pub fn new(response: Response) -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            response,
        }
    }
}

impl Response {
    /// A failure with a code and a message for people.
    pub fn failed(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Response::Failed(ErrorReply {
            code,
            msg: msg.into(),
            details: details.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            network: "eni".into(),
            container_id: "abc123".into(),
            ifname: "eth0".into(),
            netns: Some("/var/run/netns/x".into()),
            pod: Some(PodRef {
                namespace: "default".into(),
                name: "web-0".into(),
                uid: Some("u-1".into()),
            }),
            bandwidth: Some(Bandwidth {
                ingress_rate: 8_000_000,
                ingress_burst: 800_000,
                ..Bandwidth::default()
            }),
        }
    }

    #[test]
    fn requests_round_trip_as_one_line() {
        for request in [
            Request::Add(attachment()),
            Request::Del(attachment()),
            Request::Check(attachment()),
            Request::Gc(GcRequest {
                network: "eni".into(),
                valid: vec![AttachmentKey {
                    container_id: "abc".into(),
                    ifname: "eth0".into(),
                }],
            }),
            Request::Status,
        ] {
            let bytes = encode(&RequestMessage::new(request.clone()));
            assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1);
            assert_eq!(bytes.last(), Some(&b'\n'));
            assert_eq!(decode_request(&bytes), Ok(request));
        }
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            Response::Done,
            Response::failed(11, "try later", ""),
            Response::Added(AttachmentResult {
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    sandbox: Some("/proc/1/ns/net".into()),
                }],
                ips: vec![IpConfig {
                    address: "10.0.0.5/32".into(),
                    gateway: Some("169.254.1.1".into()),
                    interface: Some(0),
                }],
                routes: vec![Route {
                    dst: "0.0.0.0/0".into(),
                    gw: Some("169.254.1.1".into()),
                }],
            }),
        ] {
            let bytes = encode(&ResponseMessage::new(response.clone()));
            assert_eq!(decode_response(&bytes), Ok(response));
        }
    }

    #[test]
    fn other_protocol_versions_are_named() {
        let line = br#"{"protocol":2,"command":"STATUS","someNewField":1}"#;
        assert_eq!(
            decode_request(line),
            Err(ProtocolError::VersionMismatch { peer: 2 })
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(
            decode_request(b"{\"protocol\":1,\"command\":\"FLY\"}"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(b"\xff\xfe"),
            Err(ProtocolError::Malformed(_))
        ));
        assert_eq!(decode_request(b""), Err(ProtocolError::Truncated));
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(decode_request(&huge), Err(ProtocolError::TooLarge));
    }
}
