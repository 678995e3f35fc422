//! A netlink connection in one namespace and the few operations the dataplane needs,
//! each idempotent: adding what exists or deleting what is gone is not an error.

use std::net::{IpAddr, Ipv4Addr};

use eni_crds::Mac;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::tc::{TcHandle, TcMessage};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::{Handle, IpVersion};
use tokio::task::JoinHandle;

use super::error::{DataplaneError, errno};
use super::requests::{self, Route, Rule};

const EEXIST: i32 = nix::libc::EEXIST;
const ENOENT: i32 = nix::libc::ENOENT;
const ENODEV: i32 = nix::libc::ENODEV;
const ESRCH: i32 = nix::libc::ESRCH;
const EADDRNOTAVAIL: i32 = nix::libc::EADDRNOTAVAIL;
const EINVAL: i32 = nix::libc::EINVAL;
/// A dump the kernel marked inconsistent (NLM_F_DUMP_INTR): the table changed while it
/// was read, as it does when other pods are wired alongside.
const EBUSY: i32 = nix::libc::EBUSY;
/// Reads of an interrupted dump before giving up.
const DUMP_ATTEMPTS: usize = 5;

/// A link as read from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub alias: Option<String>,
    pub up: bool,
    /// Interface group (`ip link set <link> group N`); 0 by default.
    pub group: u32,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            alias: None,
            up: message.header.flags.contains(LinkFlags::Up),
            group: 0,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                }
                LinkAttribute::IfAlias(alias) if !alias.is_empty() => {
                    link.alias = Some(alias.clone())
                }
                LinkAttribute::Group(group) => link.group = *group,
                _ => {}
            }
        }
        link
    }
}

/// A proxy-ARP entry as read from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyEntry {
    pub ifindex: u32,
    pub address: Ipv4Addr,
    pub protocol: RouteProtocol,
}

/// A netlink connection bound to one namespace. Dropping it closes the socket (and
/// so releases the namespace).
pub struct Netlink {
    handle: Handle,
    task: JoinHandle<()>,
    label: String,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // The connection task would otherwise run (and hold the socket) forever.
        self.task.abort();
    }
}

impl Netlink {
    pub(crate) fn new(handle: Handle, task: JoinHandle<()>, label: String) -> Self {
        Netlink {
            handle,
            task,
            label,
        }
    }

    fn error(&self, what: impl std::fmt::Display, source: rtnetlink::Error) -> DataplaneError {
        DataplaneError::netlink(format!("{what} in {}", self.label), source)
    }

    /// Collects a dump, reading it again when a concurrent change interrupted it.
    async fn dump<T, S>(
        &self,
        what: &str,
        request: impl Fn() -> S,
    ) -> Result<Vec<T>, DataplaneError>
    where
        S: futures::Stream<Item = Result<T, rtnetlink::Error>>,
    {
        let mut attempt = 1;
        loop {
            match request().try_collect().await {
                Err(e) if errno(&e) == Some(EBUSY) && attempt < DUMP_ATTEMPTS => attempt += 1,
                other => return other.map_err(|e| self.error(what, e)),
            }
        }
    }

    pub async fn links(&self) -> Result<Vec<Link>, DataplaneError> {
        let messages = self
            .dump("listing links", || self.handle.link().get().execute())
            .await?;
        Ok(messages.iter().map(Link::from_message).collect())
    }

    /// The link `name`, asked for by name (no dump of every link).
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, DataplaneError> {
        let found: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_collect()
            .await;
        match found {
            Ok(messages) => Ok(messages.first().map(Link::from_message)),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(self.error(format!("reading link {name}"), e)),
        }
    }

    pub async fn link_by_mac(&self, mac: Mac) -> Result<Option<Link>, DataplaneError> {
        let mac = mac.octets();
        Ok(self.links().await?.into_iter().find(|l| l.mac == Some(mac)))
    }

