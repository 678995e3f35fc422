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

use nftables::batch::Batch;
use nftables::expr::{CT, Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule as NftRule, Table};
use nftables::stmt::{Mangle, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::error::DataplaneError;
use super::node_table::{self, REPLY_MARK};

/// The pod's route table of answers through the host veth.
pub const POD_HOST_TABLE: u32 = 225;

const TABLE: &str = "eni-pod";
const FROM_NODE: &str = "from-node";
const REPLIES: &str = "replies";
const MANGLE_PRIORITY: i32 = -150;

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
fn chains(veth: &str) -> [(Chain<'static>, Vec<Statement<'static>>); 2] {
    let chain = |name: &'static str, kind, hook| Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(MANGLE_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    };
    [
        (
            chain(FROM_NODE, NfChainType::Filter, NfHook::Prerouting),
            vec![
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
            ],
        ),
        (
            chain(REPLIES, NfChainType::Route, NfHook::Output),
            vec![
                Statement::Match(Match {
                    left: ct_mark(),
                    right: Expression::Number(REPLY_MARK),
                    op: Operator::EQ,
                }),
                Statement::Mangle(Mangle {
                    key: Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark })),
                    value: Expression::Number(REPLY_MARK),
                }),
            ],
        ),
    ]
}

/// One transaction that replaces the pod's table with the wanted one.
pub fn replacement(veth: &str) -> Nftables<'static> {
    let table = || Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    };
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    for (chain, statements) in chains(veth) {
        let name = chain.name.clone();
        batch.add(NfListObject::Chain(chain));
        batch.add(NfListObject::Rule(NftRule {
            family: NfFamily::IP,
            table: TABLE.into(),
            chain: name,
            expr: statements.into(),
            ..NftRule::default()
        }));
    }
    batch.to_nftables()
}

/// How a listing of the pod's table differs from the wanted one, one line each.
pub fn differences(listing: Option<&Nftables<'_>>, veth: &str) -> Vec<String> {
    let Some(listing) = listing else {
        return vec![format!("nftables: table ip {TABLE} is missing")];
    };
    let mut found = Vec::new();
    for (wanted, statements) in chains(veth) {
        let chain = listing.objects.iter().find_map(|o| match o {
            NfObject::ListObject(NfListObject::Chain(c)) if c.name == wanted.name => Some(c),
            _ => None,
        });
        let rules: Vec<_> = listing
            .objects
            .iter()
            .filter_map(|o| match o {
                NfObject::ListObject(NfListObject::Rule(r)) if r.chain == wanted.name => {
                    Some(r.expr.as_ref())
                }
                _ => None,
            })
            .collect();
        let right_chain = chain
            .is_some_and(|c| (c._type, c.hook, c.prio) == (wanted._type, wanted.hook, wanted.prio));
        if !right_chain || rules != [statements.as_slice()] {
            found.push(format!(
                "nftables: chain ip {TABLE} {} does not mark connections from {veth} and their answers",
                wanted.name
            ));
        }
    }
    found
}

/// Makes the pod at `pod` hold its table; listed first, loaded only when it differs.
pub async fn ensure(pod: &Path, veth: &str) -> Result<(), DataplaneError> {
    let current = node_table::list_table(pod, TABLE).await?;
    if !differences(current.as_ref(), veth).is_empty() {
        node_table::apply(pod, replacement(veth), "replacing table ip eni-pod").await?;
    }
    Ok(())
}

/// Removes the pod's table, if it has one.
pub async fn remove(pod: &Path) -> Result<(), DataplaneError> {
    if node_table::list_table(pod, TABLE).await?.is_none() {
        return Ok(());
    }
    let table = Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    };
    let mut batch = Batch::new();
    batch.delete(NfListObject::Table(table));
    node_table::apply(pod, batch.to_nftables(), "deleting table ip eni-pod").await
}

/// What the pod at `pod` lacks of its table, one line each.
pub async fn check(pod: &Path, veth: &str) -> Result<Vec<String>, DataplaneError> {
    let current = node_table::list_table(pod, TABLE).await?;
    Ok(differences(current.as_ref(), veth))
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
