//! The kernel state a `DataplaneView` asks for, computed without touching the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::dataplane_view::{DataplaneView, EniKind};

use super::{MaterializeError, names};

/// Everything `apply` converges to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Node namespaces, in view order.
    pub netns: Vec<String>,
    /// Ports of the `vpc` namespace by port name.
    pub ports: BTreeMap<String, Port>,
    /// Routes of the `vpc` namespace: destination to port name.
    pub routes: BTreeMap<Ipv4Net, String>,
    /// Addresses and prefixes of the ENIs of each security group (for rules that name a
    /// source group).
    pub group_members: BTreeMap<String, Vec<Ipv4Net>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Port {
    pub eni_id: String,
    pub node_netns: String,
    pub node_link: String,
    pub mac: [u8; 6],
    /// Subnet gateway, held by the port so that the node can ARP for it.
    pub gateway: Ipv4Addr,
    /// Set for the primary ENI, which the instance's OS configures at boot.
    pub primary: Option<PrimaryConfig>,
    /// Source addresses the port may send from (anti-spoofing), aggregated.
    pub sources: Vec<Ipv4Net>,
    pub security_group_ids: Vec<String>,
}

/// What a real instance's OS does with its primary ENI: primary address with the
/// subnet's mask, default route via the subnet gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryConfig {
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
}

impl Desired {
    pub fn from_view(prefix: &str, view: &DataplaneView) -> Result<Self, MaterializeError> {
        let vpc_netns = names::vpc_netns(prefix);
        let mut desired = Desired::default();
        let mut enis = BTreeSet::new();
        let mut group_members: BTreeMap<String, BTreeSet<Ipv4Net>> = BTreeMap::new();

        for node in &view.nodes {
            names::validate_netns(&node.netns)?;
            if node.netns == vpc_netns || desired.netns.contains(&node.netns) {
                return Err(invalid(format!(
                    "namespace {} of instance {} is used twice",
                    node.netns, node.instance_id
                )));
            }
            desired.netns.push(node.netns.clone());
            let mut node_links = BTreeSet::new();

            for eni in &node.enis {
                if !enis.insert(eni.eni_id.as_str()) {
                    return Err(invalid(format!("ENI {} attached twice", eni.eni_id)));
                }
                let node_link = names::node_link(eni);
                if !node_links.insert(node_link.clone()) {
                    return Err(invalid(format!(
                        "two ENIs of instance {} map to link {node_link}",
                        node.instance_id
                    )));
                }
                let primary = match eni.kind {
                    EniKind::Primary => {
                        let address = eni.addresses.first().ok_or_else(|| {
                            invalid(format!("primary ENI {} has no address", eni.eni_id))
                        })?;
                        let address = Ipv4Net::new(*address, eni.subnet_cidr.prefix_len())
                            .map_err(|e| invalid(format!("ENI {}: {e}", eni.eni_id)))?;
                        Some(PrimaryConfig {
                            address,
                            gateway: eni.gateway,
                        })
                    }
                    EniKind::Secondary | EniKind::Trunk | EniKind::Member { .. } => None,
                };

                let port = names::port(eni, &node.netns);
                let owned: Vec<Ipv4Net> = eni
                    .addresses
                    .iter()
                    .map(|a| Ipv4Net::from(*a))
                    .chain(eni.prefixes.iter().map(Ipv4Net::trunc))
                    .collect();
                for net in &owned {
                    if let Some(other) = desired.routes.insert(*net, port.clone()) {
                        return Err(invalid(format!(
                            "{net} is held by two ENIs (ports {other} and {port})"
                        )));
                    }
                }
                for group in &eni.security_group_ids {
                    group_members
                        .entry(group.clone())
                        .or_default()
                        .extend(owned.iter().copied());
                }
                let entry = Port {
                    eni_id: eni.eni_id.clone(),
                    node_netns: node.netns.clone(),
                    node_link,
                    mac: names::parse_mac(&eni.mac)?,
                    gateway: eni.gateway,
                    primary,
                    sources: Ipv4Net::aggregate(&owned),
                    security_group_ids: eni.security_group_ids.clone(),
                };
                if desired.ports.insert(port.clone(), entry).is_some() {
                    return Err(invalid(format!("port name collision on {port}")));
                }
            }
        }
        desired.group_members = group_members
            .into_iter()
            .map(|(group, nets)| (group, Ipv4Net::aggregate(&nets.into_iter().collect())))
            .collect();
        Ok(desired)
    }
}

