//! The agent's node-wide nftables table `ip eni-agent`, made with the first pod and
//! replaced whole when it differs from what the configuration wants. Three chains:
//!
//! - `dnat-replies`: replies to connections the node itself DNATed (a hostPort by the
//!   chained portmap plugin, a NodePort or ClusterIP by kube-proxy) must leave the way
//!   the request came: through the main table. Without this, a SharedIP pod's reply
//!   matches its `from <pod> lookup <ENI table>` rule first, leaves through the pod's
//!   ENI, and only then does conntrack put the Service's or node's address back as its
//!   source, so the VPC drops it as spoofed. The chain marks such replies (`ct direction
//!   reply ct status dnat`) and one policy rule, ahead of the pods' rules, sends marked
//!   packets to the main table.
//! - `dnat-requests`: requests to the node's own address that the node DNATed to a pod
//!   (a NodePort or hostPort called from a SharedIP pod of the node) get the same mark,
//!   so they leave by the main table too.
//! - `pod-snat` (postrouting, just before kube-proxy's masquerade): what pods send through
//!   the node takes the node's address. Exclusive and Trunk pods only send the node
//!   what must come back through it (Services, the node, and with SNAT on, destinations
//!   outside the VPC), so everything they forward is SNATed; SharedIP pods only when
//!   the destination is outside the VPC and not excluded (`externalSNAT: false`).
//!   Pods are told apart by their host veth's interface group, set when it is made.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::RouteHeader;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use nftables::expr::{
    BinaryOperation, CT, CTDir, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, SetItem,
};
use nftables::schema::Nftables;
use nftables::stmt::{Mangle, Match, NAT, Operator, Statement};
use nftables::types::{NfChainType, NfHook};

use super::Dataplane;
use super::error::DataplaneError;
use super::naming::WiringKind;
use super::nft::{self, ChainProblem, WantedChain};
use super::requests::{MAIN_TABLE, PROTO, RULE_PRIORITY_FROM_POD, RULE_PRIORITY_TO_POD};

/// Packet mark bit of DNATed replies. kube-proxy uses 0x4000 and 0x8000, portmap
/// 0x2000; the AWS VPC CNI's nodes use 0x80 for the same purpose.
pub const REPLY_MARK: u32 = 0x80;
/// `fwmark 0x80/0x80 lookup main`: after the to-pod rules, before the from-pod rules.
pub const RULE_PRIORITY_DNAT_REPLIES: u32 = 1024;
const _: () = assert!(
    RULE_PRIORITY_TO_POD < RULE_PRIORITY_DNAT_REPLIES
        && RULE_PRIORITY_DNAT_REPLIES < RULE_PRIORITY_FROM_POD
);

/// How long ADD trusts its last look at the node's table.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Interface group of SharedIP pods' host veths (`ip link set <veth> group 225`).
pub const SHARED_POD_GROUP: u32 = 225;
/// Interface group of Exclusive and Trunk pods' host veths.
pub const PASSTHROUGH_POD_GROUP: u32 = 226;

const TABLE: &str = "eni-agent";
const REPLIES_CHAIN: &str = "dnat-replies";
const REQUESTS_CHAIN: &str = "dnat-requests";
const SNAT_CHAIN: &str = "pod-snat";
/// After kube-proxy's and portmap's DNAT (`dstnat`, -100), before routing.
const REQUESTS_PRIORITY: i32 = -90;
/// kube-proxy masquerades at `srcnat` (100); the pods' own rule comes first so that a
/// passthrough pod's hairpin takes the node's address, which its routes lead back to.
const SNAT_PRIORITY: i32 = 90;

/// The interface group of the host veth of a pod wired as `kind`.
pub fn host_group(kind: WiringKind) -> u32 {
    match kind {
        WiringKind::SharedVeth | WiringKind::SharedIpvlan => SHARED_POD_GROUP,
        WiringKind::Exclusive | WiringKind::TrunkMember | WiringKind::TrunkVlan => {
            PASSTHROUGH_POD_GROUP
        }
    }
}

/// What the `snat` chain does, from the agent's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeNat {
    /// The node's primary address: every SNAT maps to it.
    pub node_ip: Ipv4Addr,
    /// `None`: SharedIP pods keep their address everywhere (`externalSNAT: true`).
    /// `Some(p)`: they keep it only towards `p` (the VPC's CIDRs and excludeSNATCIDRs).
    pub shared_direct: Option<Vec<Ipv4Net>>,
}

