//! Names and link aliases: how the agent recognises its own links after a restart.
//!
//! Every wired pod has one host-side link named `eni<11 hex>` (a hash of container id
//! and pod interface name, so it is stable across restarts and fits IFNAMSIZ). Its
//! ifalias carries the pod's identity; an ENI lent to a pod carries its original name.

use std::path::PathBuf;

use super::error::DataplaneError;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Longest ifalias the kernel takes (IFALIASZ - 1).
const MAX_ALIAS: usize = 255;
/// Prefix of every host link name the agent creates.
pub const HOST_LINK_PREFIX: &str = "eni";
/// Prefix of every ifalias the agent writes.
const ALIAS_PREFIX: &str = "eni-agent/v1";

/// How a pod is wired; recorded in the host link's alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WiringKind {
    /// SharedIP over a veth pair and policy routing.
    SharedVeth,
    /// Exclusive: the whole ENI link is in the pod, plus a veth to the host.
    Exclusive,
    /// Trunk: the member ENI's own link is in the pod, plus a veth to the host.
    TrunkMember,
    /// Trunk: a VLAN sub-interface of the trunk ENI is in the pod, plus a veth.
    TrunkVlan,
    /// SharedIP over an ipvlan slave of the ENI (no per-pod host link).
    SharedIpvlan,
}

impl WiringKind {
    fn as_str(self) -> &'static str {
        match self {
            WiringKind::SharedVeth => "shared-veth",
            WiringKind::Exclusive => "exclusive",
            WiringKind::TrunkMember => "trunk-member",
            WiringKind::TrunkVlan => "trunk-vlan",
            WiringKind::SharedIpvlan => "shared-ipvlan",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "shared-veth" => WiringKind::SharedVeth,
            "exclusive" => WiringKind::Exclusive,
            "trunk-member" => WiringKind::TrunkMember,
            "trunk-vlan" => WiringKind::TrunkVlan,
            "shared-ipvlan" => WiringKind::SharedIpvlan,
            _ => return None,
        })
    }
}

/// 64-bit FNV-1a: tiny, deterministic across builds (unlike std's `DefaultHasher`).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= u64::from(b'/');
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Host-side link name of the pod interface (`container_id`, `ifname`).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let hex = format!("{:016x}", fnv1a(&[container_id, ifname]));
    format!(
        "{HOST_LINK_PREFIX}{}",
        &hex[..MAX_IFNAME - HOST_LINK_PREFIX.len() - 1]
    )
}

/// Pod-side name of the veth that gives a passthrough pod its path to the host:
/// `v` + the pod interface name (`eth0` gives `veth0`).
pub fn host_path_ifname(ifname: &str) -> String {
    let mut name = format!("v{ifname}");
    name.truncate(MAX_IFNAME);
    name
}

/// Checks a container id as the CNI spec defines it (alphanumerics, `_`, `.`, `-`).
pub fn validate_container_id(id: &str) -> Result<(), DataplaneError> {
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(DataplaneError::InvalidRequest(format!(
            "container id {id:?} must be non-empty alphanumerics, '_', '.' or '-'"
        )))
    }
}

/// Checks an interface name as the kernel would.
pub fn validate_ifname(name: &str) -> Result<(), DataplaneError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(DataplaneError::InvalidRequest(format!(
            "interface name {name:?} is not a valid link name (1 to {MAX_IFNAME} characters, no '/', ':' or spaces)"
        )))
    }
}

/// Identity of a wired pod, stored in its host link's ifalias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMarker {
    pub kind: WiringKind,
    pub ifname: String,
    pub container_id: String,
    pub netns: PathBuf,
}

impl PodMarker {
    /// `eni-agent/v1 pod <kind> <ifname> <container id> <netns path>`; the path comes
    /// last because it alone may contain spaces.
    pub fn encode(&self) -> Result<String, DataplaneError> {
        let alias = format!(
            "{ALIAS_PREFIX} pod {} {} {} {}",
            self.kind.as_str(),
            self.ifname,
            self.container_id,
            self.netns.display()
        );
        check_alias_len(alias)
    }

    pub fn parse(alias: &str) -> Option<Self> {
        let rest = alias.strip_prefix(ALIAS_PREFIX)?.strip_prefix(" pod ")?;
        let mut fields = rest.splitn(4, ' ');
        let kind = WiringKind::parse(fields.next()?)?;
        let ifname = fields.next()?.to_string();
        let container_id = fields.next()?.to_string();
        let netns = PathBuf::from(fields.next()?);
        Some(PodMarker {
            kind,
            ifname,
            container_id,
            netns,
        })
    }
}

/// What a link inside a pod's namespace is, for the agent that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodLinkOrigin {
    /// An ENI link lent by the host; it goes back under `original_name`.
    Lent { original_name: String },
    /// A VLAN sub-interface of the trunk ENI; deleted on unwire.
    Vlan,
    /// An ipvlan slave of an ENI; deleted on unwire.
    Ipvlan,
}

/// Marker on a non-veth link in a pod's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLinkMarker {
    pub container_id: String,
    pub origin: PodLinkOrigin,
}

