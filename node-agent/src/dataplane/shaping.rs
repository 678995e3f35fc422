//! Pod bandwidth limits (the runtime's `bandwidth` capability, which kubelet fills from
//! the `kubernetes.io/{ingress,egress}-bandwidth` annotations), enforced inside the
//! pod's namespace in every mode.
//!
//! Exclusive and Trunk pods own their ENI link, so no host link carries their VPC
//! traffic: the reference `bandwidth` plugin, which shapes the host end of a veth, cannot
//! limit them. Here each direction gets one token bucket (tbf) on an ifb in the pod's
//! namespace, and clsact filters on each of the pod's links redirect that direction's
//! packets to it. So a pod has one limit per direction however many links it has (a
//! passthrough pod has two: its ENI and its veth to the node), and everything goes away
//! with the namespace: nothing on the node can leak. A pod granted `NET_ADMIN` could
//! remove its own limits; Pod Security `baseline` does not grant it.

use std::collections::BTreeSet;

use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use rtnetlink::packet_core::{DefaultNla, Nla, NlasIterator};

use super::error::{DataplaneError, KernelFeature};
use super::kernel::{Link, Netlink};
use super::naming::MAX_IFNAME;
use crate::protocol::Bandwidth;

/// The longest a bucket lets traffic pass at line rate. The runtime's burst is capped to
/// this: containerd asks for 2^32-1 bits, minutes of unshaped traffic at a few Mbit/s.
const MAX_BURST_MS: u64 = 100;
/// The smallest burst: a few full-size packets, so that the bucket never stalls on them.
const MIN_BURST_BYTES: u64 = 16 * 1024;
/// How long a packet may wait in front of a bucket before it is dropped.
const QUEUE_MS: u64 = 25;
/// The kernel's tbf buffer is in scheduler ticks of 64 ns (PSCHED_SHIFT 6).
const NS_PER_TICK: u128 = 64;
/// Filter priority of the redirects; the pod's links carry no other filters of ours.
const PRIORITY: u16 = 1;
/// ETH_P_ALL: the redirects take every protocol.
const ETH_P_ALL: u16 = 0x0003;

// From linux/pkt_sched.h.
const TCA_OPTIONS: u16 = 2;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// sizeof(struct tc_tbf_qopt): rate and peak rate (12 bytes each), limit, buffer, mtu.
const TBF_QOPT_LEN: usize = 36;

/// One token bucket: what the kernel's tbf is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub rate_bytes: u64,
    pub burst_bytes: u32,
    /// Bytes that may queue in front of the bucket.
    pub limit_bytes: u32,
}

impl Bucket {
    /// The bucket for a rate (bit/s) and the runtime's burst (bits, 0: none asked),
    /// `None` for rate 0 (no limit).
    fn new(
        rate_bits: u64,
        burst_bits: u64,
        direction: Direction,
    ) -> Result<Option<Self>, DataplaneError> {
        if rate_bits == 0 {
            return Ok(None);
        }
        let rate_bytes = rate_bits / 8;
        if rate_bytes == 0 {
            return Err(DataplaneError::InvalidRequest(format!(
                "{} bandwidth {rate_bits} bit/s is below the 8 bit/s a token bucket can meter",
                direction.as_str()
            )));
        }
        let cap = (rate_bytes.saturating_mul(MAX_BURST_MS) / 1000).max(MIN_BURST_BYTES);
        let asked = burst_bits / 8;
        let burst = if asked == 0 {
            cap
        } else {
            asked.clamp(MIN_BURST_BYTES, cap)
        };
        let burst = u32::try_from(burst).unwrap_or(u32::MAX);
        let queue = rate_bytes.saturating_mul(QUEUE_MS) / 1000;
        let limit = u32::try_from(u64::from(burst).saturating_add(queue)).unwrap_or(u32::MAX);
        Ok(Some(Bucket {
            rate_bytes,
            burst_bytes: burst,
            limit_bytes: limit,
        }))
    }

    /// The tbf buffer: the burst as time at the rate, in scheduler ticks.
    fn buffer_ticks(&self) -> u32 {
        let ns = u128::from(self.burst_bytes) * 1_000_000_000 / u128::from(self.rate_bytes);
        u32::try_from(ns / NS_PER_TICK).unwrap_or(u32::MAX)
    }
}

