//! The control plane itself: two start in parallel, both work, and dropping them leaves
//! no process and no directory behind.

use std::path::Path;

use eni_e2e::{ControlPlane, Identity};
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
    let agent = cp.client_as(Identity::Agent).await.expect("agent client");
    let ns_api: Api<Namespace> = Api::all(agent);
    match ns_api.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("agent without RBAC bindings listed namespaces: {other:?}"),
    }
}
