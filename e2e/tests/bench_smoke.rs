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

/// The numbers at `pointers` (JSON pointers) of `doc` are positive.
fn numbers(doc: &Value, pointers: &[String]) -> Result<(), Failed> {
    check(doc, pointers, |x| x > 0.0)?;
    if doc["machine"]["cpus"].as_u64().unwrap_or(0) == 0 {
        return Err(format!("no machine in {doc}").into());
    }
    Ok(())
}

/// The values at `pointers` of `doc` are finite numbers that pass `ok`.
fn check(doc: &Value, pointers: &[String], ok: fn(f64) -> bool) -> Result<(), Failed> {
    for p in pointers {
        match doc.pointer(p).and_then(Value::as_f64) {
            Some(x) if x.is_finite() && ok(x) => {}
            other => return Err(format!("{p} is {other:?} in {doc}").into()),
        }
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
        "reference_node_to_node",
        "reference_pod_veth",
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
    for mode in ["shared_ip", "exclusive", "trunk"] {
        for phase in ["cold", "warm"] {
            for f in [
                "pods_per_s",
                "bound_pods_per_s",
                "bound_ratio",
                "create_rate_per_s",
            ] {
                fields.push(format!("/modes/{mode}/aws_like/{phase}/{f}"));
            }
        }
        for f in [
            "calls_per_1000_pods",
            "min_calls_per_1000_pods",
            "warm_target",
        ] {
            fields.push(format!(
                "/modes/{mode}/aws_like/economy/after_deleting_half/{f}"
            ));
        }
    }
    numbers(&doc, &fields)?;
    let idle: Vec<String> = ["shared_ip", "exclusive", "trunk"]
        .iter()
        .flat_map(|m| {
            [
                format!("/modes/{m}/aws_like/economy/idle_per_node"),
                format!("/modes/{m}/aws_like/economy/after_deleting_half/idle_per_node"),
            ]
        })
        .collect();
    check(&doc, &idle, |x| x >= 0.0)
}

fn scale() -> Result<(), Failed> {
    let doc = run("scale")?;
    let mut fields: Vec<String> = [
        "/pods",
        "/nodes",
        "/bound_to_podnetwork_ms/p99",
        "/reconcile_cpu_ms_per_pod",
        "/operator_rss_kib/before_pods",
        "/operator_rss_kib/at_end",
        "/operator_rss_kib/peak",
    ]
    .map(String::from)
    .to_vec();
    let steps = doc["fill"].as_array().map_or(0, Vec::len);
    if steps == 0 {
        return Err(format!("no fill steps in {doc}").into());
    }
    for i in 0..steps {
        for f in [
            "podnetworks",
            "rss_kib",
            "cpu_ms_per_pod",
            "create_rate_per_s",
            "seconds",
            "bound_to_podnetwork_ms/p99",
        ] {
            fields.push(format!("/fill/{i}/{f}"));
        }
    }
    numbers(&doc, &fields)?;
    // A few pods may not move the operator's RSS, or may even see it shrink; a network
    // seen before its pod's create answered counts 0 ms.
    let mut any_sign: Vec<String> = ["/operator_bytes_per_pod"].map(String::from).to_vec();
    for i in 0..steps {
        any_sign.push(format!("/fill/{i}/operator_bytes_per_pod"));
    }
    check(&doc, &any_sign, |_| true)?;
    check(&doc, &["/bound_to_podnetwork_ms/p50".into()], |x| x >= 0.0)?;
    match doc["operator_bytes_per_pod_by_step"].as_object() {
        Some(by) if by.len() == steps => Ok(()),
        other => Err(format!("operator_bytes_per_pod_by_step is {other:?}").into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    eni_e2e::init_crypto();
    let trials = vec![
        Trial::test("bench_cni_smoke", cni),
        Trial::test("bench_dataplane_smoke", dataplane),
        Trial::test("bench_burst_smoke", burst),
        Trial::test("bench_scale_smoke", scale),
    ];
    libtest_mimic::run(&args, trials).exit();
}