/// Which way traffic flows, seen from the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// To the pod: the links' ingress.
    Ingress,
    /// From the pod: the links' egress.
    Egress,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The ifb holding this direction's bucket for the pod interface `ifname`.
    pub fn ifb_name(self, ifname: &str) -> String {
        let prefix = match self {
            Direction::Ingress => "bwi-",
            Direction::Egress => "bwo-",
        };
        let mut name = format!("{prefix}{ifname}");
        name.truncate(MAX_IFNAME);
        name
    }

    /// The clsact hook the redirect hangs on.
    pub fn parent(self) -> TcHandle {
        TcHandle {
            major: 0xffff,
            minor: match self {
                Direction::Ingress => TcHandle::MIN_INGRESS,
                Direction::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }
}

/// The buckets a pod gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shaping {
    pub ingress: Option<Bucket>,
    pub egress: Option<Bucket>,
}

impl Shaping {
    /// Checks the runtime's limits and turns them into buckets.
    pub fn plan(bandwidth: &Bandwidth) -> Result<Self, DataplaneError> {
        Ok(Shaping {
            ingress: Bucket::new(
                bandwidth.ingress_rate,
                bandwidth.ingress_burst,
                Direction::Ingress,
            )?,
            egress: Bucket::new(
                bandwidth.egress_rate,
                bandwidth.egress_burst,
                Direction::Egress,
            )?,
        })
    }

    fn buckets(&self) -> impl Iterator<Item = (Direction, Bucket)> {
        [
            (Direction::Ingress, self.ingress),
            (Direction::Egress, self.egress),
        ]
        .into_iter()
        .filter_map(|(direction, bucket)| bucket.map(|b| (direction, b)))
    }