impl PodLinkMarker {
    /// `eni-agent/v1 lent <original name> <container id>`, `eni-agent/v1 vlan <container
    /// id>` or `eni-agent/v1 ipvlan <container id>`.
    pub fn encode(&self) -> Result<String, DataplaneError> {
        check_alias_len(match &self.origin {
            PodLinkOrigin::Lent { original_name } => {
                format!("{ALIAS_PREFIX} lent {original_name} {}", self.container_id)
            }
            PodLinkOrigin::Vlan => format!("{ALIAS_PREFIX} vlan {}", self.container_id),
            PodLinkOrigin::Ipvlan => format!("{ALIAS_PREFIX} ipvlan {}", self.container_id),
        })
    }

    pub fn parse(alias: &str) -> Option<Self> {
        let rest = alias.strip_prefix(ALIAS_PREFIX)?.strip_prefix(' ')?;
        let (tag, rest) = rest.split_once(' ')?;
        let (origin, container_id) = match tag {
            "lent" => {
                let (original_name, container_id) = rest.split_once(' ')?;
                let original_name = original_name.to_string();
                (PodLinkOrigin::Lent { original_name }, container_id)
            }
            "vlan" => (PodLinkOrigin::Vlan, rest),
            "ipvlan" => (PodLinkOrigin::Ipvlan, rest),
            _ => return None,
        };
        Some(PodLinkMarker {
            container_id: container_id.to_string(),
            origin,
        })
    }
}

/// Alias of the per-ENI host-side ipvlan slave.
pub const IPVLAN_HOST_ALIAS: &str = "eni-agent/v1 ipvlan-host";

/// Name of the host-side ipvlan slave of the ENI link `eni_index`.
pub fn ipvlan_host_ifname(eni_index: u32) -> String {
    format!("ipvl{eni_index}")
}

fn check_alias_len(alias: String) -> Result<String, DataplaneError> {
    if alias.len() > MAX_ALIAS {
        return Err(DataplaneError::InvalidRequest(format!(
            "identity marker longer than {MAX_ALIAS} bytes (is the netns path too long?): {alias}"
        )));
    }
    Ok(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifname_is_stable_short_and_distinct() {
        let a = host_ifname("abc123", "eth0");
        assert_eq!(a, host_ifname("abc123", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("eni"));
        assert!(a[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, host_ifname("abc123", "net1"));
        assert_ne!(a, host_ifname("abc124", "eth0"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
    }

    #[test]
    fn host_path_ifname_prefixes_and_truncates() {
        assert_eq!(host_path_ifname("eth0"), "veth0");
        assert_eq!(host_path_ifname("abcdefghijklmno"), "vabcdefghijklmn");
    }

    #[test]
    fn pod_marker_round_trips_with_spaces_in_path() {
        let marker = PodMarker {
            kind: WiringKind::Exclusive,
            ifname: "eth0".into(),
            container_id: "c0ffee".into(),
            netns: PathBuf::from("/run/netns/with space"),
        };
        let alias = marker.encode().unwrap();
        assert_eq!(
            alias,
            "eni-agent/v1 pod exclusive eth0 c0ffee /run/netns/with space"
        );
        assert_eq!(PodMarker::parse(&alias), Some(marker));
        assert_eq!(PodMarker::parse("some other alias"), None);
        assert_eq!(PodMarker::parse("eni-agent/v1 pod bogus eth0 c /x"), None);
    }

    #[test]
    fn pod_link_markers_round_trip() {
        for origin in [
            PodLinkOrigin::Lent {
                original_name: "ens6".into(),
            },
            PodLinkOrigin::Vlan,
            PodLinkOrigin::Ipvlan,
        ] {
            let marker = PodLinkMarker {
                container_id: "c0ffee".into(),
                origin,
            };
            let alias = marker.encode().unwrap();
            assert_eq!(PodLinkMarker::parse(&alias), Some(marker));
        }
        assert_eq!(
            PodLinkMarker::parse("eni-agent/v1 lent ens6 c0ffee").map(|m| m.origin),
            Some(PodLinkOrigin::Lent {
                original_name: "ens6".into()
            })
        );
        assert_eq!(
            PodLinkMarker::parse("eni-agent/v1 pod exclusive eth0 c /x"),
            None
        );
        assert_eq!(PodLinkMarker::parse(IPVLAN_HOST_ALIAS), None);
    }

    #[test]
    fn too_long_marker_is_refused() {
        let marker = PodMarker {
            kind: WiringKind::SharedVeth,
            ifname: "eth0".into(),
            container_id: "c".repeat(64),
            netns: PathBuf::from(format!("/{}", "n".repeat(200))),
        };
        assert!(matches!(
            marker.encode(),
            Err(DataplaneError::InvalidRequest(_))
        ));
    }

    #[test]
    fn validation() {
        assert!(validate_container_id("abc-1_2.3").is_ok());
        assert!(validate_container_id("").is_err());
        assert!(validate_container_id("a b").is_err());
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
        assert!(validate_ifname("a/b").is_err());
    }
}
