//! Which metric names the binaries export and which ones a PromQL query reads: the chart's
//! alerts and dashboard must read only exported ones.

use std::{collections::BTreeSet, time::Duration};

use eni_crds::ENIPoolStatus;
use eni_operator::cloud::CloudError;
use prometheus_client::{encoding::text::encode, registry::Registry};
use promql_parser::{
    label::MatchOp,
    parser::{self, Expr, VectorSelector},
};

/// Series names `/metrics` of eni-operator and eni-agent can contain, from their own
/// registries: each `# TYPE` line with the sample suffixes of its kind. A misspelt name in
/// a query, or a counter without `_total`, is not in it.
pub fn exported_series() -> Result<BTreeSet<String>, String> {
    // What operator/src/main.rs registers: the operator's metrics and the cloud
    // provider's (AwsProvider::new registers CloudMetrics into the same registry).
    let mut operator = Registry::default();
    let metrics = eni_operator::metrics::Metrics::register(&mut operator);
    let cloud = eni_operator::cloud::CloudMetrics::register(&mut operator);
    // A labelled family prints nothing, not even its TYPE line, until it has a series:
    // every recording method runs once. (A metric added later without a call here is
    // missing from the set, so a query reading it fails: on the safe side.)
    let took = Duration::from_millis(5);
    metrics.reconciled("node", None, took);
    metrics.allocated("ok", took);
    metrics.pool_gauges("pool", &ENIPoolStatus::default());
    metrics.observe_node("node", 1);
    metrics.collected();
    cloud.observe("CreateNetworkInterface", &Ok::<(), CloudError>(()), took);
    let mut text = String::new();
    encode(&mut text, &operator).map_err(|e| format!("encoding the operator's registry: {e}"))?;
    let agent = eni_node_agent::agent::metrics::Metrics::new();
    agent.record_request("ADD", None, took);
    agent.wiring_error("ADD");
    agent.set_feature("ipvlan", true);
    agent.set_cache_synced(true);
    agent.status_write_errors.inc();
    agent.watch_errors.inc();
    text.push_str(&agent.encode());

    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest
            .split_once(' ')
            .ok_or_else(|| format!("malformed TYPE line {line:?}"))?;
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count"],
            other => return Err(format!("{name}: metric type {other} not handled here")),
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    // The suffix rules above are checked against the samples actually printed (series
    // without labels print even before any observation).
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line
            .split(['{', ' '])
            .next()
            .ok_or_else(|| format!("malformed sample {line:?}"))?;
        if !names.contains(name) {
            return Err(format!(
                "sample {name} not derived from a TYPE line: {names:?}"
            ));
        }
    }
    Ok(names)
}

/// The metric name of every selector in `query`. A selector that does not name its
/// metric exactly (none, or a regex on `__name__`) is an error: it cannot be checked.
pub fn metric_names(query: &str) -> Result<BTreeSet<String>, String> {
    let expr = parser::parse(query).map_err(|e| format!("not PromQL: {e}: {query}"))?;
    let mut names = BTreeSet::new();
    collect(&expr, &mut names)?;
    Ok(names)
}

fn collect(expr: &Expr, names: &mut BTreeSet<String>) -> Result<(), String> {
    match expr {
        Expr::Aggregate(a) => {
            collect(&a.expr, names)?;
            if let Some(p) = &a.param {
                collect(p, names)?;
            }
        }
        Expr::Unary(u) => collect(&u.expr, names)?,
        Expr::Binary(b) => {
            collect(&b.lhs, names)?;
            collect(&b.rhs, names)?;
        }
        Expr::Paren(p) => collect(&p.expr, names)?,
        Expr::Subquery(s) => collect(&s.expr, names)?,
        Expr::VectorSelector(vs) => {
            names.insert(selector_name(vs)?);
        }
        Expr::MatrixSelector(ms) => {
            names.insert(selector_name(&ms.vs)?);
        }
        Expr::Call(c) => {
            for arg in &c.args.args {
                collect(arg, names)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => return Err("unexpected extension node".into()),
    }
    Ok(())
}

fn selector_name(vs: &VectorSelector) -> Result<String, String> {
    if let Some(name) = &vs.name {
        return Ok(name.clone());
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone())
        .ok_or_else(|| format!("selector {vs} names no metric exactly"))
}

#[test]
fn extraction_finds_every_selector_and_refuses_unnamed_ones() -> Result<(), String> {
    let names = metric_names(
        r#"sum(rate(a_total{x="y"}[5m])) / on() group_left histogram_quantile(0.9, sum by (le) (rate(b_bucket[5m]))) > bool scalar(c) or absent({__name__="d"} == 1) or max_over_time(e[1h:1m])"#,
    )?;
    let want: BTreeSet<String> = ["a_total", "b_bucket", "c", "d", "e"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
    assert!(metric_names(r#"{__name__=~"eni_.*"}"#).is_err());
    assert!(metric_names("sum(rate(x[5m]").is_err());
    Ok(())
}

#[test]
fn exported_series_follow_the_registries() -> Result<(), String> {
    let exported = exported_series()?;
    for name in [
        "eni_operator_allocations_total",
        "eni_operator_allocation_seconds_bucket",
        "eni_operator_cloud_requests_total",
        "eni_operator_units",
        "eni_agent_cni_requests_total",
        "eni_agent_cni_add_duration_seconds_count",
        "eni_agent_podnetwork_cache_synced",
        "eni_agent_wiring_errors_total",
        "eni_operator_reconciles_total",
        "eni_operator_pool_enis",
        "eni_operator_node_enis",
        "eni_operator_collected_enis_total",
        "eni_operator_cloud_request_duration_seconds_bucket",
        "eni_agent_kernel_feature_available",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    // Counters are exposed with _total only; histograms only as their three series.
    for name in [
        "eni_operator_allocations",
        "eni_operator_allocation_seconds",
        "eni_agent_cni_requests",
    ] {
        assert!(!exported.contains(name), "{name} should not be exported");
    }
    Ok(())
}