    /// Puts the buckets in the pod's namespace (`nl`) for the pod interface `ifname`
    /// and redirects the traffic of `links` (the pod's links) to them. Converges: what
    /// is right is left alone, a link whose redirects differ gets them afresh.
    pub async fn apply(
        &self,
        nl: &Netlink,
        ifname: &str,
        links: &[Link],
    ) -> Result<(), DataplaneError> {
        let mut targets = BTreeSet::new();
        for (direction, bucket) in self.buckets() {
            let ifb = ensure_ifb(nl, &direction.ifb_name(ifname)).await?;
            nl.replace_qdisc(
                tbf_message(ifb.index, &bucket),
                &format!("setting the {} limit on {}", direction.as_str(), ifb.name),
            )
            .await?;
            targets.insert((direction, ifb.index));
        }
        for link in links {
            if redirects(nl, link.index).await? == targets {
                continue;
            }
            // Dropping the clsact drops its filters: stale redirects go with it.
            nl.delete_qdisc(
                clsact_message(link.index),
                &format!("clearing the redirects of {}", link.name),
            )
            .await?;
            if targets.is_empty() {
                continue;
            }
            nl.add_qdisc(
                clsact_message(link.index),
                &format!("adding clsact to {}", link.name),
            )
            .await?;
            for (direction, ifb) in &targets {
                nl.add_filter(
                    redirect_message(link.index, *direction, *ifb),
                    &format!("redirecting the {} of {}", direction.as_str(), link.name),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// What differs from [`Shaping::apply`]'s result, one line each.
    pub async fn differences(
        &self,
        nl: &Netlink,
        ifname: &str,
        links: &[Link],
    ) -> Result<Vec<String>, DataplaneError> {
        let mut found = Vec::new();
        let qdiscs = nl.qdiscs().await?;
        let mut targets = BTreeSet::new();
        for (direction, bucket) in self.buckets() {
            let name = direction.ifb_name(ifname);
            let Some(ifb) = nl.link_by_name(&name).await? else {
                found.push(format!(
                    "pod: ifb {name} holding the {} limit is gone",
                    direction.as_str()
                ));
                continue;
            };
            if !ifb.up {
                found.push(format!("pod: ifb {name} is down"));
            }
            targets.insert((direction, ifb.index));
            let present = qdiscs
                .iter()
                .filter(|q| q.header.index == ifb.index as i32 && q.header.parent == TcHandle::ROOT)
                .find_map(read_tbf);
            match present {
                Some(tbf) if tbf.matches(&bucket) => {}
                Some(tbf) => found.push(format!(
                    "pod: the {} limit on {name} is {} bytes/s with a {} byte burst, expected {} and {}",
                    direction.as_str(),
                    tbf.rate_bytes,
                    tbf.burst_bytes,
                    bucket.rate_bytes,
                    bucket.burst_bytes
                )),
                None => found.push(format!("pod: no token bucket on {name} ({} limit)", direction.as_str())),
            }
        }
        for link in links {
            let present = redirects(nl, link.index).await?;
            for (direction, ifb) in &targets {
                if !present.contains(&(*direction, *ifb)) {
                    found.push(format!(
                        "pod: the {} of {} is not redirected to {}",
                        direction.as_str(),
                        link.name,
                        direction.ifb_name(ifname)
                    ));
                }
            }
        }
        Ok(found)
    }
}

/// The ifb `name` in the pod's namespace, up; made when missing.
async fn ensure_ifb(nl: &Netlink, name: &str) -> Result<Link, DataplaneError> {
    let link = match nl.link_by_name(name).await? {
        Some(link) => link,
        None => {
            let message = rtnetlink::LinkIfb::new(name).up().build();
            nl.add_link(message, &format!("adding ifb {name}"))
                .await
                .map_err(|e| match e {
                    DataplaneError::Netlink { ref source, .. }
                        if super::error::errno(source) == Some(nix::libc::EOPNOTSUPP) =>
                    {
                        DataplaneError::FeatureMissing {
                            feature: KernelFeature::Ifb,
                            needed_by: "pod bandwidth limits",
                        }
                    }
                    other => other,
                })?;
            nl.link_by_name(name)
                .await?
                .ok_or_else(|| DataplaneError::Conflict {
                    name: name.to_string(),
                    detail: "vanished right after it was added".into(),
                })?
        }
    };
    if !link.up {
        nl.set_link(
            super::requests::link_up(link.index),
            &format!("setting {name} up"),
        )
        .await?;
    }
    Ok(link)
}

/// The (direction, ifb index) pairs link `index` redirects to.
async fn redirects(nl: &Netlink, index: u32) -> Result<BTreeSet<(Direction, u32)>, DataplaneError> {
    let mut found = BTreeSet::new();
    for direction in [Direction::Ingress, Direction::Egress] {
        for filter in nl.filters(index, direction.parent()).await? {
            if let Some(target) = redirect_target(&filter) {
                found.insert((direction, target));
            }
        }
    }
    Ok(found)
}

/// `tc qdisc replace dev <index> root tbf rate .. burst .. limit ..`.
pub fn tbf_message(index: u32, bucket: &Bucket) -> TcMessage {
    let mut qopt = [0u8; TBF_QOPT_LEN];
    // struct tc_ratespec: cell_log, linklayer, overhead, cell_align, mpu, rate.
    qopt[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(bucket.rate_bytes).unwrap_or(u32::MAX);
    qopt[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // The peak rate (12..24) stays unset.
    qopt[24..28].copy_from_slice(&bucket.limit_bytes.to_ne_bytes());
    qopt[28..32].copy_from_slice(&bucket.buffer_ticks().to_ne_bytes());
    let mut options = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, qopt.to_vec())),
        TcOption::Other(DefaultNla::new(
            TCA_TBF_BURST,
            bucket.burst_bytes.to_ne_bytes().to_vec(),
        )),
    ];
    if bucket.rate_bytes > u64::from(u32::MAX) {
        options.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            bucket.rate_bytes.to_ne_bytes().to_vec(),
        )));
    }
    let mut message = TcMessage::with_index(index as i32);
    message.header.parent = TcHandle::ROOT;
    message.header.handle = TcHandle { major: 1, minor: 0 };
    message.attributes = vec![
        TcAttribute::Kind("tbf".into()),
        TcAttribute::Options(options),
    ];
    message
}

/// `tc qdisc add dev <index> clsact`.
pub fn clsact_message(index: u32) -> TcMessage {
    let mut message = TcMessage::with_index(index as i32);
    message.header.parent = TcHandle::CLSACT;
    message.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    message.attributes = vec![TcAttribute::Kind("clsact".into())];
    message
}

/// `tc filter add dev <index> <ingress|egress> prio 1 protocol all u32 match u32 0 0
/// action mirred egress redirect dev <to>`. (matchall would be shorter; not every
/// kernel has it, u32 is everywhere.)
pub fn redirect_message(index: u32, direction: Direction, to: u32) -> TcMessage {
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![TcU32Key::default()];
    let action = mirred(TcMirrorActionType::EgressRedir, to);
    let mut message = TcMessage::with_index(index as i32);
    message.header.parent = direction.parent();
    // tcm_info: priority in the high half, the protocol in network order in the low.
    message.header.info = (u32::from(PRIORITY) << 16) | u32::from(ETH_P_ALL.to_be());
    message.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]),
    ];
    message
}

/// `action mirred <egress|ingress> redirect dev <to>`: the packet is stolen and sent
/// out of (egress) or into (ingress) link `to`.
pub fn mirred(kind: TcMirrorActionType, to: u32) -> TcAction {
    let mut mirror = TcMirror::default();
    mirror.generic = TcActionGeneric::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = kind;
    mirror.ifindex = to;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    action
}

