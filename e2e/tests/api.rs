//! The eni-operator.io API against a real kube-apiserver: CRDs install, the examples are
//! accepted, invalid objects are refused with the message a user sees, and kubectl's
//! apply / explain / get behave.
//!
//! One control plane serves the whole file (started in `main`, dropped at the end); every
//! case is still its own named test.

use std::{process::Command, sync::Arc};

use eni_e2e::{ControlPlane, binaries};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

type Fixture = Arc<(ControlPlane, tokio::runtime::Runtime)>;

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cp = match rt.block_on(async {
        let cp = ControlPlane::start().await?;
        cp.install_crds().await?;
        Ok::<_, eni_e2e::ControlPlaneError>(cp)
    }) {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("control plane: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let fx: Fixture = Arc::new((cp, rt));

    let mut trials = vec![
        trial(
            &fx,
            "crds_are_established_and_examples_accepted",
            examples_accepted,
        ),
        trial(
            &fx,
            "kubectl_server_side_apply_twice_changes_nothing",
            apply_twice,
        ),
        trial(&fx, "kubectl_explain_shows_field_docs", explain),
        trial(&fx, "kubectl_get_shows_printer_columns", printer_columns),
        trial(&fx, "immutable_mode", immutable_mode),
        trial(&fx, "immutable_pod_uid", immutable_pod_uid),
    ];
    for case in invalid_cases() {
        let fx = fx.clone();
        trials.push(Trial::test(format!("refuses_{}", case.name), move || {
            run(&fx, refused(&fx, case))
        }));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(fx);
    conclusion.exit_code()
}

fn trial<F, Fut>(fx: &Fixture, name: &str, f: F) -> Trial
where
    F: FnOnce(Fixture) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Failed>>,
{
    let fx = fx.clone();
    Trial::test(name, move || run(&fx, f(fx.clone())))
}

fn run<Fut: std::future::Future<Output = Result<(), Failed>>>(
    fx: &Fixture,
    fut: Fut,
) -> Result<(), Failed> {
    fx.1.block_on(fut)
}

fn gvk(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("eni-operator.io", "v1alpha1", kind))
}

async fn client(fx: &Fixture) -> Result<Client, Failed> {
    fx.0.client().await.map_err(|e| Failed::from(e.to_string()))
}

fn api_for(client: Client, obj: &Value) -> Api<DynamicObject> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let ar = gvk(kind);
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

async fn create(client: &Client, obj: &Value) -> Result<DynamicObject, kube::Error> {
    let dynobj: DynamicObject =
        serde_json::from_value(obj.clone()).map_err(kube::Error::SerdeError)?;
    api_for(client.clone(), obj)
        .create(&PostParams::default(), &dynobj)
        .await
}

fn kubectl(fx: &Fixture, args: &[&str]) -> Result<String, Failed> {
    let bins = binaries::kubernetes(binaries::Need::ControlPlane)
        .map_err(|e| Failed::from(e.to_string()))?;
    let out = Command::new(&bins.kubectl)
        .args(args)
        .env("KUBECONFIG", fx.0.kubeconfig_path())
        .output()
        .map_err(|e| Failed::from(format!("kubectl: {e}")))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn examples() -> Vec<(String, Value)> {
    let dir = eni_e2e::repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let v: Value = serde_yaml::from_str(&text).ok()?;
            Some((p.display().to_string(), v))
        })
        .collect()
}

async fn examples_accepted(fx: Fixture) -> Result<(), Failed> {
    let client = client(&fx).await?;
    let examples = examples();
    if examples.len() < 3 {
        return Err(format!("expected an example per mode, found {}", examples.len()).into());
    }
    for (file, mut obj) in examples {
        // Server-side dry run under another name: the examples themselves are applied by
        // the kubectl test running beside this one.
        let name = format!(
            "dry-run-{}",
            obj["metadata"]["name"].as_str().unwrap_or_default()
        );
        obj["metadata"]["name"] = json!(name);
        let dynobj: DynamicObject = serde_json::from_value(obj.clone())?;
        api_for(client.clone(), &obj)
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &dynobj,
            )
            .await
            .map_err(|e| format!("{file} refused: {e}"))?;
    }
    Ok(())
}

