//! Replies to connections the node itself DNATed (a hostPort by the chained portmap
//! plugin, a NodePort by kube-proxy) must leave the way the request came: through the
//! main table. Without this, a SharedIP pod's reply matches its `from <pod> lookup
//! <ENI table>` rule first, leaves through the pod's ENI, and only then does conntrack
//! put the node's address back as its source, so the VPC drops it as spoofed.
//!
//! One nftables chain marks such replies (`ct direction reply ct status dnat`) and one
//! policy rule, ahead of the pods' rules, sends marked packets to the main table. The
//! table `ip eni-agent` is the agent's own: it is replaced whole when it differs.

use std::path::Path;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::RouteHeader;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use nftables::batch::Batch;
use nftables::expr::{BinaryOperation, CT, Expression, Meta, MetaKey, NamedExpression};
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule as NftRule, Table};
use nftables::stmt::{Mangle, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::error::DataplaneError;
use super::requests::{MAIN_TABLE, PROTO, RULE_PRIORITY_FROM_POD, RULE_PRIORITY_TO_POD};
use super::{Dataplane, netns};

/// Packet mark bit of DNATed replies. kube-proxy uses 0x4000 and 0x8000, portmap
/// 0x2000; the AWS VPC CNI's nodes use 0x80 for the same purpose.
pub const REPLY_MARK: u32 = 0x80;
/// `fwmark 0x80/0x80 lookup main`: after the to-pod rules, before the from-pod rules.
pub const RULE_PRIORITY_DNAT_REPLIES: u32 = 1024;
const _: () = assert!(
    RULE_PRIORITY_TO_POD < RULE_PRIORITY_DNAT_REPLIES
        && RULE_PRIORITY_DNAT_REPLIES < RULE_PRIORITY_FROM_POD
);

const TABLE: &str = "eni-agent";
const CHAIN: &str = "dnat-replies";
/// The `mangle` priority of the prerouting hook: after conntrack (-200) has found the
/// connection, before routing.
const MANGLE_PRIORITY: i32 = -150;
/// The nft program (Debian's nftables, shipped in the agent image).
const NFT: &str = "nft";

/// The statements of the marking rule.
fn marking_statements() -> Vec<Statement<'static>> {
    let ct = |key: &'static str| {
        Expression::Named(NamedExpression::CT(CT {
            key: key.into(),
            family: None,
            dir: None,
        }))
    };
    let mark = || Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark }));
    vec![
        Statement::Match(Match {
            left: ct("direction"),
            right: Expression::String("reply".into()),
            op: Operator::EQ,
        }),
        Statement::Match(Match {
            left: ct("status"),
            right: Expression::String("dnat".into()),
            op: Operator::IN,
        }),
        Statement::Mangle(Mangle {
            key: mark(),
            value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                mark(),
                Expression::Number(REPLY_MARK),
            ]))),
        }),
    ]
}

fn chain() -> Chain<'static> {
    Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Prerouting),
        prio: Some(MANGLE_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    }
}

/// One transaction that replaces the agent's table with the wanted one (adding it
/// first so that the delete cannot fail on a node that never had it).
pub fn replacement() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    batch.add(NfListObject::Chain(chain()));
    batch.add(NfListObject::Rule(NftRule {
        family: NfFamily::IP,
        table: TABLE.into(),
        chain: CHAIN.into(),
        expr: marking_statements().into(),
        ..NftRule::default()
    }));
    batch.to_nftables()
}

/// How a listing of the agent's table (`nft -j list table ip eni-agent`) differs from
/// the wanted one, one line each.
pub fn differences(listing: &Nftables<'_>) -> Vec<String> {
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for object in listing.objects.iter() {
        match object {
            NfObject::ListObject(NfListObject::Chain(c)) => chains.push(c),
            NfObject::ListObject(NfListObject::Rule(r)) => rules.push(r),
            _ => {}
        }
    }
    let mut found = Vec::new();
    let wanted = chain();
    match chains.iter().find(|c| c.name == CHAIN) {
        None => found.push(format!("nftables: chain ip {TABLE} {CHAIN} is missing")),
        Some(c) if (c._type, c.hook, c.prio) != (wanted._type, wanted.hook, wanted.prio) => found
            .push(format!(
                "nftables: chain ip {TABLE} {CHAIN} is not a filter chain on prerouting at priority {MANGLE_PRIORITY}"
            )),
        Some(_) => {}
    }
    let statements = marking_statements();
    let ours: Vec<_> = rules.iter().filter(|r| r.chain == CHAIN).collect();
    if ours.len() != 1 || ours[0].expr.as_ref() != statements.as_slice() {
        found.push(format!(
            "nftables: chain ip {TABLE} {CHAIN} does not hold exactly the rule \
             `ct direction reply ct status dnat meta mark set meta mark | {REPLY_MARK:#x}` ({} rules)",
            ours.len()
        ));
    }
    found
}

/// The policy rule `fwmark 0x80/0x80 lookup main`, protocol 225.
pub fn mark_rule() -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.action = RuleAction::ToTable;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.attributes.push(RuleAttribute::Table(MAIN_TABLE));
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
        && table == MAIN_TABLE
        && priority == Some(RULE_PRIORITY_DNAT_REPLIES)
        && mark == Some(REPLY_MARK)
        && mask == Some(REPLY_MARK)
}

