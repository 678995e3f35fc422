//! The agent's nftables tables (the node's `node_table`, each passthrough pod's
//! `pod_table`) the same way: Debian's `nft` run inside a namespace through the
//! `nftables` crate, a table replaced whole in one transaction, and a listing compared
//! chain by chain with the wanted one.

use std::path::Path;

use nftables::batch::Batch;
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::error::DataplaneError;
use super::netns;

/// The nft program (Debian's nftables, shipped in the agent image).
const NFT: &str = "nft";

/// A base chain of an `ip` table and its rules' statements, in order.
pub struct WantedChain {
    pub chain: Chain<'static>,
    pub rules: Vec<Vec<Statement<'static>>>,
}

impl WantedChain {
    pub fn new(
        table: &'static str,
        name: &'static str,
        kind: NfChainType,
        hook: NfHook,
        prio: i32,
        rules: Vec<Vec<Statement<'static>>>,
    ) -> Self {
        let chain = Chain {
            family: NfFamily::IP,
            table: table.into(),
            name: name.into(),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        };
        Self { chain, rules }
    }
}

/// What is wrong with one wanted chain in a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainProblem {
    Missing,
    /// Another type, hook or priority.
    OtherHook,
    /// Not exactly the wanted rules; how many it has.
    OtherRules(usize),
}

fn table(name: &'static str) -> Table<'static> {
    Table {
        family: NfFamily::IP,
        name: name.into(),
        handle: None,
    }
}

/// One transaction that replaces table `ip <name>` with `chains` (adding it first so
/// that the delete cannot fail where it never was).
pub fn replacement(name: &'static str, chains: Vec<WantedChain>) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table(name)));
    batch.delete(NfListObject::Table(table(name)));
    batch.add(NfListObject::Table(table(name)));
    for WantedChain { chain, rules } in chains {
        let chain_name = chain.name.clone();
        batch.add(NfListObject::Chain(chain));
        for statements in rules {
            batch.add(NfListObject::Rule(Rule {
                family: NfFamily::IP,
                table: name.into(),
                chain: chain_name.clone(),
                expr: statements.into(),
                ..Rule::default()
            }));
        }
    }
    batch.to_nftables()
}

/// One transaction that deletes table `ip <name>`, whether or not it is there.
pub fn deletion(name: &'static str) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table(name)));
    batch.delete(NfListObject::Table(table(name)));
    batch.to_nftables()
}

/// The problems of each wanted chain in `listing`: a missing chain is only missing;
/// otherwise its hook and its rules are judged apart.
pub fn chain_problems<'w>(
    listing: &Nftables<'_>,
    chains: &'w [WantedChain],
) -> Vec<(&'w WantedChain, ChainProblem)> {
    let mut found = Vec::new();
    for wanted in chains {
        let name = &wanted.chain.name;
        let listed = listing.objects.iter().find_map(|o| match o {
            NfObject::ListObject(NfListObject::Chain(c)) if c.name == *name => Some(c),
            _ => None,
        });
        let Some(listed) = listed else {
            found.push((wanted, ChainProblem::Missing));
            continue;
        };
        let w = &wanted.chain;
        if (listed._type, listed.hook, listed.prio) != (w._type, w.hook, w.prio) {
            found.push((wanted, ChainProblem::OtherHook));
        }
        let have: Vec<&[Statement<'_>]> = listing
            .objects
            .iter()
            .filter_map(|o| match o {
                NfObject::ListObject(NfListObject::Rule(r)) if r.chain == *name => {
                    Some(r.expr.as_ref())
                }
                _ => None,
            })
            .collect();
        let same = have.len() == wanted.rules.len()
            && have
                .iter()
                .zip(&wanted.rules)
                .all(|(h, w)| *h == w.as_slice());
        if !same {
            found.push((wanted, ChainProblem::OtherRules(have.len())));
        }
    }
    found
}

/// Table `ip <name>` of the namespace at `path`; `None` when it has none.
pub async fn list_table(
    path: &Path,
    name: &'static str,
) -> Result<Option<Nftables<'static>>, DataplaneError> {
    netns::run_in(path, move || {
        match helper::get_current_ruleset_with_args(Some(NFT), ["list", "table", "ip", name]) {
            Ok(listing) => Ok(Some(listing)),
            // nft exits non-zero for a table that does not exist.
            Err(NftablesError::NftFailed { .. }) => Ok(None),
            Err(e) => Err(nft_error(&format!("listing table ip {name}"), e)),
        }
    })
    .await
}

/// Loads `ruleset` (one transaction) in the namespace at `path`.
pub async fn apply(
    path: &Path,
    ruleset: Nftables<'static>,
    what: &'static str,
) -> Result<(), DataplaneError> {
    netns::run_in(path, move || {
        helper::apply_ruleset_with_args(&ruleset, Some(NFT), std::iter::empty::<&str>())
            .map_err(|e| nft_error(what, e))
    })
    .await
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
