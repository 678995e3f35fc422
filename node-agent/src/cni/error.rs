//! The CNI error object (SPEC.md "Error") with the spec's codes.

use serde::Serialize;

use crate::protocol::{ErrorReply, codes};

use super::version::SpecVersion;

/// A failure the plugin reports to the runtime: printed on stdout as the spec's error
/// object, with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(codes::INCOMPATIBLE_VERSION, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(codes::INVALID_ENVIRONMENT, msg)
    }

    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(codes::DECODE_FAILURE, msg)
    }

    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(codes::INVALID_CONFIG, msg)
    }

    /// The spec's JSON error object for the given version.
    pub fn to_json(&self, version: SpecVersion) -> String {
        #[derive(Serialize)]
        struct Object<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::json!(Object {
            cni_version: version.as_str(),
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .to_string()
    }
}

impl From<ErrorReply> for CniError {
    fn from(reply: ErrorReply) -> Self {
        Self {
            code: reply.code,
            msg: reply.msg,
            details: reply.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_the_spec_fields() {
        let e = CniError::invalid_config("missing name").with_details("at line 1");
        let v: serde_json::Value = serde_json::from_str(&e.to_json(SpecVersion::V1_0_0)).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "missing name");
        assert_eq!(v["details"], "at line 1");
        let v: serde_json::Value =
            serde_json::from_str(&CniError::decode("x").to_json(SpecVersion::LATEST)).unwrap();
        assert!(v.get("details").is_none());
    }
}
