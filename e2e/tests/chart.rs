//! The Helm chart: it lints, renders with default and custom values, its values schema
//! refuses bad values, its alerts and dashboard read only metrics the binaries export,
//! a real kube-apiserver accepts every object it renders (with the Prometheus
//! operator's CRDs for the monitoring objects), and against that API server it installs,
//! its RBAC grants exactly what each component needs, the node-scope admission policy
//! denies agents writing other nodes' PodNetworks, and uninstalling leaves no
//! cluster-wide RBAC behind.
//!
//! helm comes from `e2e/setup.sh` (go-installed into the cache's bin directory).

#[path = "chart/metric_names.rs"]
mod metric_names;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use eni_e2e::{
    ControlPlane, binaries,
    identities::{self, Who, admission_not_synced},
};
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Namespace, Node, Pod, Secret},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchParams},
    core::{ApiResource, GroupVersionKind},
    discovery::{self, Scope},
};
use serde::Deserialize;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAMESPACE: &str = "eni-system";
const RELEASE: &str = "eni-operator";
const POLICY_MESSAGE: &str = "eni-agent may only write PodNetworks of its own node";
const NODE_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The chart of the checkout this test was compiled from. (Not `eni_e2e::repo_root()`:
/// the library may come from another checkout that shares the target directory.)
fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/eni-operator")
}

