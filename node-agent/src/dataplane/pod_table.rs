//! Inside an Exclusive or Trunk pod: answers to connections that came in through the
//! host veth go back through it.
//!
//! Such a pod's default route (or at least its VPC routes) is its own ENI. A connection
//! the node forwards to it without SNAT — a NodePort with `externalTrafficPolicy:
//! Local`, whose point is to keep the client's address — would be answered straight
//! into the VPC with the pod's address, never passing the node's conntrack, so the
//! client gets an answer from an address it never asked. The pod's nftables table
//! `ip eni-pod` marks connections that arrive on `v<ifname>` (conntrack mark 0x80) and
//! puts the mark on their answers; a policy rule sends marked packets to table
//! [`POD_HOST_TABLE`], whose default route is the veth.

use std::path::Path;

use nftables::expr::{CT, Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::Nftables;
use nftables::stmt::{Mangle, Match, Operator, Statement};
use nftables::types::{NfChainType, NfHook};

use super::error::DataplaneError;
use super::kernel::Netlink;
use super::nft::{self, WantedChain};
use super::node_table::{REPLY_MARK, is_mark_rule_to, mark_rule_to};

/// The pod's route table of answers through the host veth.
pub const POD_HOST_TABLE: u32 = 225;

const TABLE: &str = "eni-pod";
const FROM_NODE: &str = "from-node";
const REPLIES: &str = "replies";
const MANGLE_PRIORITY: i32 = -150;
const RULE: &str = "fwmark 0x80/0x80 lookup 225";

fn ct_mark() -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: "mark".into(),
        family: None,
        dir: None,
    }))
}

/// The chains and their one rule each: `iifname <veth> ct mark set 0x80`, and on the
/// way out `ct mark 0x80 meta mark set 0x80` (a `route` chain, so the kernel routes
/// the packet again with the mark).
fn chains(veth: &str) -> Vec<WantedChain> {
    vec![
        WantedChain::new(
            TABLE,
            FROM_NODE,
            NfChainType::Filter,
            NfHook::Prerouting,
            MANGLE_PRIORITY,
            vec![vec![
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::Meta(Meta {
                        key: MetaKey::Iifname,
                    })),
                    right: Expression::String(veth.to_owned().into()),
                    op: Operator::EQ,
                }),
                Statement::Mangle(Mangle {
                    key: ct_mark(),
                    value: Expression::Number(REPLY_MARK),
                }),
            ]],
        ),
        WantedChain::new(
            TABLE,
            REPLIES,
            NfChainType::Route,
            NfHook::Output,
            MANGLE_PRIORITY,
            vec![vec![
                Statement::Match(Match {
                    left: ct_mark(),
                    right: Expression::Number(REPLY_MARK),
                    op: Operator::EQ,
                }),
                Statement::Mangle(Mangle {
                    key: Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark })),
                    value: Expression::Number(REPLY_MARK),
                }),
            ]],
        ),
    ]
}

/// One transaction that replaces the pod's table with the wanted one.
pub fn replacement(veth: &str) -> Nftables<'static> {
    nft::replacement(TABLE, chains(veth))
}

/// How a listing of the pod's table differs from the wanted one, one line per chain.
pub fn differences(listing: Option<&Nftables<'_>>, veth: &str) -> Vec<String> {
    let Some(listing) = listing else {
        return vec![format!("nftables: table ip {TABLE} is missing")];
    };
    let wanted = chains(veth);
    let mut names: Vec<&str> = nft::chain_problems(listing, &wanted)
        .into_iter()
        .map(|(chain, _)| chain.chain.name.as_ref())
        .collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            format!(
                "nftables: chain ip {TABLE} {name} does not mark connections from {veth} and their answers"
            )
        })
        .collect()
}

/// Makes the pod (netlink `pod`, namespace at `path`) hold the rule and its table; the
/// table is listed first and loaded only when it differs.
pub async fn ensure(pod: &Netlink, path: &Path, veth: &str) -> Result<(), DataplaneError> {
    pod.add_rule_message(mark_rule_to(POD_HOST_TABLE), RULE)
        .await?;
    let current = nft::list_table(path, TABLE).await?;
    if !differences(current.as_ref(), veth).is_empty() {
        nft::apply(path, replacement(veth), "replacing table ip eni-pod").await?;
    }
    Ok(())
}