/// The `mangle` priority of the prerouting hook: after conntrack (-200) has found the
/// connection, before routing.
const MANGLE_PRIORITY: i32 = -150;

fn ct(key: &'static str, dir: Option<CTDir>) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir,
    }))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

/// `meta mark set meta mark | 0x80`.
fn set_mark() -> Statement<'static> {
    let mark = || Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark }));
    Statement::Mangle(Mangle {
        key: mark(),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            mark(),
            Expression::Number(REPLY_MARK),
        ]))),
    })
}

/// `ct direction reply ct status dnat meta mark set meta mark | 0x80`.
fn marking_statements() -> Vec<Statement<'static>> {
    vec![
        matches(
            ct("direction", None),
            Operator::EQ,
            Expression::String("reply".into()),
        ),
        matches(
            ct("status", None),
            Operator::IN,
            Expression::String("dnat".into()),
        ),
        set_mark(),
    ]
}

/// `ct direction original ct status dnat ct original ip daddr <node ip> meta mark set
/// meta mark | 0x80`: a connection to the node's address (a NodePort, a hostPort) that
/// the node DNATed to a pod leaves by the main table. From a SharedIP pod of this node
/// it would otherwise take the pod's rule 2048 out of the pod's ENI, where kube-proxy's
/// masquerade gives it the node's address, which the VPC drops as spoofed.
fn request_marking(node_ip: Ipv4Addr) -> Vec<Statement<'static>> {
    vec![
        matches(
            ct("direction", None),
            Operator::EQ,
            Expression::String("original".into()),
        ),
        matches(
            ct("status", None),
            Operator::IN,
            Expression::String("dnat".into()),
        ),
        matches(
            ct("ip daddr", Some(CTDir::Original)),
            Operator::EQ,
            Expression::String(node_ip.to_string().into()),
        ),
        set_mark(),
    ]
}

/// The table's chains with their rules, in order.
fn chains(nat: &NodeNat) -> Vec<WantedChain> {
    vec![
        WantedChain::new(
            TABLE,
            REPLIES_CHAIN,
            NfChainType::Filter,
            NfHook::Prerouting,
            MANGLE_PRIORITY,
            vec![marking_statements()],
        ),
        WantedChain::new(
            TABLE,
            REQUESTS_CHAIN,
            NfChainType::Filter,
            NfHook::Prerouting,
            REQUESTS_PRIORITY,
            vec![request_marking(nat.node_ip)],
        ),
        WantedChain::new(
            TABLE,
            SNAT_CHAIN,
            NfChainType::NAT,
            NfHook::Postrouting,
            SNAT_PRIORITY,
            snat_rules(nat),
        ),
    ]
}

/// The statements of each rule of the `snat` chain, in order.
fn snat_rules(nat: &NodeNat) -> Vec<Vec<Statement<'static>>> {
    let from_group = |group: u32| {
        Statement::Match(Match {
            left: Expression::Named(NamedExpression::Meta(Meta {
                key: MetaKey::Iifgroup,
            })),
            right: Expression::Number(group),
            op: Operator::EQ,
        })
    };
    let snat = Statement::SNAT(Some(NAT {
        addr: Some(Expression::String(nat.node_ip.to_string().into())),
        family: None,
        port: None,
        flags: None,
    }));
    let mut rules = vec![vec![from_group(PASSTHROUGH_POD_GROUP), snat.clone()]];
    if let Some(direct) = &nat.shared_direct {
        let mut rule = vec![from_group(SHARED_POD_GROUP)];
        if !direct.is_empty() {
            rule.push(Statement::Match(Match {
                left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                    PayloadField {
                        protocol: "ip".into(),
                        field: "daddr".into(),
                    },
                ))),
                right: prefixes(direct),
                op: Operator::NEQ,
            }));
        }
        rule.push(snat);
        rules.push(rule);
    }
    rules
}

/// Prefixes as nft lists them: one alone, several as an anonymous set.
fn prefixes(list: &[Ipv4Net]) -> Expression<'static> {
    let prefix = |net: &Ipv4Net| {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(net.network().to_string().into())),
            len: u32::from(net.prefix_len()),
        }))
    };
    match list {
        [one] => prefix(one),
        _ => Expression::Named(NamedExpression::Set(
            list.iter().map(|n| SetItem::Element(prefix(n))).collect(),
        )),
    }
}