/// The link a mirred action of `kind` (egress or ingress redirect) sends packets to.
pub fn mirred_target(action: &TcAction, kind: TcMirrorActionType) -> Option<u32> {
    action.attributes.iter().find_map(|a| match a {
        TcActionAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcActionOption::Mirror(TcActionMirrorOption::Parms(m)) if m.eaction == kind => {
                Some(m.ifindex)
            }
            _ => None,
        }),
        _ => None,
    })
}

/// The ifb a filter redirects to, if it is a mirred redirect.
fn redirect_target(filter: &TcMessage) -> Option<u32> {
    filter
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            TcAttribute::Options(options) => options.iter().find_map(|option| match option {
                TcOption::U32(TcFilterU32Option::Action(actions)) => actions
                    .iter()
                    .find_map(|a| mirred_target(a, TcMirrorActionType::EgressRedir)),
                _ => None,
            }),
            _ => None,
        })
}

/// A tbf as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tbf {
    rate_bytes: u64,
    /// Recomputed from the buffer the kernel keeps (time at the rate).
    burst_bytes: u64,
}

impl Tbf {
    /// Same rate; the burst equal up to the kernel's rounding of time.
    fn matches(&self, bucket: &Bucket) -> bool {
        let burst = u64::from(bucket.burst_bytes);
        self.rate_bytes == bucket.rate_bytes && self.burst_bytes.abs_diff(burst) <= burst / 100 + 64
    }
}