/// The agent's table as the namespace at `host` holds it; `None` when it has none.
pub async fn list(host: &Path) -> Result<Option<Nftables<'static>>, DataplaneError> {
    netns::run_in(host, || {
        match helper::get_current_ruleset_with_args(Some(NFT), ["list", "table", "ip", TABLE]) {
            Ok(listing) => Ok(Some(listing)),
            // nft exits non-zero for a table that does not exist.
            Err(NftablesError::NftFailed { .. }) => Ok(None),
            Err(e) => Err(nft_error("listing table ip eni-agent", e)),
        }
    })
    .await
}

/// Replaces the agent's table in the namespace at `host` with the wanted one.
pub async fn replace(host: &Path) -> Result<(), DataplaneError> {
    netns::run_in(host, || {
        helper::apply_ruleset_with_args(&replacement(), Some(NFT), std::iter::empty::<&str>())
            .map_err(|e| nft_error("replacing table ip eni-agent", e))
    })
    .await
}

impl Dataplane {
    /// Makes the host hold the marking chain and the mark rule; the chain is listed
    /// first so that a wired node costs one `nft list` per SharedIP pod, no rewrite.
    pub(super) async fn ensure_dnat_replies(&self) -> Result<(), DataplaneError> {
        let current = list(&self.host_path).await?;
        if current.as_ref().is_none_or(|l| !differences(l).is_empty()) {
            replace(&self.host_path).await?;
        }
        self.host
            .add_rule_message(mark_rule(), "fwmark 0x80/0x80 lookup main")
            .await
    }

    /// What is missing of [`Dataplane::ensure_dnat_replies`]'s state, one line each.
    pub(super) async fn dnat_replies_differences(&self) -> Result<Vec<String>, DataplaneError> {
        let mut found = match list(&self.host_path).await? {
            Some(listing) => differences(&listing),
            None => vec![format!("nftables: table ip {TABLE} is missing")],
        };
        if !self.host.rule_messages().await?.iter().any(is_mark_rule) {
            found.push(format!(
                "rule missing: {RULE_PRIORITY_DNAT_REPLIES}: fwmark {REPLY_MARK:#x}/{REPLY_MARK:#x} lookup main"
            ));
        }
        Ok(found.into_iter().map(|d| format!("host: {d}")).collect())
    }
}

fn nft_error(what: &str, error: NftablesError) -> DataplaneError {
    let detail = match error {
        NftablesError::NftExecution { program, inner } => format!(
            "cannot run {}: {inner} (the agent image ships Debian's nft; on a bare host install nftables)",
            program.to_string_lossy()
        ),
        NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
        other => other.to_string(),
    };
    DataplaneError::Nftables {
        what: what.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft -j list table ip eni-agent` printed (nft 1.0.6) for the table made
    /// from the rule's text form, `ct direction reply ct status dnat meta mark set meta
    /// mark | 0x00000080` in a `filter` chain on `prerouting` at priority `mangle`.
    const LISTED: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "eni-agent", "handle": 1}},
      {"chain": {"family": "ip", "table": "eni-agent", "name": "dnat-replies", "handle": 1,
                 "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}},
      {"rule": {"family": "ip", "table": "eni-agent", "chain": "dnat-replies", "handle": 2,
                "expr": [
        {"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "reply"}},
        {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
        {"mangle": {"key": {"meta": {"key": "mark"}},
                    "value": {"|": [{"meta": {"key": "mark"}}, 128]}}}]}}]}"#;

    fn listed() -> Nftables<'static> {
        serde_json::from_str(LISTED).unwrap()
    }

    #[test]
    fn the_table_nft_lists_for_the_text_rule_is_the_wanted_one() {
        assert_eq!(differences(&listed()), Vec::<String>::new());
    }

    #[test]
    fn a_missing_or_changed_rule_or_chain_is_reported() {
        type Change = fn(&mut serde_json::Value);
        let cases: [(&str, Change); 5] = [
            ("chain missing", |v| {
                v["nftables"].as_array_mut().unwrap().remove(2);
            }),
            ("rule missing", |v| {
                v["nftables"].as_array_mut().unwrap().remove(3);
            }),
            ("other priority", |v| {
                v["nftables"][2]["chain"]["prio"] = 0.into()
            }),
            ("other mark", |v| {
                v["nftables"][3]["rule"]["expr"][2]["mangle"]["value"]["|"][1] = 64.into()
            }),
            ("second rule", |v| {
                let rule = v["nftables"][3].clone();
                v["nftables"].as_array_mut().unwrap().push(rule);
            }),
        ];
        for (what, change) in cases {
            let mut value: serde_json::Value = serde_json::from_str(LISTED).unwrap();
            change(&mut value);
            let listing: Nftables = serde_json::from_value(value).unwrap();
            assert_eq!(differences(&listing).len(), 1, "{what}");
        }
    }

    #[test]
    fn the_replacement_adds_deletes_and_recreates_the_table_in_one_batch() {
        let json = serde_json::to_value(replacement()).unwrap();
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
                "add rule"
            ]
        );
        // The rule it adds is the one `differences` accepts.
        let rule = &json["nftables"][4]["add"]["rule"]["expr"];
        let listed = serde_json::to_value(listed()).unwrap();
        assert_eq!(rule, &listed["nftables"][3]["rule"]["expr"]);
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
