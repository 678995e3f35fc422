//! Pure builders of the netlink requests the dataplane sends, and the desired-state
//! types (routes, rules) they are built from. Kept free of I/O so that every request,
//! including those of datapaths this kernel cannot run (ipvlan, VLAN), is unit-tested.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoVeth, InfoVlan, IpVlanMode, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

/// Protocol number on every route, rule and proxy-neighbour entry the agent makes
/// (`ip route` shows `proto 225`): it tells ours apart after a restart.
pub const PROTO_ID: u8 = 225;
pub const PROTO: RouteProtocol = RouteProtocol::Other(PROTO_ID);
/// Rule `to <pod> lookup main`: traffic to a pod never follows an ENI table.
pub const RULE_PRIORITY_TO_POD: u32 = 512;
/// Rule `from <pod> lookup <ENI table>`: a pod's traffic leaves through its ENI.
pub const RULE_PRIORITY_FROM_POD: u32 = 2048;
/// The pod's next hop on veth datapaths; answered by a permanent neighbour entry.
pub const LINK_LOCAL_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// One IPv4 unicast route as the agent wires it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub table: u32,
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: u32,
    pub onlink: bool,
    pub source: Option<Ipv4Addr>,
}

impl Route {
    /// A route straight out of `oif` (scope link).
    pub fn direct(table: u32, destination: Ipv4Net, oif: u32) -> Self {
        Route {
            table,
            destination,
            gateway: None,
            oif,
            onlink: false,
            source: None,
        }
    }

    /// A route via `gateway`, taken as on-link (no connected route to it needed).
    pub fn via_onlink(table: u32, destination: Ipv4Net, gateway: Ipv4Addr, oif: u32) -> Self {
        Route {
            table,
            destination,
            gateway: Some(gateway),
            oif,
            onlink: true,
            source: None,
        }
    }

    pub fn with_source(mut self, source: Ipv4Addr) -> Self {
        self.source = Some(source);
        self
    }

    pub fn to_message(&self) -> RouteMessage {
        let mut message = RouteMessage::default();
        let header = &mut message.header;
        header.address_family = AddressFamily::Inet;
        header.destination_prefix_length = self.destination.prefix_len();
        header.protocol = PROTO;
        header.kind = RouteType::Unicast;
        header.scope = if self.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if self.onlink {
            header.flags.insert(RouteFlags::Onlink);
        }
        // Tables above 255 only fit the attribute; the header carries its low byte.
        header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        message.attributes.push(RouteAttribute::Table(self.table));
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                self.destination.network(),
            )));
        if let Some(gateway) = self.gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        }
        message.attributes.push(RouteAttribute::Oif(self.oif));
        if let Some(source) = self.source {
            message
                .attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(source)));
        }
        message
    }

    /// Reads an IPv4 unicast route from a dump, with its protocol.
    pub fn from_message(message: &RouteMessage) -> Option<(Route, RouteProtocol)> {
        let header = &message.header;
        if header.address_family != AddressFamily::Inet || header.kind != RouteType::Unicast {
            return None;
        }
        let mut table = u32::from(header.table);
        let mut destination = Ipv4Addr::UNSPECIFIED;
        let mut gateway = None;
        let mut oif = None;
        let mut source = None;
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = *a,
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::PrefSource(RouteAddress::Inet(a)) => source = Some(*a),
                // Multipath and other shapes are not ours.
                RouteAttribute::MultiPath(_) => return None,
                _ => {}
            }
        }
        let destination = Ipv4Net::new(destination, header.destination_prefix_length).ok()?;
        let route = Route {
            table,
            destination,
            gateway,
            oif: oif?,
            onlink: header.flags.contains(RouteFlags::Onlink),
            source,
        };
        Some((route, header.protocol))
    }
}

/// What a policy rule matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleSelector {
    To(Ipv4Addr),
    From(Ipv4Addr),
}

/// One IPv4 policy rule `<selector>/32 lookup <table>` at `priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub priority: u32,
    pub selector: RuleSelector,
    pub table: u32,
}

impl Rule {
    /// `to <pod> lookup main` at priority 512.
    pub fn to_pod(pod: Ipv4Addr) -> Self {
        Rule {
            priority: RULE_PRIORITY_TO_POD,
            selector: RuleSelector::To(pod),
            table: MAIN_TABLE,
        }
    }

    /// `from <pod> lookup <table>` at priority 2048.
    pub fn from_pod(pod: Ipv4Addr, table: u32) -> Self {
        Rule {
            priority: RULE_PRIORITY_FROM_POD,
            selector: RuleSelector::From(pod),
            table,
        }
    }