/// Runs helm with its config, cache and data in `home`, so that tests share no state
/// with each other or with the user's helm.
fn helm(home: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> Result<Output, String> {
    let mut cmd = Command::new(binaries::helm().map_err(|e| e.to_string())?);
    cmd.args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output().map_err(|e| format!("running helm: {e}"))
}

/// helm that must succeed; returns its stdout.
fn helm_ok(home: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let out = helm(home, kubeconfig, args)?;
    if !out.status.success() {
        return Err(format!(
            "helm {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `helm template` of the chart, as (kind, name) -> object.
fn render(home: &Path, extra: &[&str]) -> Result<BTreeMap<(String, String), Value>, String> {
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let mut args = vec!["template", RELEASE, &chart, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    let text = helm_ok(home, None, &args)?;
    let mut objects = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).map_err(|e| format!("rendered YAML: {e}"))?;
        if v.is_null() {
            continue;
        }
        let kind = v["kind"].as_str().unwrap_or_default().to_owned();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if objects.insert((kind.clone(), name.clone()), v).is_some() {
            return Err(format!("{kind} {name} rendered twice"));
        }
    }
    Ok(objects)
}

fn get<'a>(
    objects: &'a BTreeMap<(String, String), Value>,
    kind: &str,
    name: &str,
) -> Result<&'a Value, String> {
    objects
        .get(&(kind.to_owned(), name.to_owned()))
        .ok_or_else(|| format!("no {kind} {name} rendered; have {:?}", objects.keys()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Values turning on every optional part of the chart.
const EVERYTHING: &str = r#"
apiServer: {host: 10.0.0.10, port: 6443}
operator:
  replicas: 3
  podDisruptionBudget: {enabled: true, minAvailable: 2}
agent:
  cni: {overwriteChainedPlugins: true}
metrics:
  serviceMonitor:
    enabled: true
    interval: 15s
    scrapeTimeout: 5s
    labels: {release: kube-prometheus-stack}
  prometheusRule:
    enabled: true
    labels: {release: kube-prometheus-stack}
    allocationLatencyP99Seconds: 4
    throttledRatio: 0.1
  dashboard:
    enabled: true
    namespace: monitoring
    labels: {grafana_dashboard: "1", team: net}
    annotations: {grafana_folder: Networking}
"#;

/// `-f <file>` arguments of a values file with `text` in `home`.
fn values_file(home: &Path, text: &str) -> Result<Vec<String>, std::io::Error> {
    let path = home.join("values-everything.yaml");
    std::fs::write(&path, text)?;
    Ok(vec!["-f".into(), path.to_string_lossy().into_owned()])
}

fn str_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn kinds_of(objects: &BTreeMap<(String, String), Value>) -> BTreeSet<&str> {
    objects.keys().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn helm_lint_passes() -> TestResult {
    let home = tempfile::tempdir()?;
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let out = helm_ok(home.path(), None, &["lint", "--strict", &chart])?;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let everything = values_file(home.path(), EVERYTHING)?;
    let mut args = vec!["lint", "--strict", &chart];
    args.extend(str_args(&everything));
    let out = helm_ok(home.path(), None, &args)?;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    Ok(())
}

#[test]
fn renders_with_default_values() -> TestResult {
    let home = tempfile::tempdir()?;
    let objs = render(home.path(), &[])?;

    let kinds: Vec<&str> = objs.keys().map(|(k, _)| k.as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
        "Service",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    // Optional monitoring objects are off by default (their CRDs may not exist).
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!kinds.contains(&kind), "{kind} rendered by default");
    }
    get(&objs, "ServiceAccount", "eni-operator")?;
    get(&objs, "ServiceAccount", "eni-agent")?;
    for ((kind, name), obj) in &objs {
        let cluster_scoped = kind.starts_with("Cluster")
            || kind.starts_with("ValidatingAdmission")
            || kind.starts_with("MutatingAdmission");
        let ns = obj["metadata"]["namespace"].as_str();
        if cluster_scoped {
            assert_eq!(ns, None, "{kind} {name}");
        } else {
            assert_eq!(
                ns,
                Some(NAMESPACE),
                "{kind} {name} not in the release namespace"
            );
        }
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE,
            "{kind} {name} lacks the release label"
        );
    }

    let deploy = get(&objs, "Deployment", "eni-operator-operator")?;
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "eni-operator");
    let op = &pod["containers"][0];
    let args = strings(&op["args"]);
    for want in [
        "--cluster-name=eni-operator",
        "--qps=10",
        "--burst=20",
        "--metrics-addr=0.0.0.0:9960",
        "--lease-namespace=eni-system",
        "--lease-name=eni-operator",
        "--lease-duration=15",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    // No endpoint override and no static credentials unless asked for.
    assert!(
        !args.iter().any(|a| a.starts_with("--ec2-endpoint")),
        "{args:?}"
    );
    assert!(op.get("envFrom").is_none(), "{op}");
    assert_eq!(op["livenessProbe"]["httpGet"]["path"], "/healthz");
    // /readyz means "leading"; standbys must count as ready (see the template).
    assert_eq!(op["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(op["resources"]["requests"]["cpu"], "100m");
    assert_eq!(op["resources"]["limits"]["memory"], "512Mi");
    // The kubelet's service env is left alone unless apiServer is set.
    assert!(!env_of(op).contains_key("KUBERNETES_SERVICE_HOST"), "{op}");
    // Two replicas: one may go at a time.
    let pdb = get(&objs, "PodDisruptionBudget", "eni-operator-operator")?;
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    // Metrics Services select the pods and name the port `metrics`.
    for (component, port, headless) in [("operator", 9960, false), ("agent", 9961, true)] {
        let svc = get(
            &objs,
            "Service",
            &format!("eni-operator-{component}-metrics"),
        )?;
        assert_eq!(
            svc["spec"]["selector"]["app.kubernetes.io/component"],
            component
        );
        assert_eq!(
            svc["metadata"]["labels"]["app.kubernetes.io/component"],
            component
        );
        assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
        assert_eq!(svc["spec"]["ports"][0]["port"], port);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
        assert_eq!(svc["spec"]["clusterIP"] == "None", headless, "{svc}");
    }

    let ds = get(&objs, "DaemonSet", "eni-operator-agent")?;
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], "eni-agent");
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    let init = &pod["initContainers"][0];
    let cmd = strings(&init["command"]).join(" ");
    assert!(
        cmd.starts_with(
            "eni-cni install --bin-dir /host/opt/cni/bin --conf-dir /host/etc/cni/net.d"
        ),
        "{cmd}"
    );
    assert!(
        cmd.contains("--socket-path /run/eni-operator/agent.sock"),
        "{cmd}"
    );
    // portmap is chained by default, from the image when a node lacks it; the agent
    // enforces the bandwidth annotations (eni-cni takes the capability).
    assert!(
        cmd.ends_with("--portmap --bandwidth agent --chained-plugins-dir /usr/lib/cni"),
        "{cmd}"
    );
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    let agent = &pod["containers"][0];
    assert_eq!(agent["resources"]["requests"]["memory"], "64Mi");
    assert_eq!(agent["resources"]["limits"]["memory"], "256Mi");
    assert!(
        !env_of(agent).contains_key("KUBERNETES_SERVICE_PORT"),
        "{agent}"
    );
    assert_eq!(agent["securityContext"]["privileged"], true);
    let caps = strings(&agent["securityContext"]["capabilities"]["add"]);
    assert!(caps.contains(&"NET_ADMIN".into()) && caps.contains(&"SYS_ADMIN".into()));
    let env = env_of(agent);
    assert_eq!(
        env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        env["ENI_AGENT_SOCKET"]["value"],
        "/run/eni-operator/agent.sock"
    );
    assert_eq!(env["ENI_AGENT_METRICS_ADDR"]["value"], "0.0.0.0:9961");
    let mounts: Vec<&str> = agent["volumeMounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["mountPath"].as_str()).collect())
        .unwrap_or_default();
    for want in ["/var/run/netns", "/run/eni-operator"] {
        assert!(mounts.contains(&want), "{want} not mounted: {mounts:?}");
    }

    let policy = get(
        &objs,
        "ValidatingAdmissionPolicy",
        "eni-operator-agent-node-scope",
    )?;
    let matcher = policy["spec"]["matchConditions"][0]["expression"]
        .as_str()
        .unwrap_or_default();
    assert!(
        matcher.contains("'system:serviceaccount:eni-system:eni-agent'"),
        "{matcher}"
    );
    Ok(())
}

#[test]
fn renders_with_custom_values() -> TestResult {
    let home = tempfile::tempdir()?;
    let values = home.path().join("values.yaml");
    std::fs::write(
        &values,
        r#"
clusterName: prod-eu-1
images:
  operator: {repository: registry.example.com/eni/operator, tag: "1.2.3"}
  agent: {repository: registry.example.com/eni/agent, tag: "1.2.3", pullPolicy: Always}
logLevel: debug
logFormat: json
cloud:
  region: eu-west-1
  endpoint: https://ec2.eu-west-1.amazonaws.com
  credentialsSecret: eni-cloud-credentials
  qps: 25
  burst: 50
apiServer: {host: api.cluster.internal, port: 6443}
serviceAccounts:
  operator:
    name: eni-operator
    annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/eni"}
operator:
  replicas: 3
  leaderElection: {leaseName: eni-leader, leaseDurationSeconds: 30}
  hostNetwork: false
  metricsPort: 8080
  nodeSelector: {node-role.kubernetes.io/control-plane: ""}
  tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
  podDisruptionBudget: {enabled: false}
agent:
  socketPath: /var/run/eni/agent.sock
  cni:
    binDir: /usr/libexec/cni
    confDir: /etc/cni/conf.d
    portmap: true
    bandwidth: none
    chainedPluginsDir: /opt/eni/plugins
    overwriteChainedPlugins: true
    agentTimeoutSeconds: 45
  allocationTimeoutSeconds: 20
  serviceCIDRs: [10.100.0.0/16, 172.20.0.0/16]
  metricsPort: 19961
nodeScopePolicy: {enabled: false}
metrics: {service: {enabled: false}}
"#,
    )?;
    let objs = render(home.path(), &["-f", &values.to_string_lossy()])?;

    let deploy = get(&objs, "Deployment", "eni-operator-operator")?;
    assert_eq!(deploy["spec"]["replicas"], 3);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], false);
    assert_eq!(
        pod["nodeSelector"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    let op = &pod["containers"][0];
    assert_eq!(op["image"], "registry.example.com/eni/operator:1.2.3");
    let args = strings(&op["args"]);
    for want in [
        "--cluster-name=prod-eu-1",
        "--region=eu-west-1",
        "--ec2-endpoint=https://ec2.eu-west-1.amazonaws.com",
        "--qps=25",
        "--burst=50",
        "--metrics-addr=0.0.0.0:8080",
        "--lease-name=eni-leader",
        "--lease-duration=30",
        "--log-json",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    assert_eq!(
        op["envFrom"][0]["secretRef"]["name"],
        "eni-cloud-credentials"
    );
    assert_eq!(env_of(op)["RUST_LOG"]["value"], "debug");
    assert_eq!(
        get(&objs, "ServiceAccount", "eni-operator")?["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/eni"
    );
    // The Role follows the lease name: the operator may touch its own lease only.
    let role = get(&objs, "Role", "eni-operator-operator-leader-election")?;
    assert!(
        role["rules"].to_string().contains("\"eni-leader\""),
        "{role}"
    );

    let ds = get(&objs, "DaemonSet", "eni-operator-agent")?;
    let pod = &ds["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(init["image"], "registry.example.com/eni/agent:1.2.3");
    assert_eq!(init["imagePullPolicy"], "Always");
    let cmd = strings(&init["command"]).join(" ");
    for want in [
        "--bin-dir /host/usr/libexec/cni",
        "--conf-dir /host/etc/cni/conf.d",
        "--socket-path /var/run/eni/agent.sock",
        "--agent-timeout-seconds 45",
        "--portmap",
        "--chained-plugins-dir /opt/eni/plugins --overwrite-chained",
    ] {
        assert!(cmd.contains(want), "{want} not in {cmd}");
    }
    assert!(cmd.contains("--bandwidth none"), "{cmd}");
    let env = env_of(&pod["containers"][0]);
    assert_eq!(env["SERVICE_CIDRS"]["value"], "10.100.0.0/16,172.20.0.0/16");
    assert_eq!(env["ENI_AGENT_ALLOCATION_TIMEOUT"]["value"], "20");
    assert_eq!(env["ENI_AGENT_LOG_JSON"]["value"], "true");
    let volumes = pod["volumes"].to_string();
    assert!(volumes.contains("\"/var/run/eni\""), "{volumes}");
    assert!(volumes.contains("\"/usr/libexec/cni\""), "{volumes}");

    // Explicit env wins over the kubelet's service env, in both components.
    for container in [op, &pod["containers"][0]] {
        let env = env_of(container);
        assert_eq!(
            env["KUBERNETES_SERVICE_HOST"]["value"],
            "api.cluster.internal"
        );
        assert_eq!(env["KUBERNETES_SERVICE_PORT"]["value"], "6443");
    }

    for kind in [
        "PodDisruptionBudget",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "Service",
    ] {
        assert!(
            !objs.keys().any(|(k, _)| k == kind),
            "{kind} rendered though disabled"
        );
    }
    Ok(())
}

/// On Alibaba Cloud the operator gets the ECS provider, its region, endpoint and the
/// credentials Secret; the agents get no credentials.
#[test]
fn renders_for_alibaba_cloud() -> TestResult {
    let home = tempfile::tempdir()?;
    let objs = render(
        home.path(),
        &[
            "--set",
            "cloud.provider=alibaba",
            "--set",
            "cloud.region=cn-hangzhou",
            "--set",
            "cloud.endpoint=https://ecs-vpc.cn-hangzhou.aliyuncs.com",
            "--set",
            "cloud.credentialsSecret=alibaba-ak",
        ],
    )?;
    let deploy = get(&objs, "Deployment", "eni-operator-operator")?;
    let op = &deploy["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&op["args"]);
    for want in [
        "--cloud=alibaba",
        "--region=cn-hangzhou",
        "--ecs-endpoint=https://ecs-vpc.cn-hangzhou.aliyuncs.com",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--ec2-endpoint")),
        "{args:?}"
    );
    assert_eq!(op["envFrom"][0]["secretRef"]["name"], "alibaba-ak");
    let ds = get(&objs, "DaemonSet", "eni-operator-agent")?;
    let text = ds.to_string();
    assert!(
        !text.contains("alibaba-ak") && !text.contains("secretRef"),
        "the agents must hold no cloud credentials: {ds}"
    );
    Ok(())
}

#[test]
fn refuses_bad_values() -> TestResult {
    let home = tempfile::tempdir()?;
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let cases: [(&[&str], &[&str]); 21] = [
        (
            &["--kube-version", "1.29.0"],
            &["requires kubeVersion: >=1.30.0-0"],
        ),
        (
            &["--set", "agent.egress.vpcCIDRs=null"],
            &["agent.egress.vpcCIDRs must list the VPC's CIDRs while externalSNAT is false"],
        ),
        (
            &["--set", "agent.egress.excludeSNATCIDRs={10.0.0.0}"],
            &["/agent/egress/excludeSNATCIDRs/0"],
        ),
        (
            &["--set", "cloud.qps=-5"],
            &["/cloud/qps", "minimum: got -5, want 1"],
        ),
        (&["--set", "cloud.burst=0"], &["/cloud/burst", "minimum"]),
        (&["--set", "cloud.qpss=3"], &["'qpss' not allowed"]),
        (
            &["--set", "cloud.actionQps=12"],
            &["cloud.actionQps and cloud.actionBurst are set together, or neither"],
        ),
        (
            &["--set", "cloud.actionQps=0", "--set", "cloud.actionBurst=1"],
            &["/cloud/actionQps"],
        ),
        (&["--set", "logLevel=verbose"], &["/logLevel"]),
        (
            &["--set", "agent.socketPath=run/agent.sock"],
            &["/agent/socketPath"],
        ),
        (
            &["--set", "operator.leaderElection.leaseDurationSeconds=1"],
            &["/operator/leaderElection/leaseDurationSeconds", "minimum"],
        ),
        (
            &["--set", "agent.cni.agentTimeoutSeconds=5"],
            &["agent.cni.agentTimeoutSeconds (5) must exceed agent.allocationTimeoutSeconds (10)"],
        ),
        (
            &["--set", "apiServer.host=10.0.0.10"],
            &["apiServer.host (\"10.0.0.10\") and apiServer.port (\"\") must be set together"],
        ),
        (&["--set", "apiServer.port=6443"], &["must be set together"]),
        (&["--set", "apiServer.port=70000"], &["/apiServer/port"]),
        (
            &["--set", "operator.podDisruptionBudget.minAvailable=2"],
            &["operator.podDisruptionBudget.minAvailable (2) must be below operator.replicas (2)"],
        ),
        (
            &[
                "--set",
                "metrics.service.enabled=false",
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ],
            &["metrics.serviceMonitor.enabled needs metrics.service.enabled"],
        ),
        // The boolean of earlier releases: the message names the choices.
        (
            &["--set", "agent.cni.bandwidth=true"],
            &["/agent/cni/bandwidth", "agent", "chained-plugin", "none"],
        ),
        (
            &["--set", "metrics.prometheusRule.throttledRatio=2"],
            &["/metrics/prometheusRule/throttledRatio", "maximum"],
        ),
        (
            &["--set", "cloud.provider=gcp"],
            &["/cloud/provider", "aws", "alibaba"],
        ),
        (
            &[
                "--set",
                "cloud.provider=alibaba",
                "--set",
                "cloud.region=cn-hangzhou",
            ],
            &[
                "cloud.provider=alibaba needs cloud.credentialsSecret",
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
            ],
        ),
    ];
    for (set, wants) in cases {
        let mut args = vec!["template", RELEASE, &chart];
        args.extend_from_slice(set);
        let out = helm(home.path(), None, &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set:?} was accepted");
        for want in wants {
            assert!(stderr.contains(want), "{set:?}: {want:?} not in:\n{stderr}");
        }
    }
    Ok(())
}

#[test]
fn single_replica_gets_no_disruption_budget() -> TestResult {
    let home = tempfile::tempdir()?;
    // minAvailable 1 of 1 would block every drain of the node the operator runs on.
    let objs = render(home.path(), &["--set", "operator.replicas=1"])?;
    assert!(
        !kinds_of(&objs).contains("PodDisruptionBudget"),
        "{:?}",
        kinds_of(&objs)
    );
    Ok(())
}

#[test]
fn renders_monitoring_when_enabled() -> TestResult {
    let home = tempfile::tempdir()?;
    let everything = values_file(home.path(), EVERYTHING)?;
    let objs = render(home.path(), &str_args(&everything))?;

    for component in ["operator", "agent"] {
        let name = format!("eni-operator-{component}-metrics");
        let svc = get(&objs, "Service", &name)?;
        let monitor = get(&objs, "ServiceMonitor", &name)?;
        assert_eq!(monitor["metadata"]["namespace"], NAMESPACE);
        assert_eq!(
            monitor["metadata"]["labels"]["release"],
            "kube-prometheus-stack"
        );
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"],
            json!([NAMESPACE])
        );
        // The monitor selects its Service: every selector label is on the Service.
        let selector = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .ok_or("ServiceMonitor without matchLabels")?;
        for (k, v) in selector {
            assert_eq!(&svc["metadata"]["labels"][k], v, "{name}: label {k}");
        }
        let endpoint = &monitor["spec"]["endpoints"][0];
        assert_eq!(endpoint["port"], "metrics");
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(endpoint["interval"], "15s");
        assert_eq!(endpoint["scrapeTimeout"], "5s");
    }
    // Only the agent's series get a node label: the operator's own node_enis has one.
    let agent_monitor = get(&objs, "ServiceMonitor", "eni-operator-agent-metrics")?;
    assert_eq!(
        agent_monitor["spec"]["endpoints"][0]["relabelings"][0]["targetLabel"],
        "node"
    );
    let operator_monitor = get(&objs, "ServiceMonitor", "eni-operator-operator-metrics")?;
    assert!(operator_monitor["spec"]["endpoints"][0]["relabelings"].is_null());

    let rule = get(&objs, "PrometheusRule", "eni-operator")?;
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let rules = &rule["spec"]["groups"][0]["rules"];
    let alerts: BTreeMap<&str, &Value> = rules
        .as_array()
        .ok_or("no rules")?
        .iter()
        .filter_map(|r| Some((r["alert"].as_str()?, r)))
        .collect();
    for alert in [
        "EniOperatorDown",
        "EniAgentDown",
        "EniAgentNotReady",
        "EniAgentWiringErrors",
        "EniPoolExhausted",
        "EniPoolCannotGrow",
        "EniCloudApiThrottled",
        "EniAllocationLatencyHigh",
        "EniLeakedEnisCollected",
    ] {
        let r = alerts.get(alert).ok_or(format!("no alert {alert}"))?;
        assert!(r["labels"]["severity"].is_string(), "{alert}: no severity");
        assert!(
            r["annotations"]["summary"].is_string(),
            "{alert}: no summary"
        );
        assert!(
            r["annotations"]["description"].is_string(),
            "{alert}: no description"
        );
    }
    // Thresholds and job names come from the values and the Services.
    let expr = |a: &str| alerts[a]["expr"].as_str().unwrap_or_default().to_owned();
    assert!(
        expr("EniAllocationLatencyHigh").ends_with("> 4"),
        "{}",
        expr("EniAllocationLatencyHigh")
    );
    assert!(
        expr("EniCloudApiThrottled").ends_with("> 0.1"),
        "{}",
        expr("EniCloudApiThrottled")
    );
    assert!(
        expr("EniAgentDown")
            .contains(r#"job="eni-operator-agent-metrics", namespace="eni-system""#),
        "{}",
        expr("EniAgentDown")
    );
    // Prometheus' own templates survive Helm's.
    assert!(
        alerts["EniAgentDown"]["annotations"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("{{ $labels.node }}")
    );

    let dashboard = get(&objs, "ConfigMap", "eni-operator-dashboard")?;
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["labels"]["team"], "net");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "Networking"
    );
    let json: Value = serde_json::from_str(
        dashboard["data"]["eni-operator.json"]
            .as_str()
            .ok_or("dashboard ConfigMap without eni-operator.json")?,
    )?;
    assert_eq!(json["uid"], "eni-operator");

    let pdb = get(&objs, "PodDisruptionBudget", "eni-operator-operator")?;
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    let ds = get(&objs, "DaemonSet", "eni-operator-agent")?;
    let cmd = strings(&ds["spec"]["template"]["spec"]["initContainers"][0]["command"]).join(" ");
    assert!(
        cmd.ends_with("--chained-plugins-dir /usr/lib/cni --overwrite-chained"),
        "{cmd}"
    );
    Ok(())
}

/// Every PromQL query of the chart, as (where, query): alert expressions and dashboard
/// targets (Grafana's `$__rate_interval` replaced by a range, as Grafana does).
fn chart_queries(
    objs: &BTreeMap<(String, String), Value>,
) -> Result<Vec<(String, String)>, String> {
    let mut queries = Vec::new();
    let rule = get(objs, "PrometheusRule", "eni-operator")?;
    for group in rule["spec"]["groups"].as_array().into_iter().flatten() {
        for r in group["rules"].as_array().into_iter().flatten() {
            let expr = r["expr"]
                .as_str()
                .ok_or(format!("rule without expr: {r}"))?;
            queries.push((format!("alert {}", r["alert"]), expr.to_owned()));
        }
    }
    let cm = get(objs, "ConfigMap", "eni-operator-dashboard")?;
    let dashboard: Value =
        serde_json::from_str(cm["data"]["eni-operator.json"].as_str().unwrap_or_default())
            .map_err(|e| format!("dashboard JSON: {e}"))?;
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .ok_or(format!("panel {} target without expr", panel["title"]))?;
            queries.push((
                format!("panel {}", panel["title"]),
                expr.replace("$__rate_interval", "5m"),
            ));
        }
    }
    Ok(queries)
}

/// `up` is the one series no binary exports: Prometheus writes it for every scrape, and
/// a component that is down exports nothing to alert on.
const SCRAPE_SERIES: &str = "up";

#[test]
fn alerts_and_dashboard_read_only_exported_metrics() -> TestResult {
    let exported = metric_names::exported_series()?;
    let home = tempfile::tempdir()?;
    let objs = render(
        home.path(),
        &[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.dashboard.enabled=true",
        ],
    )?;
    let queries = chart_queries(&objs)?;
    let alerts = queries
        .iter()
        .filter(|(w, _)| w.starts_with("alert"))
        .count();
    let panels = queries
        .iter()
        .filter(|(w, _)| w.starts_with("panel"))
        .count();
    assert!(
        alerts >= 9 && panels >= 15,
        "{alerts} alerts, {panels} panel queries"
    );

    let mut unknown = Vec::new();
    let mut read_by_dashboard = BTreeSet::new();
    for (place, query) in &queries {
        let names = metric_names::metric_names(query).map_err(|e| format!("{place}: {e}"))?;
        assert!(!names.is_empty(), "{place} reads no metric: {query}");
        for name in names {
            if name != SCRAPE_SERIES && !exported.contains(&name) {
                unknown.push(format!("{place}: {name}"));
            }
            if place.starts_with("panel") {
                read_by_dashboard.insert(name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not exported by eni-operator or eni-agent:\n{}\nexported: {exported:?}",
        unknown.join("\n")
    );
    // The panels platform teams ask for: allocations and their latency, cloud calls and
    // throttles, ENIs and free addresses per pool, CNI requests, reconcile errors.
    for name in [
        "eni_operator_allocations_total",
        "eni_operator_allocation_seconds_bucket",
        "eni_operator_cloud_requests_total",
        "eni_operator_pool_enis",
        "eni_operator_units",
        "eni_agent_cni_requests_total",
        "eni_operator_reconciles_total",
    ] {
        assert!(read_by_dashboard.contains(name), "no panel reads {name}");
    }
    Ok(())
}

/// The Prometheus operator's CRDs, from its Go module: the version whose ServiceMonitor
/// and PrometheusRule schemas the chart is checked against.
const PROMETHEUS_OPERATOR_MODULE: &str =
    "github.com/prometheus-operator/prometheus-operator@v0.85.0";

/// ServiceMonitor and PrometheusRule CRDs, fetched through the Go module proxy (the
/// test bed needs Go for the Kubernetes binaries anyway; the module cache keeps them).
fn monitoring_crds() -> Result<Vec<CustomResourceDefinition>, String> {
    // Outside any module, so that `go` does not look for a go.mod.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new("go")
        .args(["mod", "download", "-json", PROMETHEUS_OPERATOR_MODULE])
        .current_dir(dir.path())
        .output()
        .map_err(|e| format!("running go: {e}"))?;
    let info: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "go mod download: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(error) = info["Error"].as_str() {
        return Err(format!(
            "go mod download {PROMETHEUS_OPERATOR_MODULE}: {error}"
        ));
    }
    let module = PathBuf::from(info["Dir"].as_str().ok_or("go mod download gave no Dir")?);
    ["servicemonitors", "prometheusrules"]
        .iter()
        .map(|plural| {
            let path = module.join(format!(
                "example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml"
            ));
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("CRD {name} not Established after 30s").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Like kubeconform, but the real thing: every object of the chart, with defaults and
/// with everything enabled, goes through a server-side dry-run apply with strict field
/// validation on kube-apiserver, the monitoring objects against the Prometheus
/// operator's own CRD schemas. An unknown field, a wrong type or a bad enum fails.
#[tokio::test]
async fn api_server_accepts_every_rendered_object() -> TestResult {
    let home = tempfile::tempdir()?;
    let monitoring = monitoring_crds()?;
    let cp = ControlPlane::start().await?;
    let admin = cp.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in &monitoring {
        crds.create(&PostParams::default(), crd).await?;
    }
    for crd in &monitoring {
        wait_established(&crds, crd.metadata.name.as_deref().unwrap_or_default()).await?;
    }
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for ns in [NAMESPACE, "monitoring"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
    }

    let everything = values_file(home.path(), EVERYTHING)?;
    let mut checked = BTreeSet::new();
    let alibaba = vec![
        "--set",
        "cloud.provider=alibaba",
        "--set",
        "cloud.region=cn-hangzhou",
        "--set",
        "cloud.credentialsSecret=alibaba-ak",
    ];
    for (label, args) in [
        ("defaults", vec![]),
        ("everything", str_args(&everything)),
        ("alibaba", alibaba),
    ] {
        let objs = render(home.path(), &args)?;
        for ((kind, name), obj) in &objs {
            let api_version = obj["apiVersion"].as_str().unwrap_or_default();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (resource, caps) = discovery::pinned_kind(&admin, &gvk)
                .await
                .map_err(|e| format!("{label}: {kind} {name}: no such resource: {e}"))?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let ns = obj["metadata"]["namespace"].as_str().unwrap_or(NAMESPACE);
                    Api::namespaced_with(admin.clone(), ns, &resource)
                }
                Scope::Cluster => Api::all_with(admin.clone(), &resource),
            };
            let params = PatchParams::apply("chart-test")
                .dry_run()
                .validation_strict();
            api.patch(name, &params, &Patch::Apply(obj))
                .await
                .map_err(|e| format!("{label}: the API server refuses {kind} {name}: {e}"))?;
            checked.insert(kind.clone());
        }
    }
    for kind in [
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(checked.contains(kind), "{kind} never checked: {checked:?}");
    }
    Ok(())
}

fn podnetwork_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "eni-operator.io",
        "v1alpha1",
        "PodNetwork",
    ))
}

fn podnetworks(client: Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, ns, &podnetwork_resource())
}

/// The API server loads admission policies from an informer, so a fresh install takes
/// effect a moment later; dry-run agent patches (admission runs for them too, nothing is
/// written) tell when.
async fn wait_for_policy(agent_pns: &Api<DynamicObject>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = agent_pns
            .patch_status(
                "pn-a",
                &PatchParams::default().dry_run(),
                &status_patch("Ready"),
            )
            .await;
        match r {
            Err(kube::Error::Api(s)) if s.message.contains(POLICY_MESSAGE) => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "the node-scope policy is not in force after 30s: {r:?}"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn podnetworks_all(client: Client) -> Api<DynamicObject> {
    Api::all_with(client, &podnetwork_resource())
}

fn podnetwork(name: &str, node: &str) -> Result<DynamicObject, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "eni-operator.io/v1alpha1", "kind": "PodNetwork",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "podUID": format!("uid-{name}"), "nodeName": node, "pool": "shared", "mode": "SharedIP",
            "allocation": {
                "address": "10.0.1.20", "prefixLength": 32, "gateway": "10.0.1.1",
                "subnetCIDR": "10.0.1.0/24", "subnetID": "subnet-0a1", "eniID": "eni-0abc",
                "eniMAC": "02:00:00:00:00:01", "deviceIndex": 1
            }
        }
    }))
}

fn status_patch(phase: &str) -> Patch<Value> {
    Patch::Merge(json!({"status": {"phase": phase}}))
}

/// The API error of a call that must fail.
fn api_error<T: std::fmt::Debug>(
    r: Result<T, kube::Error>,
    what: &str,
) -> Result<(u16, String), String> {
    match r {
        Ok(v) => Err(format!("{what}: expected a refusal, got {v:?}")),
        Err(kube::Error::Api(s)) => Ok((s.code, s.message)),
        Err(e) => Err(format!("{what}: expected an API error, got {e}")),
    }
}

/// An RBAC refusal (403 naming the verb), not some other failure.
fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str, verb: &str) -> TestResult {
    let (code, message) = api_error(r, what)?;
    assert_eq!(code, 403, "{what}: {message}");
    assert!(
        message.contains(&format!("cannot {verb} resource")),
        "{what}: not an RBAC refusal: {message}"
    );
    Ok(())
}

/// Status patch as the agent's user with a node in its extra info, as a pod-bound token
/// would carry it; done by the admin through impersonation (which can name any node).
async fn patch_status_as_agent_on(
    admin: &Client,
    node: &str,
    name: &str,
    phase: &str,
) -> Result<String, kube::Error> {
    let uri =
        format!("/apis/eni-operator.io/v1alpha1/namespaces/default/podnetworks/{name}/status");
    let body = serde_json::to_vec(&json!({"status": {"phase": phase}}))
        .map_err(kube::Error::SerdeError)?;
    let req = http::Request::patch(uri)
        .header("Content-Type", "application/merge-patch+json")
        .header(
            "Impersonate-User",
            format!("system:serviceaccount:{NAMESPACE}:eni-agent"),
        )
        .header("Impersonate-Group", "system:serviceaccounts")
        .header(
            format!("Impersonate-Extra-{}", NODE_EXTRA.replace('/', "%2F")),
            node,
        )
        .body(body)
        .map_err(kube::Error::HttpError)?;
    admin.request_text(req).await
}

/// A control plane with the chart installed by `helm install` (helm's home is the
/// temp dir).
async fn installed() -> Result<(tempfile::TempDir, ControlPlane), Box<dyn std::error::Error>> {
    let home = tempfile::tempdir()?;
    let cp = ControlPlane::start().await?;
    let chart = chart_dir();
    helm_ok(
        home.path(),
        Some(&cp.kubeconfig_path()),
        &[
            "install",
            RELEASE,
            &chart.to_string_lossy(),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--timeout",
            "60s",
        ],
    )
    .map_err(|e| format!("{e}\napiserver log:\n{}", cp.apiserver_log()))?;
    Ok((home, cp))
}

#[tokio::test]
async fn install_enforces_rbac_and_node_scope_then_uninstalls_cleanly() -> TestResult {
    let (home, cp) = installed().await?;
    let kubeconfig = cp.kubeconfig_path();
    let chart = chart_dir();
    let chart = chart.to_string_lossy();

    let admin = cp.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for name in [
        "enipools.eni-operator.io",
        "trunkenis.eni-operator.io",
        "podnetworks.eni-operator.io",
    ] {
        crds.get(name)
            .await
            .map_err(|e| format!("CRD {name}: {e}"))?;
    }

    // Fixtures, made by the admin: a node and a PodNetwork on it.
    let nodes: Api<Node> = Api::all(admin.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "node-a"}}))?,
        )
        .await?;
    podnetworks(admin.clone(), "default")
        .create(&PostParams::default(), &podnetwork("pn-a", "node-a")?)
        .await?;

    // The operator.
    let operator = identities::client(&cp, &admin, Who::Operator).await?;
    Api::<Pod>::all(operator.clone())
        .list(&ListParams::default())
        .await?;
    let op_nodes: Api<Node> = Api::all(operator.clone());
    op_nodes
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["eni-operator.io/cleanup"]}})),
        )
        .await?;
    let node = op_nodes
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"capacity": {"eni-operator.io/member-eni": "7"}}})),
        )
        .await?;
    let capacity = node
        .status
        .and_then(|s| s.capacity)
        .and_then(|c| c.get("eni-operator.io/member-eni").map(|q| q.0.clone()));
    assert_eq!(capacity.as_deref(), Some("7"));
    let op_pns = podnetworks(operator.clone(), "default");
    op_pns
        .create(&PostParams::default(), &podnetwork("pn-op", "node-a")?)
        .await?;
    op_pns.delete("pn-op", &DeleteParams::default()).await?;

    let leases: Api<Lease> = Api::namespaced(operator.clone(), NAMESPACE);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "eni-operator"},
        "spec": {"holderIdentity": "operator-0", "leaseDurationSeconds": 15}
    }))?;
    let mut lease = leases.create(&PostParams::default(), &lease).await?;
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("operator-1".into());
    }
    let lease = leases
        .replace("eni-operator", &PostParams::default(), &lease)
        .await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("operator-1")
    );
    // Only its own lease: someone else's is out of reach.
    let other: Lease = serde_json::from_value(json!({"metadata": {"name": "other"}}))?;
    Api::<Lease>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &other)
        .await?;
    forbidden(
        leases
            .patch(
                "other",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"holderIdentity": "x"}})),
            )
            .await,
        "operator patches another lease",
        "patch",
    )?;
    forbidden(
        Api::<Secret>::namespaced(operator.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await,
        "operator lists secrets",
        "list",
    )?;
    forbidden(
        Api::<Secret>::namespaced(operator.clone(), NAMESPACE)
            .get("anything")
            .await,
        "operator reads a secret",
        "get",
    )?;

    // The agent.
    // A token of the agent's ServiceAccount bound to no pod: RBAC applies, no node.
    let agent = identities::client(&cp, &admin, Who::UnboundAgent).await?;
    let agent_pns = podnetworks(agent.clone(), "default");
    let listed = podnetworks_all(agent.clone())
        .list(&ListParams::default())
        .await?;
    assert!(
        listed
            .items
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("pn-a"))
    );
    // A watch is refused with the response headers when RBAC says no; getting a stream
    // means it was allowed.
    let stream = podnetworks_all(agent.clone())
        .watch(&WatchParams::default().timeout(1), "0")
        .await?;
    drop(stream);
    Api::<Node>::all(agent.clone()).get("node-a").await?;
    forbidden(
        agent_pns
            .create(&PostParams::default(), &podnetwork("pn-agent", "node-a")?)
            .await,
        "agent creates a PodNetwork",
        "create",
    )?;
    forbidden(
        agent_pns.delete("pn-a", &DeleteParams::default()).await,
        "agent deletes a PodNetwork",
        "delete",
    )?;
    forbidden(
        Api::<Pod>::namespaced(agent.clone(), "default")
            .delete("some-pod", &DeleteParams::default())
            .await,
        "agent deletes a pod",
        "delete",
    )?;
    forbidden(
        Api::<Node>::all(agent.clone())
            .patch(
                "node-a",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
        "agent patches a node",
        "patch",
    )?;
    forbidden(
        Api::<Secret>::namespaced(agent.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await,
        "agent lists secrets",
        "list",
    )?;

    // The node-scope policy. A token bound to no pod carries no node: RBAC lets the
    // status patch through (authorization runs before admission), the policy refuses it.
    wait_for_policy(&agent_pns).await?;
    let (code, message) = api_error(
        agent_pns
            .patch_status("pn-a", &PatchParams::default(), &status_patch("Ready"))
            .await,
        "agent status patch without a node",
    )?;
    assert_eq!(code, 403, "{message}");
    assert!(message.contains(POLICY_MESSAGE), "{message}");
    assert!(message.contains("the request carries no node"), "{message}");
    assert!(
        message.contains("eni-operator-agent-node-scope"),
        "{message}"
    );
    // The agent of another node is refused, the agent of the PodNetwork's node is not.
    let (code, message) = api_error(
        patch_status_as_agent_on(&admin, "node-b", "pn-a", "Ready").await,
        "agent of node-b patches node-a's PodNetwork",
    )?;
    assert_eq!(code, 403, "{message}");
    assert!(message.contains(POLICY_MESSAGE), "{message}");
    assert!(message.contains("comes from node node-b"), "{message}");
    patch_status_as_agent_on(&admin, "node-a", "pn-a", "Ready").await?;
    assert_eq!(phase_of(&admin, "pn-a").await?, "Ready");
    // The same with a real token of an agent pod on node-a (the TokenRequest the kubelet
    // makes): the API server puts the pod's node into the user's extra info itself.
    let bound = identities::client(&cp, &admin, Who::Agent("node-a")).await?;
    // With that token the agent of node-a may do nothing else: no pool, no secret.
    let pool: eni_crds::ENIPool = serde_json::from_value(json!({
        "apiVersion": "eni-operator.io/v1alpha1", "kind": "ENIPool",
        "metadata": {"name": "agent-pool"},
        "spec": {"mode": "SharedIP", "nodeSelector": {}, "subnets": {"ids": ["subnet-0a1"]}},
    }))?;
    forbidden(
        Api::<eni_crds::ENIPool>::all(bound.clone())
            .create(&PostParams::default(), &pool)
            .await,
        "node-a's agent pod creates an ENIPool",
        "create",
    )?;
    forbidden(
        Api::<Secret>::namespaced(bound.clone(), NAMESPACE)
            .get("anything")
            .await,
        "node-a's agent pod reads a secret",
        "get",
    )?;
    let bound_pns = podnetworks(bound, "default");
    bound_pns
        .patch_status("pn-a", &PatchParams::default(), &status_patch("Allocated"))
        .await?;
    assert_eq!(phase_of(&admin, "pn-a").await?, "Allocated");
    podnetworks(admin.clone(), "default")
        .create(&PostParams::default(), &podnetwork("pn-b", "node-b")?)
        .await?;
    let (code, message) = api_error(
        bound_pns
            .patch_status("pn-b", &PatchParams::default(), &status_patch("Ready"))
            .await,
        "node-a's agent pod patches node-b's PodNetwork",
    )?;
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("comes from node node-a"), "{message}");
    // Other users are not the policy's business.
    podnetworks(admin.clone(), "default")
        .patch_status("pn-a", &PatchParams::default(), &status_patch("Failed"))
        .await?;
    assert_eq!(phase_of(&admin, "pn-a").await?, "Failed");

    // Upgrades re-render from values.
    helm_ok(
        home.path(),
        Some(&kubeconfig),
        &[
            "upgrade",
            RELEASE,
            &chart,
            "--namespace",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "cloud.qps=33",
        ],
    )?;
    let deploy: k8s_openapi::api::apps::v1::Deployment = Api::namespaced(admin.clone(), NAMESPACE)
        .get("eni-operator-operator")
        .await?;
    let args = deploy
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(args.contains(&"--qps=33".to_owned()), "{args:?}");

    helm_ok(
        home.path(),
        Some(&kubeconfig),
        &[
            "uninstall",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--wait",
            "--timeout",
            "60s",
        ],
    )?;
    let release = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let roles = Api::<ClusterRole>::all(admin.clone())
        .list(&release)
        .await?;
    let bindings = Api::<ClusterRoleBinding>::all(admin.clone())
        .list(&release)
        .await?;
    let ns_roles = Api::<Role>::namespaced(admin.clone(), NAMESPACE)
        .list(&release)
        .await?;
    assert!(
        roles.items.is_empty(),
        "ClusterRoles left: {:?}",
        names(&roles.items)
    );
    assert!(
        bindings.items.is_empty(),
        "ClusterRoleBindings left: {:?}",
        names(&bindings.items)
    );
    assert!(
        ns_roles.items.is_empty(),
        "Roles left: {:?}",
        names(&ns_roles.items)
    );
    for name in ["eni-operator-operator", "eni-operator-agent"] {
        assert!(
            Api::<ClusterRole>::all(admin.clone())
                .get_opt(name)
                .await?
                .is_none(),
            "{name} left"
        );
    }
    // Helm never deletes crds/: the PodNetworks (and with them the users' data) stay.
    crds.get("podnetworks.eni-operator.io").await?;
    Ok(())
}

