//! Every benchmark of `bench` runs in its smoke size and writes a complete JSON
//! document: the fields its figures are read from are there and are numbers. No figure
//! is judged (benchmarks are for measuring, on release builds).

use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

fn run(name: &str) -> Result<Value, Failed> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join(format!("{name}.json"));
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([name, "--smoke", "--out"])
        .arg(&out)
        .output()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        return Err(format!(
            "bench {name} failed: {}\n{stdout}",
            String::from_utf8_lossy(&run.stderr)
        )
        .into());
    }
    let summary = stdout.lines().last().unwrap_or_default();
    println!("  {summary}");
    if !summary.starts_with(&format!("{name}:")) {
        return Err(format!("no one-line summary last: {summary:?}").into());
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(&out)?)?)
}

/// The numbers at `pointers` (JSON pointers) of `doc`.
fn numbers(doc: &Value, pointers: &[String]) -> Result<(), Failed> {
    for p in pointers {
        match doc.pointer(p).and_then(Value::as_f64) {
            Some(x) if x.is_finite() && x > 0.0 => {}
            other => return Err(format!("{p} is {other:?} in {doc}").into()),
        }
    }
    if doc["machine"]["cpus"].as_u64().unwrap_or(0) == 0 {
        return Err(format!("no machine in {doc}").into());
    }
    Ok(())
}

fn cni() -> Result<(), Failed> {
    let doc = run("cni")?;
    let mut fields: Vec<String> = ["/add_p50_ratio", "/del_p50_ratio", "/agent_rss_bytes"]
        .map(String::from)
        .to_vec();
    for phase in ["sequential", "concurrent"] {
        for plugin in ["eni_cni", "ptp_host_local"] {
            for command in ["add", "del"] {
                for q in ["p50_ms", "p99_ms"] {
                    fields.push(format!("/{phase}/{plugin}/{command}/{q}"));
                }
            }
        }
    }
    numbers(&doc, &fields)
}

fn dataplane() -> Result<(), Failed> {
    let doc = run("dataplane")?;
    let mut fields = Vec::new();
    for path in [
        "node_to_node",
        "shared_veth",
        "exclusive",
        "trunk_member",
        "vxlan_overlay",
    ] {
        for f in [
            "throughput_gbit_s",
            "ratio_to_baseline",
            "round_trip/p50_ms",
            "round_trip/p99_ms",
        ] {
            fields.push(format!("/paths/{path}/{f}"));
        }
    }
    numbers(&doc, &fields)
}

fn burst() -> Result<(), Failed> {
    let doc = run("burst")?;
    let mut fields: Vec<String> = [
        "/operator_bytes_per_pod",
        "/economy/calls_per_1000_pods",
        "/economy/min_calls_per_1000_pods",
    ]
    .map(String::from)
    .to_vec();
    for model in ["aws_like", "strict"] {
        for phase in ["cold", "warm"] {
            for f in [
                "pods_per_s",
                "bound_pods_per_s",
                "bound_ratio",
                "create_rate_per_s",
            ] {
                fields.push(format!("/models/{model}/{phase}/{f}"));
            }
        }
    }
    numbers(&doc, &fields)?;
    match doc
        .pointer("/economy/idle_per_node")
        .and_then(Value::as_f64)
    {
        Some(x) if x >= 0.0 => Ok(()),
        other => Err(format!("idle_per_node is {other:?}").into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    eni_e2e::init_crypto();
    let trials = vec![
        Trial::test("bench_cni_smoke", cni),
        Trial::test("bench_dataplane_smoke", dataplane),
        Trial::test("bench_burst_smoke", burst),
    ];
    libtest_mimic::run(&args, trials).exit();
}
