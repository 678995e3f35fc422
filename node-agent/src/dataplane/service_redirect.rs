//! SharedIP over ipvlan: Service traffic leaves the ipvlan fast path for the host.
//!
//! An ipvlan slave's packets go out of its parent (the ENI) without passing the node's
//! netfilter, so kube-proxy never sees a pod's packet to a ClusterIP. As Terway does,
//! a u32 filter on the ENI's egress hook catches every packet to a Service CIDR and a
//! mirred action puts it *into* the node's own ipvlan slave of that ENI (`ipvl<n>`),
//! where it arrives like a packet from the wire: kube-proxy DNATs it and the node
//! routes it. Answers to the pod go back through the node's route `<pod ip> dev
//! ipvl<n>`, and ipvlan hands them to the pod's slave by destination address.
//!
//! ```text
//! tc qdisc add dev <ENI> clsact
//! tc filter add dev <ENI> egress prio 10+i protocol ip u32 \
//!     match ip dst <service CIDR i> action mirred ingress redirect dev ipvl<n>
//! ```
//!
//! Only built where the kernel has ipvlan (not the build machine's): the requests are
//! unit-tested here, the paths are the ones the other datapaths' tests exercise.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;
use netlink_packet_route::tc::{
    TcAttribute, TcFilterU32Option, TcMessage, TcMirrorActionType, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};

use super::error::DataplaneError;
use super::kernel::{Link, Netlink};
use super::shaping::{Direction, clsact_message, mirred, mirred_target};

/// Priority of the first Service CIDR's filter; one more for each further CIDR.
const FIRST_PRIORITY: u16 = 10;
/// ETH_P_IP: the filters only look at IPv4.
const ETH_P_IP: u16 = 0x0800;
/// Offset of the destination address in the IPv4 header.
const IPV4_DST_OFFSET: i32 = 16;

/// One filter: Service CIDR `cidr` at priority `priority` on link `eni`'s egress,
/// redirected into link `to`.
pub fn redirect_filter(eni: u32, priority: u16, cidr: Ipv4Net, to: u32) -> TcMessage {
    let cidr = cidr.trunc();
    let mut key = TcU32Key::default();
    key.mask = u32::from(cidr.netmask());
    key.val = u32::from(cidr.network());
    key.off = IPV4_DST_OFFSET;
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![key];
    let mut message = TcMessage::with_index(eni as i32);
    message.header.parent = Direction::Egress.parent();
    // tcm_info: priority in the high half, the protocol in network order in the low.
    message.header.info = (u32::from(priority) << 16) | u32::from(ETH_P_IP.to_be());
    message.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![mirred(
                TcMirrorActionType::IngressRedir,
                to,
            )])),
        ]),
    ];
    message
}

/// The filters link `eni` must hold for `cidrs`.
pub fn wanted(eni: u32, cidrs: &[Ipv4Net], to: u32) -> Vec<TcMessage> {
    cidrs
        .iter()
        .zip(FIRST_PRIORITY..)
        .map(|(cidr, priority)| redirect_filter(eni, priority, *cidr, to))
        .collect()
}

/// What a filter dump says a filter does: (destination, redirect target). The kernel
/// reports u32's hash-table entries too; those carry no selector and are skipped.
pub fn redirects(filters: &[TcMessage]) -> BTreeSet<(Ipv4Net, u32)> {
    filters
        .iter()
        .filter_map(|filter| {
            let options = filter.attributes.iter().find_map(|a| match a {
                TcAttribute::Options(options) => Some(options),
                _ => None,
            })?;
            let key = options.iter().find_map(|o| match o {
                TcOption::U32(TcFilterU32Option::Selector(s)) if s.keys.len() == 1 => {
                    Some(s.keys[0].clone())
                }
                _ => None,
            })?;
            let target = options.iter().find_map(|o| match o {
                TcOption::U32(TcFilterU32Option::Action(actions)) => actions
                    .iter()
                    .find_map(|a| mirred_target(a, TcMirrorActionType::IngressRedir)),
                _ => None,
            })?;
            (key.off == IPV4_DST_OFFSET).then_some(())?;
            let prefix = u8::try_from(key.mask.leading_ones()).ok()?;
            let cidr = Ipv4Net::new(key.val.into(), prefix).ok()?;
            Some((cidr, target))
        })
        .collect()
}