fn invalid(message: String) -> MaterializeError {
    MaterializeError::InvalidView(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane_view::{EniPortView, NodeView};

    fn eni(id: &str, kind: EniKind, index: u32, addresses: &[&str]) -> EniPortView {
        EniPortView {
            eni_id: id.to_string(),
            mac: format!("02:00:00:00:00:{index:02x}"),
            device_index: index,
            kind,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            prefixes: vec![],
            security_group_ids: vec!["sg-a".to_string()],
            subnet_cidr: "10.0.1.0/24".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
        }
    }

    fn view(enis: Vec<EniPortView>) -> DataplaneView {
        DataplaneView {
            nodes: vec![NodeView {
                instance_id: "i-1".to_string(),
                netns: "vs1-n1".to_string(),
                enis,
            }],
            security_groups: vec![],
        }
    }

    #[test]
    fn empty_view_wants_nothing() {
        assert_eq!(
            Desired::from_view("vs1", &DataplaneView::default()).unwrap(),
            Desired::default()
        );
    }

    #[test]
    fn routes_sources_and_primary_config() {
        let mut secondary = eni("eni-2", EniKind::Secondary, 1, &["10.0.1.20"]);
        secondary.prefixes = vec!["10.0.1.48/28".parse().unwrap()];
        let v = view(vec![
            eni("eni-1", EniKind::Primary, 0, &["10.0.1.10", "10.0.1.11"]),
            secondary,
        ]);
        let d = Desired::from_view("vs1", &v).unwrap();
        assert_eq!(d.netns, vec!["vs1-n1".to_string()]);
        assert_eq!(d.ports.len(), 2);
        assert_eq!(d.routes.len(), 4);
        let p1 = &d.ports[&d.routes[&"10.0.1.10/32".parse().unwrap()]];
        assert_eq!(p1.eni_id, "eni-1");
        assert_eq!(p1.node_link, "eth0");
        assert_eq!(
            p1.primary,
            Some(PrimaryConfig {
                address: "10.0.1.10/24".parse().unwrap(),
                gateway: "10.0.1.1".parse().unwrap(),
            })
        );
        // .10 and .11 form an aligned /31, so the anti-spoofing set merges them.
        assert_eq!(p1.sources, vec!["10.0.1.10/31".parse::<Ipv4Net>().unwrap()]);
        let p2 = &d.ports[&d.routes[&"10.0.1.48/28".parse().unwrap()]];
        assert_eq!(p2.primary, None);
        assert_eq!(p2.node_link, "eth1");
        assert_eq!(d.group_members["sg-a"].len(), 3);
    }

    #[test]
    fn inconsistent_views_are_refused() {
        let twice = view(vec![
            eni("eni-1", EniKind::Primary, 0, &["10.0.1.10"]),
            eni("eni-1", EniKind::Secondary, 1, &["10.0.1.20"]),
        ]);
        assert!(Desired::from_view("vs1", &twice).is_err());
        let shared_address = view(vec![
            eni("eni-1", EniKind::Primary, 0, &["10.0.1.10"]),
            eni("eni-2", EniKind::Secondary, 1, &["10.0.1.10"]),
        ]);
        assert!(Desired::from_view("vs1", &shared_address).is_err());
        let same_link = view(vec![
            eni("eni-1", EniKind::Primary, 0, &["10.0.1.10"]),
            eni("eni-2", EniKind::Secondary, 0, &["10.0.1.20"]),
        ]);
        assert!(Desired::from_view("vs1", &same_link).is_err());
        let no_address = view(vec![eni("eni-1", EniKind::Primary, 0, &[])]);
        assert!(Desired::from_view("vs1", &no_address).is_err());
        let mut vpc_clash = view(vec![]);
        vpc_clash.nodes[0].netns = "vs1-vpc".to_string();
        assert!(Desired::from_view("vs1", &vpc_clash).is_err());
    }
}