async fn apply_twice(fx: Fixture) -> Result<(), Failed> {
    let dir = eni_e2e::repo_root().join("examples");
    let dir = dir.to_string_lossy();
    kubectl(
        &fx,
        &[
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            &dir,
        ],
    )?;
    // Only the examples' pools: other tests create pools in the same cluster.
    let names: Vec<String> = examples()
        .iter()
        .filter_map(|(_, v)| v["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let versions = || {
        let mut args = vec!["get", "enipools"];
        args.extend(names.iter().map(String::as_str));
        args.extend([
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
        ]);
        kubectl(&fx, &args)
    };
    let before = versions()?;
    let second = kubectl(
        &fx,
        &[
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            &dir,
        ],
    )?;
    let after = versions()?;
    if before != after {
        return Err(format!("second apply changed objects: {before} -> {after}").into());
    }
    if before.split_whitespace().count() != 3 {
        return Err(format!("expected 3 pools, got {before}").into());
    }
    if !second.contains("serverside-applied") {
        return Err(format!("unexpected kubectl output: {second}").into());
    }
    Ok(())
}

async fn explain(fx: Fixture) -> Result<(), Failed> {
    // The API server publishes a new CRD's OpenAPI schema a little after the CRD is
    // Established (longer on a loaded machine); kubectl explain reads that schema.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        match kubectl(&fx, &["explain", "enipool.spec.warm"]) {
            Ok(out) => break out,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    for needle in [
        "Warm-pool targets",
        "warmIPs",
        "Free addresses a node keeps ready",
        "releaseDelay",
    ] {
        if !out.contains(needle) {
            return Err(format!("kubectl explain lacks {needle:?}:\n{out}").into());
        }
    }
    Ok(())
}

async fn printer_columns(fx: Fixture) -> Result<(), Failed> {
    let client = client(&fx).await?;
    let pool = json!({
        "apiVersion": "eni-operator.io/v1alpha1", "kind": "ENIPool",
        "metadata": {"name": "columns"},
        "spec": {"mode": "Exclusive", "nodeSelector": {}, "subnets": {"ids": ["subnet-0abc"]}}
    });
    create(&client, &pool).await?;
    let out = kubectl(&fx, &["get", "enipools", "columns"])?;
    let header = out.lines().next().unwrap_or_default();
    let cols: Vec<&str> = header.split_whitespace().collect();
    let want = [
        "NAME", "MODE", "NODES", "ENIS", "USED", "WARM", "READY", "AGE",
    ];
    if cols != want {
        return Err(format!("columns {cols:?}, want {want:?}").into());
    }
    if !out.lines().nth(1).unwrap_or_default().contains("Exclusive") {
        return Err(format!("row lacks the mode:\n{out}").into());
    }
    let out = kubectl(&fx, &["get", "enipools,trunkenis,podnetworks", "-A"])?;
    if !out.contains("enipool.eni-operator.io/columns") {
        return Err(format!("kubectl get of all kinds:\n{out}").into());
    }
    Ok(())
}

fn pool(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "eni-operator.io/v1alpha1", "kind": "ENIPool",
        "metadata": {"name": name}, "spec": spec
    })
}

fn podnetwork(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "eni-operator.io/v1alpha1", "kind": "PodNetwork",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec
    })
}

fn allocation() -> Value {
    json!({
        "address": "10.0.1.20", "prefixLength": 32, "gateway": "10.0.1.1",
        "subnetCIDR": "10.0.1.0/24", "subnetID": "subnet-0a1", "eniID": "eni-0abc",
        "eniMAC": "02:00:00:00:00:01", "deviceIndex": 1
    })
}

struct Case {
    name: &'static str,
    obj: Value,
    message: &'static str,
}