/// The rate and burst of a tbf qdisc message (as dumped: its options are one nest).
fn read_tbf(qdisc: &TcMessage) -> Option<Tbf> {
    if !qdisc
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == "tbf"))
    {
        return None;
    }
    let nest = qdisc.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(options) => options.iter().find_map(|o| match o {
            TcOption::Other(nla) if nla.kind() == TCA_OPTIONS => {
                let mut bytes = vec![0; nla.value_len()];
                nla.emit_value(&mut bytes);
                Some(bytes)
            }
            _ => None,
        }),
        _ => None,
    })?;
    let (mut rate, mut buffer_ticks, mut rate64) = (None, None, None);
    for nla in NlasIterator::new(nest.as_slice()).flatten() {
        let value = nla.value();
        match nla.kind() {
            TCA_TBF_PARMS if value.len() >= TBF_QOPT_LEN => {
                rate = value[8..12].try_into().ok().map(u32::from_ne_bytes);
                buffer_ticks = value[28..32].try_into().ok().map(u32::from_ne_bytes);
            }
            TCA_TBF_RATE64 if value.len() >= 8 => {
                rate64 = value[..8].try_into().ok().map(u64::from_ne_bytes);
            }
            _ => {}
        }
    }
    let rate_bytes = rate64.unwrap_or(u64::from(rate?));
    let ns = u128::from(buffer_ticks?) * NS_PER_TICK;
    let burst = ns * u128::from(rate_bytes) / 1_000_000_000;
    Some(Tbf {
        rate_bytes,
        burst_bytes: u64::try_from(burst).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};

    use super::*;

    fn bandwidth(ingress: (u64, u64), egress: (u64, u64)) -> Bandwidth {
        Bandwidth {
            ingress_rate: ingress.0,
            ingress_burst: ingress.1,
            egress_rate: egress.0,
            egress_burst: egress.1,
        }
    }

    #[test]
    fn buckets_cap_the_runtimes_burst_and_keep_a_floor() {
        // (rate bit/s, burst bits) -> (rate bytes/s, burst bytes, limit bytes)
        let cases = [
            // containerd's 2^32-1 bits at 8 Mbit/s: 100 ms of the rate, not 537 s.
            (
                (8_000_000, u64::from(u32::MAX)),
                (1_000_000, 100_000, 125_000),
            ),
            // No burst asked: the cap.
            ((8_000_000, 0), (1_000_000, 100_000, 125_000)),
            // A small burst asked is kept, above the floor.
            ((8_000_000, 400_000), (1_000_000, 50_000, 75_000)),
            // Below the floor: the floor.
            ((8_000_000, 8_000), (1_000_000, 16_384, 41_384)),
            // A slow rate: the floor is above 100 ms of it.
            ((80_000, 0), (10_000, 16_384, 16_634)),
            // 10 Gbit/s: a 125 MB burst; the queue adds 25 ms of the rate.
            (
                (10_000_000_000, 0),
                (1_250_000_000, 125_000_000, 156_250_000),
            ),
        ];
        for ((rate, burst), (rate_bytes, burst_bytes, limit_bytes)) in cases {
            let shaping = Shaping::plan(&bandwidth((rate, burst), (0, 0))).unwrap();
            assert_eq!(
                shaping.ingress,
                Some(Bucket {
                    rate_bytes,
                    burst_bytes,
                    limit_bytes
                }),
                "{rate} bit/s, {burst} bits"
            );
            assert_eq!(shaping.egress, None);
        }
    }

    #[test]
    fn huge_rates_saturate_instead_of_wrapping() {
        let shaping = Shaping::plan(&bandwidth((0, 0), (u64::MAX, u64::MAX))).unwrap();
        let bucket = shaping.egress.unwrap();
        assert_eq!(bucket.rate_bytes, u64::MAX / 8);
        assert_eq!(
            (bucket.burst_bytes, bucket.limit_bytes),
            (u32::MAX, u32::MAX)
        );
        assert_eq!(shaping.ingress, None);
    }

    #[test]
    fn rates_below_a_byte_per_second_are_refused() {
        let refused = Shaping::plan(&bandwidth((0, 0), (7, 0)));
        assert!(
            matches!(&refused, Err(DataplaneError::InvalidRequest(m)) if m.contains("egress bandwidth 7 bit/s")),
            "{refused:?}"
        );
        assert_eq!(
            Shaping::plan(&Bandwidth::default()).unwrap(),
            Shaping::default()
        );
    }

    #[test]
    fn ifb_names_fit_a_link_name() {
        assert_eq!(Direction::Ingress.ifb_name("eth0"), "bwi-eth0");
        assert_eq!(Direction::Egress.ifb_name("net1"), "bwo-net1");
        assert_eq!(
            Direction::Egress.ifb_name("a-very-long-if"),
            "bwo-a-very-long"
        );
    }

    /// Emits a qdisc message and parses it back as the kernel's answer would be.
    fn round_trip(message: TcMessage) -> TcMessage {
        let mut netlink = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(message));
        netlink.finalize();
        let mut bytes = vec![0; netlink.buffer_len()];
        netlink.serialize(&mut bytes);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        match parsed.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tbf_parameters_survive_the_wire() {
        for bucket in [
            Bucket {
                rate_bytes: 1_000_000,
                burst_bytes: 100_000,
                limit_bytes: 125_000,
            },
            // Above 2^32-1 bytes/s the rate goes in TCA_TBF_RATE64.
            Bucket {
                rate_bytes: 5_000_000_000,
                burst_bytes: u32::MAX,
                limit_bytes: u32::MAX,
            },
        ] {
            let message = round_trip(tbf_message(7, &bucket));
            assert_eq!(message.header.index, 7);
            assert_eq!(message.header.parent, TcHandle::ROOT);
            let tbf = read_tbf(&message).expect("a tbf");
            assert!(tbf.matches(&bucket), "{tbf:?} vs {bucket:?}");
            assert!(!tbf.matches(&Bucket {
                rate_bytes: bucket.rate_bytes / 2,
                ..bucket
            }));
        }
        // 100 kB at 1 MB/s is 100 ms: 1,562,500 ticks of 64 ns.
        let bucket = Bucket {
            rate_bytes: 1_000_000,
            burst_bytes: 100_000,
            limit_bytes: 125_000,
        };
        assert_eq!(bucket.buffer_ticks(), 1_562_500);
        assert_eq!(read_tbf(&round_trip(clsact_message(3))), None);
    }

    #[test]
    fn redirect_filters_name_their_target_and_hook() {
        let filter = redirect_message(4, Direction::Egress, 9);
        assert_eq!(filter.header.index, 4);
        assert_eq!(
            filter.header.parent,
            TcHandle {
                major: 0xffff,
                minor: 0xfff3
            }
        );
        // prio 1, protocol 0x0003 in network order.
        assert_eq!(
            (filter.header.info >> 16, filter.header.info as u16),
            (1, 0x0003u16.to_be())
        );
        assert_eq!(redirect_target(&filter), Some(9));
        let ingress = redirect_message(4, Direction::Ingress, 8);
        assert_eq!(ingress.header.parent.minor, TcHandle::MIN_INGRESS);
        assert_eq!(redirect_target(&ingress), Some(8));
        assert_eq!(redirect_target(&clsact_message(4)), None);
        let clsact = clsact_message(4);
        assert_eq!(clsact.header.parent, TcHandle::CLSACT);
        assert_eq!(clsact.attributes, vec![TcAttribute::Kind("clsact".into())]);
    }
}