/// One transaction that replaces the agent's table with the wanted one.
pub fn replacement(nat: &NodeNat) -> Nftables<'static> {
    nft::replacement(TABLE, chains(nat))
}

/// How a listing of the agent's table (`nft -j list table ip eni-agent`) differs from
/// the wanted one, one line each.
pub fn differences(listing: &Nftables<'_>, nat: &NodeNat) -> Vec<String> {
    let wanted = chains(nat);
    nft::chain_problems(listing, &wanted)
        .into_iter()
        .map(|(chain, problem)| {
            let c = &chain.chain;
            let name = &c.name;
            match problem {
                ChainProblem::Missing => format!("nftables: chain ip {TABLE} {name} is missing"),
                ChainProblem::OtherHook => format!(
                    "nftables: chain ip {TABLE} {name} is not a {:?} chain on {:?} at priority {:?}",
                    c._type, c.hook, c.prio
                ),
                ChainProblem::OtherRules(have) => format!(
                    "nftables: chain ip {TABLE} {name} does not hold its {} rules (it has {have}; \
                     the node address is {}, SharedIP pods reach {} without SNAT)",
                    chain.rules.len(),
                    nat.node_ip,
                    match &nat.shared_direct {
                        None => "everything".to_owned(),
                        Some(direct) => format!("{direct:?}"),
                    },
                ),
            }
        })
        .collect()
}

/// The policy rule `fwmark 0x80/0x80 lookup main`, protocol 225.
pub fn mark_rule() -> RuleMessage {
    mark_rule_to(MAIN_TABLE)
}

/// The policy rule `fwmark 0x80/0x80 lookup <table>` at priority 1024, protocol 225.
pub fn mark_rule_to(table: u32) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.action = RuleAction::ToTable;
    message.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RuleAttribute::Table(table));
    message
        .attributes
        .push(RuleAttribute::Priority(RULE_PRIORITY_DNAT_REPLIES));
    message.attributes.push(RuleAttribute::FwMark(REPLY_MARK));
    message.attributes.push(RuleAttribute::FwMask(REPLY_MARK));
    message.attributes.push(RuleAttribute::Protocol(PROTO));
    message
}

/// Whether a dumped rule is [`mark_rule`].
pub fn is_mark_rule(message: &RuleMessage) -> bool {
    is_mark_rule_to(message, MAIN_TABLE)
}

/// Whether a dumped rule is [`mark_rule_to`] `wanted`.
pub fn is_mark_rule_to(message: &RuleMessage, wanted: u32) -> bool {
    let mut table = u32::from(message.header.table);
    let (mut priority, mut mark, mut mask) = (None, None, None);
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            _ => {}
        }
    }
    message.header.family == AddressFamily::Inet
        && message.header.action == RuleAction::ToTable
        && table == wanted
        && priority == Some(RULE_PRIORITY_DNAT_REPLIES)
        && mark == Some(REPLY_MARK)
        && mask == Some(REPLY_MARK)
}

/// The agent's table as the namespace at `host` holds it; `None` when it has none.
pub async fn list(host: &Path) -> Result<Option<Nftables<'static>>, DataplaneError> {
    nft::list_table(host, TABLE).await
}

/// Replaces the agent's table in the namespace at `host` with the wanted one.
pub async fn replace(host: &Path, nat: &NodeNat) -> Result<(), DataplaneError> {
    nft::apply(host, replacement(nat), "replacing table ip eni-agent").await
}

impl Dataplane {
    /// Makes the host hold the agent's table and the mark rule. The table is listed
    /// first, so a wired node costs no rewrite, and at most once per [`RECHECK`]: an
    /// `nft` process takes a few milliseconds of every ADD otherwise. CHECK always lists
    /// it, and a CHECK that finds it changed makes the next ADD look again.
    pub(super) async fn ensure_node_table(&self) -> Result<(), DataplaneError> {
        let recent = self
            .node_table_checked
            .lock()
            .map(|t| t.is_some_and(|at| at.elapsed() < RECHECK))
            .unwrap_or(false);
        if !recent {
            let nat = self.node_nat();
            let current = list(&self.host_path).await?;
            if current
                .as_ref()
                .is_none_or(|l| !differences(l, &nat).is_empty())
            {
                replace(&self.host_path, &nat).await?;
            }
            if let Ok(mut at) = self.node_table_checked.lock() {
                *at = Some(Instant::now());
            }
        }
        self.host
            .add_rule_message(mark_rule(), "fwmark 0x80/0x80 lookup main")
            .await
    }