fn shared(extra: Value) -> Value {
    let mut spec =
        json!({"mode": "SharedIP", "nodeSelector": {}, "subnets": {"ids": ["subnet-0a1"]}});
    merge(&mut spec, extra);
    spec
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

fn invalid_cases() -> Vec<Case> {
    let pn = |name, mode: &str, alloc: Value| {
        podnetwork(
            name,
            json!({"podUID": "u-1", "nodeName": "n1", "pool": "p", "mode": mode, "allocation": alloc}),
        )
    };
    let mut bad_addr = allocation();
    merge(&mut bad_addr, json!({"address": "10.0.1.300"}));
    let mut bad_mac = allocation();
    merge(&mut bad_mac, json!({"eniMAC": "02-00-00-00-00-01"}));
    vec![
        Case {
            name: "min_ips_above_max_ips",
            obj: pool("c1", shared(json!({"warm": {"minIPs": 20, "maxIPs": 10}}))),
            message: "minIPs must not exceed maxIPs",
        },
        Case {
            name: "warm_ips_above_max_ips",
            obj: pool("c2", shared(json!({"warm": {"warmIPs": 20, "maxIPs": 10}}))),
            message: "warmIPs must not exceed maxIPs",
        },
        Case {
            name: "warm_enis_above_max_enis",
            obj: pool("c3", shared(json!({"warm": {"warmENIs": 4, "maxENIs": 2}}))),
            message: "warmENIs must not exceed maxENIs",
        },
        Case {
            name: "datapath_outside_shared_ip",
            obj: pool(
                "c4",
                shared(json!({"mode": "Exclusive", "datapath": "IPVlan"})),
            ),
            message: "datapath only applies to mode SharedIP",
        },
        Case {
            name: "prefix_delegation_outside_shared_ip",
            obj: pool(
                "c5",
                shared(
                    json!({"mode": "Trunk", "securityGroups": ["sg-01"], "prefixDelegation": true}),
                ),
            ),
            message: "prefixDelegation only applies to mode SharedIP",
        },
        Case {
            name: "address_targets_in_exclusive",
            obj: pool(
                "c6",
                shared(json!({"mode": "Exclusive", "warm": {"warmIPs": 3}})),
            ),
            message: "only apply to mode SharedIP",
        },
        Case {
            name: "sticky_ips_outside_shared_ip",
            obj: pool(
                "c7",
                shared(
                    json!({"mode": "Exclusive", "stickyIPForStatefulSets": {"releaseAfter": "5m"}}),
                ),
            ),
            message: "stickyIPForStatefulSets only applies to mode SharedIP",
        },
        Case {
            name: "trunk_without_security_groups",
            obj: pool("c8", shared(json!({"mode": "Trunk"}))),
            message: "mode Trunk needs at least one security group",
        },
        Case {
            name: "no_subnets",
            obj: pool("c9", shared(json!({"subnets": {"policy": "Ordered"}}))),
            message: "at least one subnet is required",
        },
        Case {
            name: "malformed_subnet_id",
            obj: pool("c10", shared(json!({"subnets": {"ids": ["my-subnet"]}}))),
            message: "subnets.ids must be subnet ids like subnet-",
        },
        Case {
            name: "malformed_security_group",
            obj: pool("c11", shared(json!({"securityGroups": ["default"]}))),
            message: "securityGroups must be ids like sg-",
        },
        Case {
            name: "malformed_cooldown",
            obj: pool("c12", shared(json!({"ipCooldown": "soon"}))),
            message: "ipCooldown must be a duration",
        },
        Case {
            name: "unknown_mode",
            obj: pool("c13", shared(json!({"mode": "Overlay"}))),
            message: "Unsupported value: \"Overlay\"",
        },
        Case {
            name: "priority_out_of_range",
            obj: pool("c14", shared(json!({"priority": 5000}))),
            message: "should be less than or equal to 1000",
        },
        Case {
            name: "reserved_tag_prefix",
            obj: pool(
                "c15",
                shared(json!({"tags": {"eni-operator.io/cluster": "x"}})),
            ),
            message: "reserved prefix eni-operator.io/",
        },
        Case {
            name: "ipvlan_with_prefix_delegation",
            obj: pool(
                "c16",
                shared(json!({"datapath": "IPVlan", "prefixDelegation": true})),
            ),
            message: "prefixDelegation is not supported with datapath IPVlan",
        },
        Case {
            name: "missing_node_selector",
            obj: pool(
                "c17",
                json!({"mode": "SharedIP", "subnets": {"ids": ["subnet-0a1"]}}),
            ),
            message: "spec.nodeSelector: Required value",
        },
        Case {
            name: "selector_unknown_operator",
            obj: pool(
                "c21",
                shared(
                    json!({"nodeSelector": {"matchExpressions": [{"key": "pool", "operator": "in", "values": ["a"]}]}}),
                ),
            ),
            message: "Unsupported value: \"in\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
        },
        Case {
            name: "selector_in_without_values",
            obj: pool(
                "c22",
                shared(
                    json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
                ),
            ),
            message: "In and NotIn need at least one value; Exists and DoesNotExist take none",
        },
        Case {
            name: "selector_exists_with_values",
            obj: pool(
                "c23",
                shared(
                    json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["x"]}]}}),
                ),
            ),
            message: "In and NotIn need at least one value; Exists and DoesNotExist take none",
        },
        Case {
            name: "selector_bad_key",
            obj: pool(
                "c24",
                shared(json!({"nodeSelector": {"matchLabels": {"pool name": "a"}}})),
            ),
            message: "matchLabels: label keys are a name of up to 63",
        },
        Case {
            name: "selector_bad_value",
            obj: pool(
                "c25",
                shared(
                    json!({"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["-a"]}]}}),
                ),
            ),
            message: "matchExpressions[].values: label values are empty or up to 63",
        },
        Case {
            name: "selector_bad_expression_key",
            obj: pool(
                "c26",
                shared(
                    json!({"podSelector": {"matchExpressions": [{"key": "/app", "operator": "Exists"}]}}),
                ),
            ),
            message: "matchExpressions[].key: label keys are a name of up to 63",
        },
        Case {
            name: "selector_missing_operator",
            obj: pool(
                "c27",
                shared(json!({"nodeSelector": {"matchExpressions": [{"key": "zone"}]}})),
            ),
            message: "operator: Required value",
        },
        Case {
            name: "cooldown_too_long",
            obj: pool("c28", shared(json!({"ipCooldown": "2h"}))),
            message: "ipCooldown must be a duration such as 30s, 2m or 1h, at most 1h",
        },
        Case {
            name: "release_delay_too_long",
            obj: pool("c29", shared(json!({"warm": {"releaseDelay": "25h"}}))),
            message: "releaseDelay must be a duration such as 30s, 5m or 1h, at most 24h",
        },
        Case {
            name: "release_delay_huge_number",
            obj: pool(
                "c30",
                shared(json!({"warm": {"releaseDelay": "9999999999h"}})),
            ),
            message: "releaseDelay must be a duration",
        },
        Case {
            name: "sticky_release_after_too_long",
            obj: pool(
                "c31",
                shared(json!({"stickyIPForStatefulSets": {"releaseAfter": "200h"}})),
            ),
            message: "releaseAfter must be a duration such as 10m or 1h, at most 168h",
        },
        Case {
            name: "duplicate_security_group",
            obj: pool("c32", shared(json!({"securityGroups": ["sg-01", "sg-01"]}))),
            message: "Duplicate value: \"sg-01\"",
        },
        Case {
            name: "duplicate_subnet",
            obj: pool(
                "c33",
                shared(json!({"subnets": {"ids": ["subnet-0a1", "subnet-0a1"]}})),
            ),
            message: "Duplicate value: \"subnet-0a1\"",
        },
        Case {
            name: "aws_tag_prefix",
            obj: pool("c34", shared(json!({"tags": {"aws:owner": "me"}}))),
            message: "must not start with aws:",
        },
        Case {
            name: "unknown_subnet_policy",
            obj: pool(
                "c35",
                shared(json!({"subnets": {"ids": ["subnet-0a1"], "policy": "Random"}})),
            ),
            message: "Unsupported value: \"Random\"",
        },
        Case {
            name: "trunk_podnetwork_without_vlan",
            obj: pn("c18", "Trunk", allocation()),
            message: "a Trunk allocation needs allocation.vlanID",
        },
        Case {
            name: "podnetwork_bad_address",
            obj: pn("c19", "SharedIP", bad_addr),
            message: "address must be an IPv4 address",
        },
        Case {
            name: "podnetwork_bad_mac",
            obj: pn("c20", "SharedIP", bad_mac),
            message: "eniMAC must be a lower-case MAC",
        },
        Case {
            name: "trunkeni_bad_instance",
            obj: json!({"apiVersion": "eni-operator.io/v1alpha1", "kind": "TrunkENI", "metadata": {"name": "n1"}, "spec": {"nodeName": "n1", "instanceID": "vm-1", "pool": "p"}}),
            message: "instanceID must be an instance id",
        },
    ]
}