/// Removes the rule and the table from a pod that has them. The rule is looked for
/// first: SharedIP pods have neither, and nft costs a process.
pub async fn remove(pod: &Netlink, path: &Path) -> Result<(), DataplaneError> {
    let marked = pod
        .rule_messages()
        .await?
        .iter()
        .any(|r| is_mark_rule_to(r, POD_HOST_TABLE));
    if !marked {
        return Ok(());
    }
    pod.delete_rule_message(mark_rule_to(POD_HOST_TABLE), RULE)
        .await?;
    nft::apply(path, nft::deletion(TABLE), "deleting table ip eni-pod").await
}

/// What the pod lacks of the rule and its table, one line each.
pub async fn check(pod: &Netlink, path: &Path, veth: &str) -> Result<Vec<String>, DataplaneError> {
    let mut found = Vec::new();
    if !pod
        .rule_messages()
        .await?
        .iter()
        .any(|r| is_mark_rule_to(r, POD_HOST_TABLE))
    {
        found.push(format!("rule missing: {RULE}"));
    }
    let current = nft::list_table(path, TABLE).await?;
    found.extend(differences(current.as_ref(), veth));
    Ok(found.into_iter().map(|d| format!("pod: {d}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft -j list table ip eni-pod` printed (nft 1.0.6) for the table made from
    /// its text form: `iifname "veth0" ct mark set 0x00000080` in a `filter` chain on
    /// `prerouting`, `ct mark 0x00000080 meta mark set 0x00000080` in a `route` chain
    /// on `output`, both at priority `mangle`.
    const LISTED: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "eni-pod", "handle": 1}},
      {"chain": {"family": "ip", "table": "eni-pod", "name": "from-node", "handle": 1,
                 "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "eni-pod", "name": "replies", "handle": 2,
                 "type": "route", "hook": "output", "prio": -150, "policy": "accept"}},
      {"rule": {"family": "ip", "table": "eni-pod", "chain": "from-node", "handle": 3, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth0"}},
        {"mangle": {"key": {"ct": {"key": "mark"}}, "value": 128}}]}},
      {"rule": {"family": "ip", "table": "eni-pod", "chain": "replies", "handle": 4, "expr": [
        {"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": 128}},
        {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 128}}]}}]}"#;

    fn listing(change: fn(&mut serde_json::Value)) -> Nftables<'static> {
        let mut value: serde_json::Value = serde_json::from_str(LISTED).unwrap();
        change(&mut value);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_listing_of_the_text_form_is_the_wanted_table_and_changes_are_named() {
        assert_eq!(
            differences(Some(&listing(|_| {})), "veth0"),
            Vec::<String>::new()
        );
        assert_eq!(differences(None, "veth0").len(), 1);
        assert_eq!(differences(Some(&listing(|_| {})), "veth1").len(), 1);
        type Change = fn(&mut serde_json::Value);
        let cases: [(&str, Change); 3] = [
            ("replies chain missing", |v| {
                v["nftables"].as_array_mut().unwrap().remove(3);
            }),
            ("not a route chain", |v| {
                v["nftables"][3]["chain"]["type"] = "filter".into()
            }),
            ("other mark", |v| {
                v["nftables"][4]["rule"]["expr"][1]["mangle"]["value"] = 64.into()
            }),
        ];
        for (what, change) in cases {
            assert_eq!(
                differences(Some(&listing(change)), "veth0").len(),
                1,
                "{what}"
            );
        }
    }

    #[test]
    fn the_replacement_loads_what_differences_accepts() {
        let json = serde_json::to_value(replacement("veth0")).unwrap();
        let listed: serde_json::Value = serde_json::from_str(LISTED).unwrap();
        assert_eq!(
            json["nftables"][4]["add"]["rule"]["expr"],
            listed["nftables"][4]["rule"]["expr"]
        );
        assert_eq!(
            json["nftables"][6]["add"]["rule"]["expr"],
            listed["nftables"][5]["rule"]["expr"]
        );
    }
}
