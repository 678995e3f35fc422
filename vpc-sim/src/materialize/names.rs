//! Names of the kernel objects the materializer owns.
//!
//! Only namespace names and the nftables table carry the prefix: every link lives inside
//! a namespace (the prefix's `vpc` namespace or a node namespace), never in the root
//! namespace, so link names cannot collide between parallel instances and stay far below
//! the kernel's 15-character limit.

use macaddr::MacAddr6;

use crate::dataplane_view::{EniKind, EniPortView};

use super::MaterializeError;

/// Longest accepted prefix; keeps namespace and table names short and readable.
const MAX_PREFIX_LEN: usize = 32;

/// Port names are `p` + 12 hex digits: 13 characters, below IFNAMSIZ - 1 = 15.
const PORT_HASH_DIGITS: usize = 12;

/// Checks that `prefix` is a plain identifier (a letter, then letters and digits).
///
/// No `-`: cleanup removes every namespace named `<prefix>-*`, so a prefix containing
/// `-` could match (and delete) another instance's namespaces ("a" vs "a-b").
pub fn validate_prefix(prefix: &str) -> Result<(), MaterializeError> {
    let mut chars = prefix.chars();
    let valid = prefix.len() <= MAX_PREFIX_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(MaterializeError::InvalidPrefix(prefix.to_string()))
    }
}

/// The VPC router namespace of a prefix.
pub fn vpc_netns(prefix: &str) -> String {
    format!("{prefix}-vpc")
}

/// The "internet" namespace behind the VPC's internet gateway.
pub fn internet_netns(prefix: &str) -> String {
    format!("{prefix}-inet")
}

/// The namespace name the state machine is expected to give a node.
pub fn node_netns(prefix: &str, node: &str) -> String {
    format!("{prefix}-{node}")
}

/// Whether a namespace name belongs to `prefix` by name (`<prefix>-...`).
pub fn has_prefix(prefix: &str, netns: &str) -> bool {
    netns
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// Checks a namespace name taken from the view: it becomes a file name in /run/netns.
pub fn validate_netns(netns: &str) -> Result<(), MaterializeError> {
    let valid = !netns.is_empty()
        && netns.len() <= 255
        && netns != "."
        && netns != ".."
        && !netns.contains('/')
        && !netns.contains('\0');
    if valid {
        Ok(())
    } else {
        Err(MaterializeError::InvalidView(format!(
            "invalid namespace name {netns:?}"
        )))
    }
}

/// Name of the link a node sees for an ENI: `eth<device index>` as on a real instance;
/// a member ENI (handed over as its own device instead of a VLAN sub-interface) is
/// `vlan<vlan id>`.
pub fn node_link(eni: &EniPortView) -> String {
    match &eni.kind {
        EniKind::Member { vlan_id, .. } => format!("vlan{vlan_id}"),
        EniKind::Primary | EniKind::Secondary | EniKind::Trunk => {
            format!("eth{}", eni.device_index)
        }
    }
}

/// Name of an ENI's port in the `vpc` namespace.
///
/// The name hashes everything the veth pair was created with (ENI, node namespace, node
/// link name, MAC): a port whose name is still wanted is therefore exactly right, and an
/// ENI that moved to another node or changed identity gets a new port, the old one being
/// removed as unwanted. This makes the link name the only state to compare.
pub fn port(eni: &EniPortView, node_netns: &str) -> String {
    let identity = format!(
        "{}\0{}\0{}\0{}",
        eni.eni_id,
        node_netns,
        node_link(eni),
        eni.mac
    );
    let hash = fnv1a64(identity.as_bytes());
    let digits = format!("{hash:016x}");
    format!("p{}", &digits[..PORT_HASH_DIGITS])
}

/// Whether a link in the `vpc` namespace is one of our ports (anything else, like `lo`,
/// is left alone).
pub fn is_port(name: &str) -> bool {
    name.len() == 1 + PORT_HASH_DIGITS
        && name.starts_with('p')
        && name[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Parses `02:ab:cd:00:00:01` into six bytes.
pub fn parse_mac(mac: &str) -> Result<[u8; 6], MaterializeError> {
    mac.parse::<MacAddr6>()
        .map(MacAddr6::into_array)
        .map_err(|e| MaterializeError::InvalidView(format!("invalid MAC address {mac:?}: {e}")))
}

/// FNV-1a: stable across Rust releases (unlike `DefaultHasher`), so a restarted vpc-sim
/// recognizes the ports of the previous run.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn eni(id: &str, kind: EniKind, device_index: u32) -> EniPortView {
        EniPortView {
            eni_id: id.to_string(),
            mac: "02:00:00:00:00:01".to_string(),
            device_index,
            kind,
            addresses: vec![Ipv4Addr::new(10, 0, 1, 10)],
            prefixes: vec![],
            security_group_ids: vec![],
            subnet_cidr: "10.0.1.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
        }
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("vs1234").is_ok());
        for bad in ["", "1vs", "vs-1", "vs_1", &"v".repeat(33)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} accepted");
        }
        assert!(has_prefix("vs1", "vs1-vpc"));
        assert!(!has_prefix("vs1", "vs12-vpc"));
        assert!(!has_prefix("vs1", "vs1"));
        assert_eq!(node_netns("vs1", "node-a"), "vs1-node-a");
    }

    #[test]
    fn netns_names() {
        assert!(validate_netns("vs1-node-a").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(validate_netns(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_links() {
        assert_eq!(node_link(&eni("eni-1", EniKind::Primary, 0)), "eth0");
        assert_eq!(node_link(&eni("eni-1", EniKind::Secondary, 3)), "eth3");
        let member = EniKind::Member {
            trunk_eni_id: "eni-t".to_string(),
            vlan_id: 4094,
        };
        assert_eq!(node_link(&eni("eni-m", member, 9)), "vlan4094");
    }

    #[test]
    fn port_names_fit_and_track_identity() {
        let a = eni("eni-0123456789abcdef0", EniKind::Secondary, 1);
        let name = port(&a, "vs1-node-a");
        assert!(name.len() <= 15);
        assert!(is_port(&name));
        assert_eq!(name, port(&a.clone(), "vs1-node-a"), "deterministic");
        assert_ne!(name, port(&a, "vs1-node-b"), "moving node changes the port");
        let mut reindexed = a.clone();
        reindexed.device_index = 2;
        assert_ne!(name, port(&reindexed, "vs1-node-a"));
        // Addresses are not identity: assigning one must not recreate the link.
        let mut more = a.clone();
        more.addresses.push(Ipv4Addr::new(10, 0, 1, 11));
        assert_eq!(name, port(&more, "vs1-node-a"));
        assert!(!is_port("lo"));
        assert!(!is_port("pxyz"));
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:ab:cd:00:00:01").unwrap(),
            [0x02, 0xab, 0xcd, 0, 0, 1]
        );
        for bad in [
            "",
            "02:ab:cd:00:00",
            "02:ab:cd:00:00:01:02",
            "2:ab:cd:00:00:01",
            "zz:ab:cd:00:00:01",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?} accepted");
        }
    }
}