    /// The pod address the rule is about.
    pub fn address(&self) -> Ipv4Addr {
        match self.selector {
            RuleSelector::To(a) | RuleSelector::From(a) => a,
        }
    }

    pub fn to_message(&self) -> RuleMessage {
        let mut message = RuleMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.action = RuleAction::ToTable;
        message.header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        message.attributes.push(RuleAttribute::Table(self.table));
        message
            .attributes
            .push(RuleAttribute::Priority(self.priority));
        match self.selector {
            RuleSelector::To(address) => {
                message.header.dst_len = 32;
                message
                    .attributes
                    .push(RuleAttribute::Destination(address.into()));
            }
            RuleSelector::From(address) => {
                message.header.src_len = 32;
                message
                    .attributes
                    .push(RuleAttribute::Source(address.into()));
            }
        }
        message.attributes.push(RuleAttribute::Protocol(PROTO));
        message
    }

    /// Reads a rule of the agent's shape (one /32 selector, lookup) from a dump, with
    /// its protocol; rules of any other shape give `None`.
    pub fn from_message(message: &RuleMessage) -> Option<(Rule, RouteProtocol)> {
        let header = &message.header;
        if header.family != AddressFamily::Inet || header.action != RuleAction::ToTable {
            return None;
        }
        let mut table = u32::from(header.table);
        let mut priority = 0;
        let mut source = None;
        let mut destination = None;
        let mut protocol = RouteProtocol::Unspec;
        for attribute in &message.attributes {
            match attribute {
                RuleAttribute::Table(t) => table = *t,
                RuleAttribute::Priority(p) => priority = *p,
                RuleAttribute::Source(std::net::IpAddr::V4(a)) => source = Some(*a),
                RuleAttribute::Destination(std::net::IpAddr::V4(a)) => destination = Some(*a),
                RuleAttribute::Protocol(p) => protocol = *p,
                RuleAttribute::Iifname(_)
                | RuleAttribute::Oifname(_)
                | RuleAttribute::FwMark(_)
                | RuleAttribute::Goto(_) => return None,
                _ => {}
            }
        }
        let selector = match (source, destination) {
            (Some(a), None) if header.src_len == 32 => RuleSelector::From(a),
            (None, Some(a)) if header.dst_len == 32 => RuleSelector::To(a),
            _ => return None,
        };
        Some((
            Rule {
                priority,
                selector,
                table,
            },
            protocol,
        ))
    }
}

/// A veth pair: `host` stays in the current namespace, its peer is created directly
/// in the pod's namespace under the pod's interface name (no rename, no move).
pub fn veth_pair(host: &str, pod_ifname: &str, pod_netns: BorrowedFd<'_>) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(pod_ifname.to_string()));
    peer.attributes
        .push(LinkAttribute::NetNsFd(pod_netns.as_raw_fd()));
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(host.to_string()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    message
}

/// An L2 ipvlan slave of `parent`, created in `netns` (the pod's) when given.
pub fn ipvlan_link(name: &str, parent: u32, netns: Option<BorrowedFd<'_>>) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message.attributes.push(LinkAttribute::Link(parent));
    if let Some(fd) = netns {
        message
            .attributes
            .push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::IpVlan),
        LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
    ]));
    message
}

/// A VLAN sub-interface of the trunk link `parent` with the member ENI's VLAN id and
/// MAC, created in the host and moved into `netns` (the pod's, when given) by the same
/// request.
pub fn vlan_link(
    name: &str,
    parent: u32,
    vlan_id: u16,
    mac: [u8; 6],
    netns: Option<BorrowedFd<'_>>,
) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message.attributes.push(LinkAttribute::Link(parent));
    message
        .attributes
        .push(LinkAttribute::Address(mac.to_vec()));
    if let Some(fd) = netns {
        message
            .attributes
            .push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vlan),
        LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(vlan_id)])),
    ]));
    message
}

/// Moves link `index` into `netns` under `new_name`, in one request (the kernel
/// renames while moving, so no name clash in either namespace).
pub fn move_link(index: u32, netns: BorrowedFd<'_>, new_name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
        .attributes
        .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
    message
        .attributes
        .push(LinkAttribute::IfName(new_name.to_string()));
    message
}

/// Renames link `index` to `name` and clears its ifalias (an ENI link given back).
pub fn rename_and_unmark(index: u32, name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message
        .attributes
        .push(LinkAttribute::IfAlias(String::new()));
    message
}

/// Sets link `index` up.
pub fn link_up(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
}

/// Sets link `index` down.
pub fn link_down(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.change_mask = LinkFlags::Up;
    message
}