    /// What is missing of [`Dataplane::ensure_node_table`]'s state, one line each.
    pub(super) async fn node_table_differences(&self) -> Result<Vec<String>, DataplaneError> {
        let mut found = match list(&self.host_path).await? {
            Some(listing) => differences(&listing, &self.node_nat()),
            None => vec![format!("nftables: table ip {TABLE} is missing")],
        };
        if !found.is_empty() {
            // The next ADD looks again and repairs it.
            if let Ok(mut at) = self.node_table_checked.lock() {
                *at = None;
            }
        }
        if !self.host.rule_messages().await?.iter().any(is_mark_rule) {
            found.push(format!(
                "rule missing: {RULE_PRIORITY_DNAT_REPLIES}: fwmark {REPLY_MARK:#x}/{REPLY_MARK:#x} lookup main"
            ));
        }
        Ok(found.into_iter().map(|d| format!("host: {d}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft -j list table ip eni-agent` printed (nft 1.0.6) for the table made
    /// from its text form: in a `filter` chain on `prerouting` at priority `mangle`, `ct
    /// direction reply ct status dnat meta mark set meta mark | 0x00000080`; in one at
    /// priority -90, `ct direction original ct status dnat ct original ip daddr
    /// 10.0.0.10 meta mark set meta mark | 0x00000080`; in a `nat` chain on
    /// `postrouting` at priority 90, `iifgroup 226 snat to 10.0.0.10` and `iifgroup 225
    /// ip daddr != { 10.0.0.0/16, 198.51.100.0/24 } snat to 10.0.0.10`.
    const LISTED: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "eni-agent", "handle": 1}},
      {"chain": {"family": "ip", "table": "eni-agent", "name": "dnat-replies", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "eni-agent", "name": "dnat-requests", "handle": 2, "type": "filter", "hook": "prerouting", "prio": -90, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "eni-agent", "name": "pod-snat", "handle": 3, "type": "nat", "hook": "postrouting", "prio": 90, "policy": "accept"}},
      {"rule": {"family": "ip", "table": "eni-agent", "chain": "dnat-replies", "handle": 4, "expr": [{"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "reply"}}, {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 128]}}}]}},
      {"rule": {"family": "ip", "table": "eni-agent", "chain": "dnat-requests", "handle": 5, "expr": [{"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "original"}}, {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"match": {"op": "==", "left": {"ct": {"key": "ip daddr", "dir": "original"}}, "right": "10.0.0.10"}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 128]}}}]}},
      {"rule": {"family": "ip", "table": "eni-agent", "chain": "pod-snat", "handle": 6, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifgroup"}}, "right": 226}}, {"snat": {"addr": "10.0.0.10"}}]}},
      {"rule": {"family": "ip", "table": "eni-agent", "chain": "pod-snat", "handle": 8, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifgroup"}}, "right": 225}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"set": [{"prefix": {"addr": "10.0.0.0", "len": 16}}, {"prefix": {"addr": "198.51.100.0", "len": 24}}]}}}, {"snat": {"addr": "10.0.0.10"}}]}}]}"#;

    /// Positions in [`LISTED`].
    const SNAT_CHAIN_AT: usize = 4;
    const REPLIES_RULE_AT: usize = 5;
    const REQUESTS_RULE_AT: usize = 6;
    const SHARED_RULE_AT: usize = 8;

    fn listed() -> Nftables<'static> {
        serde_json::from_str(LISTED).unwrap()
    }

    fn nat() -> NodeNat {
        NodeNat {
            node_ip: Ipv4Addr::new(10, 0, 0, 10),
            shared_direct: Some(vec![
                "10.0.0.0/16".parse().unwrap(),
                "198.51.100.0/24".parse().unwrap(),
            ]),
        }
    }

    fn changed(change: fn(&mut serde_json::Value)) -> Nftables<'static> {
        let mut value: serde_json::Value = serde_json::from_str(LISTED).unwrap();
        change(&mut value);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_table_nft_lists_for_the_text_rules_is_the_wanted_one() {
        assert_eq!(differences(&listed(), &nat()), Vec::<String>::new());
    }

    #[test]
    fn a_missing_or_changed_rule_or_chain_is_reported() {
        type Change = fn(&mut serde_json::Value);
        let cases: [(&str, Change); 9] = [
            ("chain missing", |v| {
                v["nftables"].as_array_mut().unwrap().remove(2);
            }),
            ("rule missing", |v| {
                v["nftables"]
                    .as_array_mut()
                    .unwrap()
                    .remove(REPLIES_RULE_AT);
            }),
            ("other priority", |v| {
                v["nftables"][2]["chain"]["prio"] = 0.into()
            }),
            ("other mark", |v| {
                v["nftables"][REPLIES_RULE_AT]["rule"]["expr"][2]["mangle"]["value"]["|"][1] =
                    64.into()
            }),
            ("second rule", |v| {
                let rule = v["nftables"][REPLIES_RULE_AT].clone();
                v["nftables"].as_array_mut().unwrap().push(rule);
            }),
            ("requests to another address", |v| {
                v["nftables"][REQUESTS_RULE_AT]["rule"]["expr"][2]["match"]["right"] =
                    "10.0.0.11".into()
            }),
            ("snat chain missing", |v| {
                v["nftables"].as_array_mut().unwrap().remove(SNAT_CHAIN_AT);
            }),
            ("snat to another address", |v| {
                v["nftables"][SHARED_RULE_AT - 1]["rule"]["expr"][1]["snat"]["addr"] =
                    "10.0.0.11".into()
            }),
            ("SharedIP rule missing", |v| {
                v["nftables"].as_array_mut().unwrap().remove(SHARED_RULE_AT);
            }),
        ];
        for (what, change) in cases {
            assert_eq!(differences(&changed(change), &nat()).len(), 1, "{what}");
        }
    }

    #[test]
    fn external_snat_wants_no_shared_ip_rule_and_one_prefix_is_no_set() {
        let external = NodeNat {
            shared_direct: None,
            ..nat()
        };
        assert_eq!(differences(&listed(), &external).len(), 1);
        let without_shared = changed(|v| {
            v["nftables"].as_array_mut().unwrap().remove(SHARED_RULE_AT);
        });
        assert_eq!(
            differences(&without_shared, &external),
            Vec::<String>::new()
        );
        // `ip daddr != { 10.0.0.0/16 }` is listed as `ip daddr != 10.0.0.0/16`.
        let one = snat_rules(&NodeNat {
            shared_direct: Some(vec!["10.0.0.0/16".parse().unwrap()]),
            ..nat()
        });
        let json = serde_json::to_value(&one[1][1]).unwrap();
        assert_eq!(
            json["match"]["right"],
            serde_json::json!({"prefix": {"addr": "10.0.0.0", "len": 16}})
        );
    }

    #[test]
    fn the_replacement_adds_deletes_and_recreates_the_table_in_one_batch() {
        let json = serde_json::to_value(replacement(&nat())).unwrap();
        let commands: Vec<String> = json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let (verb, object) = c.as_object().unwrap().iter().next().unwrap();
                let (kind, _) = object.as_object().unwrap().iter().next().unwrap();
                format!("{verb} {kind}")
            })
            .collect();
        assert_eq!(
            commands,
            [
                "add table",
                "delete table",
                "add table",
                "add chain",
                "add rule",
                "add chain",
                "add rule",
                "add chain",
                "add rule",
                "add rule"
            ]
        );
        // The rules it adds are the ones `differences` accepts.
        let listed = serde_json::to_value(listed()).unwrap();
        for (added, listed_at) in [
            (4, REPLIES_RULE_AT),
            (6, REQUESTS_RULE_AT),
            (8, 7),
            (9, SHARED_RULE_AT),
        ] {
            let rule = &json["nftables"][added]["add"]["rule"]["expr"];
            assert_eq!(
                rule, &listed["nftables"][listed_at]["rule"]["expr"],
                "rule {added}"
            );
        }
    }

    #[test]
    fn the_mark_rule_reads_back_and_other_rules_do_not_match() {
        let rule = mark_rule();
        assert!(is_mark_rule(&rule));
        let mut other_mark = mark_rule();
        other_mark
            .attributes
            .retain(|a| !matches!(a, RuleAttribute::FwMark(_)));
        other_mark.attributes.push(RuleAttribute::FwMark(0x4000));
        assert!(!is_mark_rule(&other_mark));
        let pod_rule = super::super::requests::Rule::to_pod(std::net::Ipv4Addr::new(10, 0, 0, 5));
        assert!(!is_mark_rule(&pod_rule.to_message()));
    }
}
