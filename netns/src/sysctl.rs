//! Sysctls under `/proc/sys/net`, which show the namespace of the calling thread: call
//! these inside `run_in`.

use crate::NetnsError;

/// Writes `value` to `/proc/sys/net/<key>`.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), NetnsError> {
    std::fs::write(format!("/proc/sys/net/{key}"), value).map_err(|source| NetnsError::Sysctl {
        key: key.to_string(),
        source,
    })
}

/// Reads `/proc/sys/net/<key>`, trimmed.
pub fn read_sysctl(key: &str) -> Result<String, NetnsError> {
    std::fs::read_to_string(format!("/proc/sys/net/{key}"))
        .map(|value| value.trim().to_string())
        .map_err(|source| NetnsError::Sysctl {
            key: key.to_string(),
            source,
        })
}
