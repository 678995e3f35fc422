use std::fmt;
use std::io;
use std::path::PathBuf;

use eni_crds::Mac;

/// A kernel feature some datapaths need and not every kernel has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFeature {
    /// ipvlan links (SharedIP with datapath IPVlan).
    IpVlan,
    /// 802.1Q VLAN links (Trunk members relayed as VLAN sub-interfaces).
    Vlan,
    /// ifb links (pod bandwidth limits).
    Ifb,
}

impl fmt::Display for KernelFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelFeature::IpVlan => "ipvlan",
            KernelFeature::Vlan => "8021q (VLAN)",
            KernelFeature::Ifb => "ifb",
        })
    }
}

/// Why wiring, unwiring or inspecting a pod's network failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The request needs a kernel feature this node lacks; nothing was changed.
    #[error("the kernel lacks {feature}, which {needed_by} needs; nothing was changed")]
    FeatureMissing {
        feature: KernelFeature,
        needed_by: &'static str,
    },
    /// The request is malformed; nothing was changed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No link in the host namespace has the ENI's MAC (not attached yet, or gone).
    #[error("no link with MAC {mac} in the host network namespace")]
    EniNotFound { mac: Mac },
    /// A link we would create exists and belongs to someone else.
    #[error("link {name} exists and is not ours ({detail})")]
    Conflict { name: String, detail: String },
    /// Opening or entering a network namespace failed.
    #[error("network namespace {path}: {source}")]
    Netns { path: PathBuf, source: io::Error },
    /// Writing a sysctl failed.
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: io::Error },
    /// The kernel refused a netlink request.
    #[error("netlink {what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    /// nft refused or could not run (the agent's own nftables table).
    #[error("nftables, {what}: {detail}")]
    Nftables { what: String, detail: String },
    /// A dedicated namespace thread died before answering.
    #[error("namespace worker thread died: {0}")]
    Worker(String),
}

impl DataplaneError {
    /// The missing kernel feature, when that is why the request failed.
    pub fn feature_missing(&self) -> Option<KernelFeature> {
        match self {
            DataplaneError::FeatureMissing { feature, .. } => Some(*feature),
            _ => None,
        }
    }

    pub(crate) fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Self {
        DataplaneError::Netlink {
            what: what.into(),
            source,
        }
    }
}

/// Positive errno of a netlink error answer, if the error is one.
pub(crate) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}