async fn refused(fx: &Fixture, case: Case) -> Result<(), Failed> {
    let client = client(fx).await?;
    match create(&client, &case.obj).await {
        Ok(_) => Err(format!("{} was accepted", case.name).into()),
        Err(kube::Error::Api(status)) => {
            if status.code != 422 || !status.message.contains(case.message) {
                return Err(format!(
                    "want 422 with {:?}, got {}: {}",
                    case.message, status.code, status.message
                )
                .into());
            }
            // Nothing was stored.
            let name = case.obj["metadata"]["name"].as_str().unwrap_or_default();
            if api_for(client, &case.obj).get_opt(name).await?.is_some() {
                return Err(format!("{name} exists after refusal").into());
            }
            Ok(())
        }
        Err(e) => Err(format!("unexpected error: {e}").into()),
    }
}

async fn update_refused(
    client: Client,
    obj: Value,
    change: impl FnOnce(&mut Value),
    message: &str,
) -> Result<(), Failed> {
    let created = create(&client, &obj).await?;
    let mut v = serde_json::to_value(&created)?;
    change(&mut v);
    let updated: DynamicObject = serde_json::from_value(v)?;
    let name = created.metadata.name.clone().unwrap_or_default();
    match api_for(client, &obj)
        .replace(&name, &PostParams::default(), &updated)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(message) => Ok(()),
        other => Err(format!("want 422 with {message:?}, got {other:?}").into()),
    }
}

async fn immutable_mode(fx: Fixture) -> Result<(), Failed> {
    let client = client(&fx).await?;
    update_refused(
        client,
        pool("immutable-mode", shared(json!({}))),
        |v| v["spec"]["mode"] = json!("Exclusive"),
        "mode is immutable",
    )
    .await
}

async fn immutable_pod_uid(fx: Fixture) -> Result<(), Failed> {
    let client = client(&fx).await?;
    let obj = podnetwork(
        "immutable-uid",
        json!({"podUID": "u-1", "nodeName": "n1", "pool": "p", "mode": "SharedIP", "allocation": allocation()}),
    );
    update_refused(
        client,
        obj,
        |v| v["spec"]["podUID"] = json!("u-2"),
        "podUID is immutable",
    )
    .await
}