async fn phase_of(client: &Client, name: &str) -> Result<String, kube::Error> {
    let pn = podnetworks(client.clone(), "default").get(name).await?;
    Ok(pn.data["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.meta().name.clone().unwrap_or_default())
        .collect()
}

/// The chart's MutatingAdmissionPolicy on the real API server: a pod that a Trunk
/// ENIPool selects (its podSelector's labels and expressions, its namespaceSelector)
/// gets one `eni-operator.io/member-eni` in the requests and limits of its first
/// container, keeping what it had; a pod only a SharedIP pool selects, a pod the
/// selectors leave out and a hostNetwork pod get nothing.
#[tokio::test]
async fn trunk_pods_request_a_member_eni() -> TestResult {
    const MEMBER: &str = "eni-operator.io/member-eni";
    let (_home, cp) = installed().await?;
    let admin = cp.client().await?;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "team-a", "labels": {"team": "a"}}}),
            )?,
        )
        .await?;
    let pools: Api<eni_crds::ENIPool> = Api::all(admin.clone());
    let mut trunk = serde_json::to_value(
        eni_test_support::pool("trunk-web", eni_crds::Mode::Trunk)
            .pods("app", "web")
            .security_groups(&["sg-0123456789abcdef0"])
            .build(),
    )?;
    trunk["spec"]["podSelector"]["matchExpressions"] =
        json!([{"key": "tier", "operator": "NotIn", "values": ["batch"]}]);
    trunk["spec"]["namespaceSelector"] = json!({"matchLabels": {"team": "a"}});
    let shared = eni_test_support::pool("shared-db", eni_crds::Mode::SharedIp)
        .pods("app", "db")
        .build();
    pools
        .create(&PostParams::default(), &serde_json::from_value(trunk)?)
        .await?;
    pools.create(&PostParams::default(), &shared).await?;

    let pod = |ns: &str,
               name: &str,
               labels: Value,
               extra: Value|
     -> Result<Pod, serde_json::Error> {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "busybox"}]},
        });
        if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(pod)
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    // (pod, what it must get for the member ENI in requests and limits of container 0,
    // and whether its cpu limit stays).
    let with_cpu = json!({"containers": [
        {"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1"}}},
        {"name": "d", "image": "busybox"}]});
    let cases = [
        (
            pod("team-a", "web", json!({"app": "web"}), json!({}))?,
            true,
        ),
        (
            pod("team-a", "web-cpu", json!({"app": "web"}), with_cpu)?,
            true,
        ),
        (
            pod(
                "team-a",
                "web-batch",
                json!({"app": "web", "tier": "batch"}),
                json!({}),
            )?,
            false,
        ),
        (pod("team-a", "db", json!({"app": "db"}), json!({}))?, false),
        (
            pod("default", "web", json!({"app": "web"}), json!({}))?,
            false,
        ),
        (
            pod(
                "team-a",
                "web-host",
                json!({"app": "web"}),
                json!({"hostNetwork": true}),
            )?,
            false,
        ),
    ];
    let member = |p: &Pod, container: usize| -> (Option<String>, Option<String>) {
        let r = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.get(container))
            .and_then(|c| c.resources.clone())
            .unwrap_or_default();
        let get = |l: Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| { l.and_then(|l| l.get(MEMBER).map(|q| q.0.clone())) };
        (get(r.requests), get(r.limits))
    };
    // The policy and its binding take effect a moment after they are created; until
    // its parameter kind is synced, the API server refuses pod creates.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = match Api::<Pod>::namespaced(admin.clone(), "team-a")
            .create(&dry_run, &cases[0].0)
            .await
        {
            Err(e) if admission_not_synced(&e) && Instant::now() < deadline => None,
            other => Some(other?),
        };
        if let Some(got) = &got
            && member(got, 0) == (Some("1".into()), Some("1".into()))
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no member-ENI request after 30s: {:?}",
                got.and_then(|g| g.spec)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (pod, wanted) in &cases {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let got = Api::<Pod>::namespaced(admin.clone(), &ns)
            .create(&dry_run, pod)
            .await?;
        let want = if *wanted {
            (Some("1".to_owned()), Some("1".to_owned()))
        } else {
            (None, None)
        };
        assert_eq!(member(&got, 0), want, "{ns}/{name}");
        assert_eq!(
            member(&got, 1),
            (None, None),
            "{ns}/{name}: second container"
        );
        if name == "web-cpu" {
            let limits = got
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].resources.clone());
            let cpu = limits
                .and_then(|r| r.limits)
                .and_then(|l| l.get("cpu").cloned());
            assert_eq!(
                cpu.map(|q| q.0),
                Some("1".to_owned()),
                "{ns}/{name} keeps its cpu limit"
            );
        }
    }
    Ok(())
}
