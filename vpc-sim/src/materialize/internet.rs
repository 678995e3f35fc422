//! The world outside the VPC: namespace `<prefix>-inet` behind the VPC's internet
//! gateway, holding an internet host and a host of a peered network (a VPN or peering
//! connection: reached with private addresses, never translated).
//!
//! ```text
//! vpc ns                                         inet ns
//!  igw 203.0.113.1/24, 203.0.113.2/24 (NAT gateway),
//!      198.51.100.1/24                   ──veth── eth0 203.0.113.10/24 (internet host)
//!                                                     198.51.100.10/24 (peered host)
//!                                                default via 203.0.113.1
//! ```
//!
//! Only addresses with a public one — the instances' primary addresses — reach the
//! internet as they are; the NAT gateway (nft chain `nat_gateway` in `vpc`) gives
//! every other source its own address, as a private subnet's route to a NAT gateway
//! does. Hosts in `inet` therefore see who translated a packet: a node, the NAT
//! gateway, or nobody (the peered network).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use super::{MaterializeError, kernel, names, netns};

/// The internet gateway's link in `vpc`.
pub const IGW_LINK: &str = "igw";
/// An internet host (TEST-NET-3), in `inet`.
pub const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The NAT gateway's public address.
pub const NAT_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// A host of the peered network (TEST-NET-2), in `inet`.
pub const PEERED_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The peered network.
pub const PEERED_NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24);

const INTERNET_NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24);
const IGW_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const PEERED_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Locally administered MAC of the `inet` end.
const INET_MAC: [u8; 6] = [0x02, 0x00, 0xcb, 0x00, 0x71, 0x0a];

/// Creates `<prefix>-inet` and the gateway link unless they exist (a restarted vpc-sim
/// adopts them).
pub async fn ensure(prefix: &str, vpc: &Handle) -> Result<(), MaterializeError> {
    let inet_ns = names::internet_netns(prefix);
    netns::create(&inet_ns).await?;
    if kernel::link_index(vpc, IGW_LINK).await?.is_some() {
        return Ok(());
    }
    let inet_file = std::fs::File::open(netns::path(&inet_ns))
        .map_err(|e| MaterializeError::Kernel(format!("opening namespace {inet_ns}: {e}")))?;
    kernel::create_veth(vpc, IGW_LINK, "eth0", INET_MAC, &inet_file).await?;
    let igw = kernel::link_index(vpc, IGW_LINK)
        .await?
        .ok_or_else(|| MaterializeError::Kernel("the igw link vanished".into()))?;
    // The NAT gateway's address lives on the gateway link too, so that the internet
    // finds (ARPs) where its answers go.
    for address in [
        Ipv4Net::new_assert(IGW_ADDRESS, INTERNET_NET.prefix_len()),
        Ipv4Net::new_assert(NAT_GATEWAY, INTERNET_NET.prefix_len()),
        Ipv4Net::new_assert(PEERED_ROUTER, PEERED_NET.prefix_len()),
    ] {
        kernel::add_address(vpc, igw, address).await?;
    }
    let inet = netns::netlink(&inet_ns).await?;
    let eth0 = kernel::link_index(&inet, "eth0")
        .await?
        .ok_or_else(|| MaterializeError::Kernel(format!("no eth0 in {inet_ns}")))?;
    for address in [
        Ipv4Net::new_assert(INTERNET_HOST, INTERNET_NET.prefix_len()),
        Ipv4Net::new_assert(PEERED_HOST, PEERED_NET.prefix_len()),
    ] {
        kernel::add_address(&inet, eth0, address).await?;
    }
    kernel::set_up(&inet, eth0).await?;
    kernel::replace_default_route(&inet, IGW_ADDRESS, eth0).await?;
    // Last: an `igw` that is up marks a finished gateway.
    kernel::set_up(vpc, igw).await
}
