//! The control plane itself: two start in parallel, both work, and dropping them leaves
//! no process and no directory behind.

use std::path::Path;

use eni_e2e::{
    ControlPlane,
    control_plane::SYSTEM_NAMESPACE,
    identities::{self, Who},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, api::PostParams};

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes; /proc/<pid>/stat says 'Z'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_in_parallel_then_nothing_left() {
    let (a, b) = tokio::join!(ControlPlane::start(), ControlPlane::start());
    let (a, b) = (
        a.expect("first control plane"),
        b.expect("second control plane"),
    );
    assert_ne!(a.server(), b.server());

    for (cp, ns) in [(&a, "only-in-a"), (&b, "only-in-b")] {
        let ns_api: Api<Namespace> = Api::all(cp.client().await.expect("client"));
        let obj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .expect("namespace");
        ns_api
            .create(&PostParams::default(), &obj)
            .await
            .expect("create namespace");
    }
    // Separate etcds: each sees only its own namespace.
    let a_ns: Api<Namespace> = Api::all(a.client().await.expect("client"));
    assert!(a_ns.get_opt("only-in-b").await.expect("get").is_none());
    assert!(a_ns.get_opt("only-in-a").await.expect("get").is_some());

    let pids = [a.pids(), b.pids()].concat();
    let dirs = [a.dir().to_path_buf(), b.dir().to_path_buf()];
    assert!(pids.iter().all(|p| alive(*p)));
    drop(a);
    drop(b);
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived its control plane");
    }
    for dir in dirs {
        assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
    }
}

#[tokio::test]
async fn rbac_is_enforced_for_service_accounts() {
    let cp = ControlPlane::start().await.expect("control plane");
    let admin = cp.client().await.expect("admin client");
    // The agent's ServiceAccount with no RBAC of the chart bound to it.
    for manifest in [
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "eni-agent", "namespace": SYSTEM_NAMESPACE}}),
    ] {
        eni_e2e::cluster::apply_yaml(&admin, &serde_json::to_string(&manifest).unwrap())
            .await
            .expect("fixture");
    }
    let agent = identities::client(&cp, &admin, Who::UnboundAgent)
        .await
        .expect("agent client");
    let ns_api: Api<Namespace> = Api::all(agent);
    match ns_api.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("agent without RBAC bindings listed namespaces: {other:?}"),
    }
}

/// The control plane for real nodes: controller-manager gives every namespace its
/// `default` service account and `kube-root-ca.crt` (what pods' projected tokens need),
/// and a node's client certificate is `system:node:<name>` under the Node authorizer: it
/// may read its own Node but not list secrets.
#[tokio::test]
async fn real_node_control_plane_runs_the_controllers() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
    let cp = ControlPlane::start_with(eni_e2e::Options {
        real_nodes: true,
        ..Default::default()
    })
    .await
    .expect("control plane");
    let client = cp.client().await.expect("client");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    loop {
        let sa = sas.get_opt("default").await.expect("get sa").is_some();
        let ca = cms.get_opt("kube-root-ca.crt").await.expect("get cm");
        if sa && let Some(ca) = ca {
            let pem = ca.data.and_then(|d| d.get("ca.crt").cloned());
            assert_eq!(pem.as_deref(), Some(cp.ca_pem().as_str()));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no default service account / kube-root-ca.crt after 60s:\n{}",
            cp.component_logs(30)
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let kubeconfig = cp.dir().join("kubeconfig-node-n1");
    cp.write_node_kubeconfig(&kubeconfig, "n1")
        .expect("node kubeconfig");
    let yaml = std::fs::read_to_string(&kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml).expect("parse kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let node = kube::Client::try_from(config).expect("node client");
    let secrets: Api<Secret> = Api::namespaced(node, "default");
    match secrets.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("a node listed secrets: {other:?}"),
    }
}