/// Sets (or, with an empty string, clears) the ifalias of link `index`.
pub fn link_alias(index: u32, alias: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
        .attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    message
}

/// Puts link `index` into interface group `group` (what nftables' `iifgroup` matches).
pub fn link_group(index: u32, group: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes.push(LinkAttribute::Group(group));
    message
}

/// Permanent neighbour entry `ip lladdr mac` on `ifindex`.
pub fn permanent_neighbour(ifindex: u32, ip: Ipv4Addr, mac: [u8; 6]) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.ifindex = ifindex;
    message.header.state = NeighbourState::Permanent;
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    message
}

/// Proxy-ARP entry for `ip` on `ifindex`: the node answers ARP for the pod's address
/// on the ENI link (and only that address), so an L2 VPC router finds the pod.
pub fn proxy_neighbour(ifindex: u32, ip: Ipv4Addr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.ifindex = ifindex;
    message.header.state = NeighbourState::Permanent;
    message.header.flags = NeighbourFlags::Proxy;
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    message.attributes.push(NeighbourAttribute::Protocol(PROTO));
    message
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::AsFd;

    use super::*;

    fn netns_file() -> File {
        File::open("/proc/self/ns/net").unwrap()
    }

    fn link_infos(message: &LinkMessage) -> &[LinkInfo] {
        message
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos.as_slice()),
                _ => None,
            })
            .unwrap()
    }

    fn has(message: &LinkMessage, wanted: &LinkAttribute) -> bool {
        message.attributes.iter().any(|a| a == wanted)
    }

    #[test]
    fn ipvlan_request_is_an_l2_slave_of_the_eni_in_the_pod() {
        let ns = netns_file();
        let message = ipvlan_link("eth0", 7, Some(ns.as_fd()));
        assert!(has(&message, &LinkAttribute::IfName("eth0".into())));
        assert!(has(&message, &LinkAttribute::Link(7)));
        assert!(has(&message, &LinkAttribute::NetNsFd(ns.as_raw_fd())));
        assert_eq!(
            link_infos(&message),
            &[
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
            ]
        );
        let host_side = ipvlan_link("ipvl5", 7, None);
        assert!(
            !host_side
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::NetNsFd(_)))
        );
    }

    #[test]
    fn vlan_request_carries_id_mac_parent_and_target_netns() {
        let ns = netns_file();
        let mac = [0x02, 0xab, 0xcd, 0xef, 0x01, 0x23];
        let message = vlan_link("eth0", 3, 42, mac, Some(ns.as_fd()));
        assert!(has(&message, &LinkAttribute::IfName("eth0".into())));
        assert!(has(&message, &LinkAttribute::Link(3)));
        assert!(has(&message, &LinkAttribute::Address(mac.to_vec())));
        assert!(has(&message, &LinkAttribute::NetNsFd(ns.as_raw_fd())));
        assert_eq!(
            link_infos(&message),
            &[
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(42)])),
            ]
        );
    }

    #[test]
    fn veth_request_creates_the_peer_in_the_pod_under_its_name() {
        let ns = netns_file();
        let message = veth_pair("eni0123456789a", "eth0", ns.as_fd());
        assert!(has(
            &message,
            &LinkAttribute::IfName("eni0123456789a".into())
        ));
        let infos = link_infos(&message);
        assert_eq!(infos[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &infos[1] else {
            panic!("no veth peer in {infos:?}");
        };
        assert!(has(peer, &LinkAttribute::IfName("eth0".into())));
        assert!(has(peer, &LinkAttribute::NetNsFd(ns.as_raw_fd())));
    }

    #[test]
    fn move_request_renames_while_moving() {
        let ns = netns_file();
        let message = move_link(9, ns.as_fd(), "eth0");
        assert_eq!(message.header.index, 9);
        assert!(has(&message, &LinkAttribute::NetNsFd(ns.as_raw_fd())));
        assert!(has(&message, &LinkAttribute::IfName("eth0".into())));
    }

    #[test]
    fn up_down_and_alias_requests() {
        let up = link_up(4);
        assert_eq!(up.header.index, 4);
        assert!(up.header.flags.contains(LinkFlags::Up));
        assert!(up.header.change_mask.contains(LinkFlags::Up));
        let down = link_down(4);
        assert!(!down.header.flags.contains(LinkFlags::Up));
        assert!(down.header.change_mask.contains(LinkFlags::Up));
        assert!(has(
            &link_alias(4, "x"),
            &LinkAttribute::IfAlias("x".into())
        ));
        let rename = rename_and_unmark(4, "ens6");
        assert_eq!(rename.header.index, 4);
        assert!(has(&rename, &LinkAttribute::IfName("ens6".into())));
        assert!(has(&rename, &LinkAttribute::IfAlias(String::new())));
    }

    #[test]
    fn eni_default_route_is_onlink_via_gateway_in_the_eni_table() {
        let route = Route::via_onlink(
            1002,
            "0.0.0.0/0".parse().unwrap(),
            Ipv4Addr::new(10, 0, 1, 1),
            5,
        );
        let message = route.to_message();
        assert_eq!(message.header.protocol, PROTO);
        assert_eq!(message.header.scope, RouteScope::Universe);
        assert!(message.header.flags.contains(RouteFlags::Onlink));
        assert_eq!(message.header.destination_prefix_length, 0);
        assert!(message.attributes.contains(&RouteAttribute::Table(1002)));
        assert!(message.attributes.contains(&RouteAttribute::Oif(5)));
        assert!(
            message
                .attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                    10, 0, 1, 1
                ))))
        );
        assert_eq!(Route::from_message(&message), Some((route, PROTO)));
    }

    #[test]
    fn host_route_to_pod_is_link_scoped_in_main() {
        let route = Route::direct(MAIN_TABLE, "10.0.1.7/32".parse().unwrap(), 12);
        let message = route.to_message();
        assert_eq!(message.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(message.header.scope, RouteScope::Link);
        assert_eq!(message.header.destination_prefix_length, 32);
        assert!(!message.header.flags.contains(RouteFlags::Onlink));
        assert!(
            message
                .attributes
                .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                    Ipv4Addr::new(10, 0, 1, 7)
                )))
        );
        let with_source = route.clone().with_source(Ipv4Addr::new(10, 0, 0, 4));
        assert!(
            with_source
                .to_message()
                .attributes
                .contains(&RouteAttribute::PrefSource(RouteAddress::Inet(
                    Ipv4Addr::new(10, 0, 0, 4)
                )))
        );
        assert_eq!(
            Route::from_message(&with_source.to_message()),
            Some((with_source, PROTO))
        );
    }

    #[test]
    fn policy_rules_have_the_designed_priorities_and_tables() {
        let pod = Ipv4Addr::new(10, 0, 1, 7);
        let to = Rule::to_pod(pod).to_message();
        assert_eq!(to.header.action, RuleAction::ToTable);
        assert_eq!(to.header.dst_len, 32);
        assert_eq!(to.header.src_len, 0);
        assert!(to.attributes.contains(&RuleAttribute::Priority(512)));
        assert!(to.attributes.contains(&RuleAttribute::Table(MAIN_TABLE)));
        assert!(
            to.attributes
                .contains(&RuleAttribute::Destination(pod.into()))
        );
        assert!(to.attributes.contains(&RuleAttribute::Protocol(PROTO)));

        let from = Rule::from_pod(pod, 1003).to_message();
        assert_eq!(from.header.src_len, 32);
        assert!(from.attributes.contains(&RuleAttribute::Priority(2048)));
        assert!(from.attributes.contains(&RuleAttribute::Table(1003)));
        assert!(from.attributes.contains(&RuleAttribute::Source(pod.into())));

        for rule in [Rule::to_pod(pod), Rule::from_pod(pod, 1003)] {
            assert_eq!(Rule::from_message(&rule.to_message()), Some((rule, PROTO)));
            assert_eq!(rule.address(), pod);
        }
    }

    #[test]
    fn rules_of_other_shapes_are_not_read_as_ours() {
        let mut message = Rule::to_pod(Ipv4Addr::new(10, 0, 1, 7)).to_message();
        message.attributes.push(RuleAttribute::FwMark(1));
        assert_eq!(Rule::from_message(&message), None);
    }

    #[test]
    fn neighbour_requests() {
        let mac = [2, 0, 0, 0, 0, 1];
        let entry = permanent_neighbour(3, LINK_LOCAL_GATEWAY, mac);
        assert_eq!(entry.header.state, NeighbourState::Permanent);
        assert_eq!(entry.header.ifindex, 3);
        assert!(
            entry
                .attributes
                .contains(&NeighbourAttribute::LinkLayerAddress(mac.to_vec()))
        );
        assert!(entry.attributes.contains(&NeighbourAttribute::Destination(
            NeighbourAddress::Inet(LINK_LOCAL_GATEWAY)
        )));
        let proxy = proxy_neighbour(5, Ipv4Addr::new(10, 0, 1, 7));
        assert!(proxy.header.flags.contains(NeighbourFlags::Proxy));
        assert!(
            proxy
                .attributes
                .contains(&NeighbourAttribute::Protocol(PROTO))
        );
        assert!(
            !proxy
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(_)))
        );
    }
}