/// Makes `eni`'s egress redirect `cidrs` into `host_slave`, rebuilding the hook when
/// its filters differ (the ENI's clsact holds nothing else).
pub async fn ensure(
    host: &Netlink,
    eni: &Link,
    cidrs: &[Ipv4Net],
    host_slave: &Link,
) -> Result<(), DataplaneError> {
    let want: BTreeSet<(Ipv4Net, u32)> = cidrs
        .iter()
        .map(|c| (c.trunc(), host_slave.index))
        .collect();
    let have = redirects(&host.filters(eni.index, Direction::Egress.parent()).await?);
    if have == want {
        return Ok(());
    }
    host.delete_qdisc(
        clsact_message(eni.index),
        &format!("clearing the Service redirects of {}", eni.name),
    )
    .await?;
    host.add_qdisc(
        clsact_message(eni.index),
        &format!("adding clsact to {}", eni.name),
    )
    .await?;
    for filter in wanted(eni.index, cidrs, host_slave.index) {
        host.add_filter(
            filter,
            &format!(
                "redirecting Service traffic of {} to {}",
                eni.name, host_slave.name
            ),
        )
        .await?;
    }
    Ok(())
}

/// What `eni`'s egress lacks of [`ensure`]'s filters, one line each.
pub async fn differences(
    host: &Netlink,
    eni: &Link,
    cidrs: &[Ipv4Net],
    host_slave: &Link,
) -> Result<Vec<String>, DataplaneError> {
    let have = redirects(&host.filters(eni.index, Direction::Egress.parent()).await?);
    Ok(cidrs
        .iter()
        .filter(|c| !have.contains(&(c.trunc(), host_slave.index)))
        .map(|c| {
            format!(
                "host: Service CIDR {c} is not redirected from {} to {}",
                eni.name, host_slave.name
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::tc::TcHandle;
    use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};

    use super::*;

    /// Serialises a filter request and parses it back as the kernel would read it.
    fn wire(message: TcMessage) -> (Vec<u8>, TcMessage) {
        let mut netlink = NetlinkMessage::from(RouteNetlinkMessage::NewTrafficFilter(message));
        netlink.finalize();
        let mut bytes = vec![0; netlink.buffer_len()];
        netlink.serialize(&mut bytes);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        match parsed.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(m)) => (bytes, m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_service_cidr_is_matched_on_the_destination_and_redirected_into_the_host_slave() {
        let cidr: Ipv4Net = "10.96.0.0/12".parse().unwrap();
        let (bytes, filter) = wire(redirect_filter(4, 10, cidr, 9));
        // On the ENI's egress hook (clsact's ffff:fff3), prio 10, protocol ip.
        assert_eq!(filter.header.index, 4);
        assert_eq!(
            filter.header.parent,
            TcHandle {
                major: 0xffff,
                minor: TcHandle::MIN_EGRESS
            }
        );
        assert_eq!(
            (filter.header.info >> 16, filter.header.info as u16),
            (10, 0x0800u16.to_be())
        );
        assert!(filter.attributes.contains(&TcAttribute::Kind("u32".into())));
        // `match ip dst 10.96.0.0/12`: tc_u32_key {mask ff f0 00 00, val 0a 60 00 00,
        // off 16, offmask 0}, mask and value in network order on the wire.
        let key: Vec<u8> = [
            &[0xff, 0xf0, 0x00, 0x00][..],
            &[0x0a, 0x60, 0x00, 0x00],
            &16i32.to_ne_bytes(),
            &0i32.to_ne_bytes(),
        ]
        .concat();
        assert!(
            bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "no tc_u32_key for 10.96.0.0/12 in {bytes:02x?}"
        );
        // Read back: that destination, into link 9 (mirred *ingress* redirect).
        assert_eq!(redirects(&[filter]), BTreeSet::from([(cidr, 9)]));
    }

    #[test]
    fn each_cidr_gets_its_own_priority_and_host_bits_are_dropped() {
        let cidrs: Vec<Ipv4Net> = vec![
            "10.96.0.0/12".parse().unwrap(),
            "172.20.5.9/16".parse().unwrap(),
        ];
        let filters: Vec<TcMessage> = wanted(3, &cidrs, 7)
            .into_iter()
            .map(|f| wire(f).1)
            .collect();
        let priorities: Vec<u32> = filters.iter().map(|f| f.header.info >> 16).collect();
        assert_eq!(priorities, vec![10, 11]);
        assert_eq!(
            redirects(&filters),
            BTreeSet::from([
                ("10.96.0.0/12".parse().unwrap(), 7),
                ("172.20.0.0/16".parse().unwrap(), 7)
            ])
        );
    }

    #[test]
    fn egress_redirects_and_other_filters_are_not_taken_for_service_redirects() {
        // The bandwidth redirect (match-all, mirred *egress* to an ifb) is no Service
        // redirect.
        let shaping = super::super::shaping::redirect_message(3, Direction::Egress, 8);
        assert!(redirects(&[wire(shaping).1]).is_empty());
        assert!(redirects(&[clsact_message(3)]).is_empty());
    }
}