    pub async fn add_link(&self, message: LinkMessage, what: &str) -> Result<(), DataplaneError> {
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| self.error(what, e))
    }

    pub async fn set_link(&self, message: LinkMessage, what: &str) -> Result<(), DataplaneError> {
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| self.error(what, e))
    }

    /// Deletes link `index`; a link already gone is fine.
    pub async fn delete_link(&self, index: u32) -> Result<(), DataplaneError> {
        match self.handle.link().del(index).execute().await {
            Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
            other => other.map_err(|e| self.error(format!("deleting link {index}"), e)),
        }
    }

    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, DataplaneError> {
        let messages = self
            .dump("listing addresses", || {
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
            })
            .await?;
        Ok(messages
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => {
                        Ipv4Net::new(*ip, m.header.prefix_len).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds `address` to link `index`; present already is fine.
    pub async fn add_address(&self, index: u32, address: Ipv4Net) -> Result<(), DataplaneError> {
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(address.addr()), address.prefix_len())
            .execute()
            .await
        {
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            other => other.map_err(|e| self.error(format!("adding address {address}"), e)),
        }
    }

    /// Every IPv4 unicast route of every table, with its protocol.
    pub async fn routes(&self) -> Result<Vec<(Route, RouteProtocol)>, DataplaneError> {
        let messages = self
            .dump("listing routes", || {
                let mut request = self.handle.route().get(Default::default());
                request.message_mut().header.address_family = AddressFamily::Inet;
                request.execute()
            })
            .await?;
        Ok(messages.iter().filter_map(Route::from_message).collect())
    }

    pub async fn replace_route(&self, route: &Route) -> Result<(), DataplaneError> {
        self.handle
            .route()
            .add(route.to_message())
            .replace()
            .execute()
            .await
            .map_err(|e| self.error(format!("setting route {route:?}"), e))
    }

    /// Deletes `route`; gone already is fine.
    pub async fn delete_route(&self, route: &Route) -> Result<(), DataplaneError> {
        match self.handle.route().del(route.to_message()).execute().await {
            Err(e) if matches!(errno(&e), Some(ESRCH | ENOENT | ENODEV)) => Ok(()),
            other => other.map_err(|e| self.error(format!("deleting route {route:?}"), e)),
        }
    }

    /// Every IPv4 rule of the agent's shape, with its protocol.
    pub async fn rules(&self) -> Result<Vec<(Rule, RouteProtocol)>, DataplaneError> {
        let messages = self.rule_messages().await?;
        Ok(messages.iter().filter_map(Rule::from_message).collect())
    }

    /// Every IPv4 rule as the kernel dumps it.
    pub async fn rule_messages(&self) -> Result<Vec<RuleMessage>, DataplaneError> {
        self.dump("listing rules", || {
            self.handle.rule().get(IpVersion::V4).execute()
        })
        .await
    }

    /// Adds the rule `message` describes; present already is fine.
    pub async fn add_rule_message(
        &self,
        message: RuleMessage,
        what: &str,
    ) -> Result<(), DataplaneError> {
        let mut request = self.handle.rule().add();
        *request.message_mut() = message;
        match request.execute().await {
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            other => other.map_err(|e| self.error(format!("adding rule {what}"), e)),
        }
    }

    /// Adds `rule`; present already is fine.
    pub async fn add_rule(&self, rule: &Rule) -> Result<(), DataplaneError> {
        self.add_rule_message(rule.to_message(), &format!("{rule:?}"))
            .await
    }

    /// Deletes `rule`; gone already is fine.
    pub async fn delete_rule(&self, rule: &Rule) -> Result<(), DataplaneError> {
        self.delete_rule_message(rule.to_message(), &format!("{rule:?}"))
            .await
    }

    /// Deletes the rule `message` describes; gone already is fine.
    pub async fn delete_rule_message(
        &self,
        message: RuleMessage,
        what: &str,
    ) -> Result<(), DataplaneError> {
        match self.handle.rule().del(message).execute().await {
            Err(e) if errno(&e) == Some(ENOENT) => Ok(()),
            other => other.map_err(|e| self.error(format!("deleting rule {what}"), e)),
        }
    }

    /// Sends one tc request and waits for the kernel's answer; returns what it dumped.
    async fn tc(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<TcMessage>, rtnetlink::Error> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | flags;
        let mut responses = self.handle.clone().request(request)?;
        let mut found = Vec::new();
        while let Some(response) = futures::StreamExt::next(&mut responses).await {
            match response.payload {
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(rtnetlink::Error::NetlinkError(e));
                }
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewQueueDiscipline(m)
                    | RouteNetlinkMessage::NewTrafficFilter(m),
                ) => found.push(m),
                _ => {}
            }
        }
        Ok(found)
    }

    /// Every qdisc of the namespace.
    pub async fn qdiscs(&self) -> Result<Vec<TcMessage>, DataplaneError> {
        let dump = RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default());
        self.tc(dump, NLM_F_DUMP)
            .await
            .map_err(|e| self.error("listing qdiscs", e))
    }

    /// Adds or replaces the qdisc `message` describes.
    pub async fn replace_qdisc(
        &self,
        message: TcMessage,
        what: &str,
    ) -> Result<(), DataplaneError> {
        let new = RouteNetlinkMessage::NewQueueDiscipline(message);
        self.tc(new, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
            .await
            .map(drop)
            .map_err(|e| self.error(what, e))
    }

    /// Adds the qdisc `message` describes; present already is fine.
    pub async fn add_qdisc(&self, message: TcMessage, what: &str) -> Result<(), DataplaneError> {
        let new = RouteNetlinkMessage::NewQueueDiscipline(message);
        match self.tc(new, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).await {
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            other => other.map(drop).map_err(|e| self.error(what, e)),
        }
    }

    /// Deletes the qdisc `message` describes; absent is fine (the kernel says ENOENT or,
    /// for clsact, EINVAL).
    pub async fn delete_qdisc(&self, message: TcMessage, what: &str) -> Result<(), DataplaneError> {
        let del = RouteNetlinkMessage::DelQueueDiscipline(message);
        match self.tc(del, NLM_F_ACK).await {
            Err(e) if matches!(errno(&e), Some(ENOENT | EINVAL)) => Ok(()),
            other => other.map(drop).map_err(|e| self.error(what, e)),
        }
    }

    /// The filters of link `index` under `parent`.
    pub async fn filters(
        &self,
        index: u32,
        parent: TcHandle,
    ) -> Result<Vec<TcMessage>, DataplaneError> {
        let mut message = TcMessage::with_index(index as i32);
        message.header.parent = parent;
        match self
            .tc(RouteNetlinkMessage::GetTrafficFilter(message), NLM_F_DUMP)
            .await
        {
            // No clsact (yet): no filters.
            Err(e) if matches!(errno(&e), Some(EINVAL | ENOENT)) => Ok(Vec::new()),
            other => other.map_err(|e| self.error(format!("listing filters of link {index}"), e)),
        }
    }

    /// Adds the filter `message` describes.
    pub async fn add_filter(&self, message: TcMessage, what: &str) -> Result<(), DataplaneError> {
        let new = RouteNetlinkMessage::NewTrafficFilter(message);
        self.tc(new, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .await
            .map(drop)
            .map_err(|e| self.error(what, e))
    }

    /// Sets a permanent neighbour entry (replacing one for the same address).
    pub async fn set_neighbour(&self, message: NeighbourMessage) -> Result<(), DataplaneError> {
        let mut request = self
            .handle
            .neighbours()
            .add(message.header.ifindex, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        *request.message_mut() = message;
        request
            .replace()
            .execute()
            .await
            .map_err(|e| self.error("setting neighbour entry", e))
    }

    /// Link-layer address of the neighbour `ip` on `ifindex`, if there is an entry.
    pub async fn neighbour(
        &self,
        ifindex: u32,
        ip: Ipv4Addr,
    ) -> Result<Option<Vec<u8>>, DataplaneError> {
        let messages: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error("listing neighbours", e))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.ifindex == ifindex && destination(m) == Some(ip))
            .find_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(mac) => Some(mac.clone()),
                    _ => None,
                })
            }))
    }

    pub async fn proxies(&self) -> Result<Vec<ProxyEntry>, DataplaneError> {
        let messages: Vec<NeighbourMessage> = self
            .dump("listing proxy entries", || {
                self.handle
                    .neighbours()
                    .get()
                    .proxies()
                    .set_address_family(AddressFamily::Inet)
                    .execute()
            })
            .await?;
        Ok(messages
            .iter()
            .filter(|m| m.header.flags.contains(NeighbourFlags::Proxy))
            .filter_map(|m| {
                let protocol = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        NeighbourAttribute::Protocol(p) => Some(*p),
                        _ => None,
                    })
                    .unwrap_or(RouteProtocol::Unspec);
                Some(ProxyEntry {
                    ifindex: m.header.ifindex,
                    address: destination(m)?,
                    protocol,
                })
            })
            .collect())
    }

    pub async fn add_proxy(&self, ifindex: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.set_neighbour(requests::proxy_neighbour(ifindex, ip))
            .await
    }

    /// Deletes the proxy entry for `ip` on `ifindex`; gone already is fine.
    pub async fn delete_proxy(&self, ifindex: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        match self
            .handle
            .neighbours()
            .del(requests::proxy_neighbour(ifindex, ip))
            .execute()
            .await
        {
            Err(e) if matches!(errno(&e), Some(ENOENT | ENODEV | EADDRNOTAVAIL)) => Ok(()),
            other => other.map_err(|e| self.error(format!("deleting proxy entry {ip}"), e)),
        }
    }
}

fn destination(message: &NeighbourMessage) -> Option<Ipv4Addr> {
    message.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}
