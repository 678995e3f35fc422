use std::io;
use std::path::PathBuf;

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened (the namespace does not exist).
    #[error("opening network namespace {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// `setns` or `unshare` refused.
    #[error("entering network namespace {path}: {source}")]
    Enter { path: PathBuf, source: io::Error },
    /// Creating, mounting, unmounting or listing named namespaces failed.
    #[error("{what} {path}: {source}")]
    Named {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A netlink socket could not be opened, or a request on it failed.
    #[error("netlink in network namespace {path}: {what}: {source}")]
    Netlink {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// Reading or writing `/proc/sys/net/<key>` failed.
    #[error("sysctl net.{key}: {source}")]
    Sysctl { key: String, source: io::Error },
    /// The dedicated thread could not start or died before answering.
    #[error("namespace thread for {path}: {detail}")]
    Thread { path: PathBuf, detail: String },
}

impl NetnsError {
    /// Short, stable name of the failure, for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            NetnsError::Open { .. } => "netns_open",
            NetnsError::Enter { .. } => "netns_enter",
            NetnsError::Named { .. } => "netns_named",
            NetnsError::Netlink { .. } => "netns_netlink",
            NetnsError::Sysctl { .. } => "netns_sysctl",
            NetnsError::Thread { .. } => "netns_thread",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct() {
        let io = || io::Error::other("x");
        let path = PathBuf::from("/run/netns/a");
        let errors = [
            NetnsError::Open {
                path: path.clone(),
                source: io(),
            },
            NetnsError::Enter {
                path: path.clone(),
                source: io(),
            },
            NetnsError::Named {
                what: "creating",
                path: path.clone(),
                source: io(),
            },
            NetnsError::Netlink {
                path: path.clone(),
                what: "connecting",
                source: io(),
            },
            NetnsError::Sysctl {
                key: "ipv4/ip_forward".into(),
                source: io(),
            },
            NetnsError::Thread {
                path,
                detail: "died".into(),
            },
        ];
        let labels: std::collections::BTreeSet<_> = errors.iter().map(NetnsError::label).collect();
        assert_eq!(labels.len(), errors.len());
    }
}
