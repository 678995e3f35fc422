//! The netlink requests of the materializer: links, addresses and routes of one
//! namespace, through a handle whose socket lives there.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::MaterializeError;

/// Marks the routes the materializer owns in the `vpc` namespace (nothing else adds
/// static routes there).
const OWN_PROTOCOL: RouteProtocol = RouteProtocol::Static;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

pub async fn links(handle: &Handle) -> Result<Vec<Link>, MaterializeError> {
    let messages: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("listing links"))?;
    Ok(messages
        .into_iter()
        .filter_map(|message| {
            let name = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                })?;
            Some(Link {
                index: message.header.index,
                name,
                up: message.header.flags.contains(LinkFlags::Up),
            })
        })
        .collect())
}

pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, MaterializeError> {
    Ok(links(handle)
        .await?
        .into_iter()
        .find(|link| link.name == name)
        .map(|link| link.index))
}

/// Creates veth `port` (down) in the handle's namespace with its peer `peer_name`, MAC
/// `mac`, placed directly in namespace file `peer_netns`: the peer never exists in the
/// handle's namespace, so its name cannot collide there.
pub async fn create_veth(
    handle: &Handle,
    port: &str,
    peer_name: &str,
    mac: [u8; 6],
    peer_netns: &File,
) -> Result<(), MaterializeError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer_name.to_string())
        .address(mac.to_vec())
        .setns_by_fd(peer_netns.as_raw_fd())
        .build();
    let message = LinkVeth::new(port, peer_name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(netlink(&format!("creating veth {port} / {peer_name}")))
}

pub async fn set_up(handle: &Handle, index: u32) -> Result<(), MaterializeError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink(&format!("setting link {index} up")))
}

pub async fn delete_link(handle: &Handle, index: u32) -> Result<(), MaterializeError> {
    handle
        .link()
        .del(index)
        .execute()
        .await
        .map_err(netlink(&format!("deleting link {index}")))
}

/// IPv4 addresses of the namespace: (link index, address, raw message for deletion).
pub async fn addresses(
    handle: &Handle,
) -> Result<Vec<(u32, Ipv4Net, AddressMessage)>, MaterializeError> {
    let messages: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("listing addresses"))?;
    Ok(messages
        .into_iter()
        .filter(|message| message.header.family == AddressFamily::Inet)
        .filter_map(|message| {
            let address = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(IpAddr::V4(a))
                    | AddressAttribute::Address(IpAddr::V4(a)) => Some(*a),
                    _ => None,
                })?;
            let net = Ipv4Net::new(address, message.header.prefix_len).ok()?;
            Some((message.header.index, net, message))
        })
        .collect())
}

pub async fn add_address(
    handle: &Handle,
    index: u32,
    net: Ipv4Net,
) -> Result<(), MaterializeError> {
    handle
        .address()
        .add(index, IpAddr::V4(net.addr()), net.prefix_len())
        .replace()
        .execute()
        .await
        .map_err(netlink(&format!("adding {net} to link {index}")))
}

pub async fn delete_address(
    handle: &Handle,
    message: AddressMessage,
) -> Result<(), MaterializeError> {
    handle
        .address()
        .del(message)
        .execute()
        .await
        .map_err(netlink("deleting an address"))
}

/// Routes of the main table that the materializer owns: (destination, output link).
pub async fn own_routes(handle: &Handle) -> Result<Vec<(Ipv4Net, u32)>, MaterializeError> {
    let messages: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(netlink("listing routes"))?;
    Ok(messages
        .into_iter()
        .filter(|message| {
            message.header.table == RouteHeader::RT_TABLE_MAIN
                && message.header.protocol == OWN_PROTOCOL
        })
        .filter_map(|message| {
            let mut destination = Ipv4Addr::UNSPECIFIED;
            let mut oif = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = *a,
                    RouteAttribute::Oif(index) => oif = Some(*index),
                    _ => {}
                }
            }
            let net = Ipv4Net::new(destination, message.header.destination_prefix_length).ok()?;
            Some((net, oif?))
        })
        .collect())
}

/// `ip route replace <net> dev <index>` (scope link, owned).
pub async fn replace_route(
    handle: &Handle,
    net: Ipv4Net,
    index: u32,
) -> Result<(), MaterializeError> {
    handle
        .route()
        .add(device_route(net, index))
        .replace()
        .execute()
        .await
        .map_err(netlink(&format!("routing {net} to link {index}")))
}

pub async fn delete_route(
    handle: &Handle,
    net: Ipv4Net,
    index: u32,
) -> Result<(), MaterializeError> {
    handle
        .route()
        .del(device_route(net, index))
        .execute()
        .await
        .map_err(netlink(&format!("deleting route {net}")))
}

fn device_route(net: Ipv4Net, index: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.network(), net.prefix_len())
        .output_interface(index)
        .scope(RouteScope::Link)
        .protocol(OWN_PROTOCOL)
        .build()
}

/// `ip route replace default via <gateway> dev <index>`.
pub async fn replace_default_route(
    handle: &Handle,
    gateway: Ipv4Addr,
    index: u32,
) -> Result<(), MaterializeError> {
    let message = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .protocol(RouteProtocol::Boot)
        .build();
    handle
        .route()
        .add(message)
        .replace()
        .execute()
        .await
        .map_err(netlink(&format!("default route via {gateway}")))
}

fn netlink(context: &str) -> impl FnOnce(rtnetlink::Error) -> MaterializeError + '_ {
    move |source| MaterializeError::Netlink {
        context: context.to_string(),
        source,
    }
}
