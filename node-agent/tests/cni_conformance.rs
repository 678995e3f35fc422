//! CNI conformance of the real `eni-cni` binary against an in-process agent (fixture
//! PodNetworks, memory dataplane): every command, the error codes, idempotency, and an
//! agent that is down or silent.

mod cni_harness;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use cni_harness::*;
use eni_crds::{Datapath, PodNetworkPhase};

const POD: (&str, &str, &str) = ("default", "web-0", "uid-1");

fn agent_with_pod() -> TestAgent<MemoryWiring> {
    TestAgent::start(
        MemoryWiring::default(),
        vec![podnetwork("default", "web-0", "uid-1", "10.0.1.5")],
        true,
        2000,
    )
}

#[test]
fn version_lists_supported_versions() {
    let run = run_plugin(
        Path::new(eni_cni()),
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"1.1.0"}"#,
    );
    assert_eq!(run.code, 0);
    let v = run.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for needed in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(&needed), "{versions:?}");
    }
}

#[test]
fn add_check_del_round_trip() {
    let agent = agent_with_pod();
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let conf = agent.conf("1.1.0");

    let add = cni("ADD", "c0ffee01", Some(&netns), POD, &conf);
    assert_eq!(add.code, 0, "{}", add.stdout);
    let result = add.json();
    assert_eq!(result["cniVersion"], "1.1.0");
    let interfaces = result["interfaces"].as_array().unwrap();
    let pod_if = interfaces
        .iter()
        .position(|i| i["sandbox"] == netns.as_str())
        .expect("an interface in the pod sandbox");
    assert_eq!(interfaces[pod_if]["name"], "eth0");
    assert!(
        interfaces.iter().any(|i| i.get("sandbox").is_none()),
        "host interface listed"
    );
    assert_eq!(result["ips"][0]["address"], "10.0.1.5/32");
    assert_eq!(result["ips"][0]["interface"], pod_if);
    assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(result["dns"]["nameservers"][0], "10.96.0.10");
    assert_eq!(result["dns"]["search"][0], "default.svc.cluster.local");

    let status = agent.status.last("default", "web-0").unwrap();
    assert_eq!(status.phase, Some(PodNetworkPhase::Ready));
    assert_eq!(status.container_id.as_deref(), Some("c0ffee01"));
    assert_eq!(status.pod_interface.as_deref(), Some("eth0"));
    assert!(status.host_interface.is_some());
    assert_eq!(agent.state_files(), 1);

    let check_conf = with_prev_result(&conf, &result);
    cni("CHECK", "c0ffee01", Some(&netns), POD, &check_conf).ok_empty();

    // The wiring vanishing under the agent makes CHECK fail with the agent's reason.
    agent.wiring.wired.lock().unwrap().clear();
    let msg = cni("CHECK", "c0ffee01", Some(&netns), POD, &check_conf).error(102);
    assert!(msg.contains("no longer wired"), "{msg}");

    cni("DEL", "c0ffee01", Some(&netns), POD, &conf).ok_empty();
    assert_eq!(agent.state_files(), 0);
    let msg = cni("CHECK", "c0ffee01", Some(&netns), POD, &check_conf).error(3);
    assert!(msg.contains("not wired"), "{msg}");
}

#[test]
fn add_twice_is_idempotent() {
    let agent = agent_with_pod();
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let conf = agent.conf("1.0.0");
    let first = cni("ADD", "c1", Some(&netns), POD, &conf);
    let second = cni("ADD", "c1", Some(&netns), POD, &conf);
    assert_eq!(
        (first.code, second.code),
        (0, 0),
        "{} / {}",
        first.stdout,
        second.stdout
    );
    assert_eq!(first.json(), second.json());
    assert_eq!(agent.state_files(), 1);
    assert_eq!(agent.wiring.wired.lock().unwrap().len(), 1);
}

#[test]
fn new_sandbox_of_the_same_pod_replaces_the_old_wiring() {
    let agent = agent_with_pod();
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let conf = agent.conf("1.1.0");
    assert_eq!(cni("ADD", "old", Some(&netns), POD, &conf).code, 0);
    assert_eq!(cni("ADD", "new", Some(&netns), POD, &conf).code, 0);
    let wired = agent.wiring.wired.lock().unwrap();
    assert_eq!(wired.keys().collect::<Vec<_>>(), vec!["new"]);
}

#[test]
fn del_of_unknown_container_and_after_netns_is_gone_succeeds() {
    let agent = agent_with_pod();
    let conf = agent.conf("1.1.0");
    cni("DEL", "never-seen", None, POD, &conf).ok_empty();
    cni("DEL", "never-seen", Some("/var/run/netns/gone"), POD, &conf).ok_empty();

    let netns = fake_netns(agent.dir.path(), "netns-2");
    assert_eq!(cni("ADD", "c2", Some(&netns), POD, &conf).code, 0);
    std::fs::remove_file(&netns).unwrap();
    cni("DEL", "c2", None, POD, &conf).ok_empty();
    assert!(agent.wiring.wired.lock().unwrap().is_empty());
    // A second DEL is fine too.
    cni("DEL", "c2", Some(&netns), POD, &conf).ok_empty();
}

#[test]
fn bad_input_gets_the_spec_codes() {
    let agent = agent_with_pod();
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let conf = agent.conf("1.1.0");

    cni("ADD", "c1", Some(&netns), POD, "{\"cniVersion\": ").error(6);
    cni(
        "ADD",
        "c1",
        Some(&netns),
        POD,
        r#"{"cniVersion":"1.1.0","type":"eni-cni"}"#,
    )
    .error(7);
    let msg = cni(
        "ADD",
        "c1",
        Some(&netns),
        POD,
        &conf.replace("1.1.0", "0.9.9"),
    )
    .error(1);
    assert!(msg.contains("0.9.9"), "{msg}");
    let msg = cni("ADD", "c1", None, POD, &conf).error(4);
    assert!(msg.contains("CNI_NETNS"), "{msg}");
    let msg = run_plugin(Path::new(eni_cni()), &[], &conf).error(4);
    assert!(msg.contains("CNI_COMMAND"), "{msg}");
    let msg = run_plugin(
        Path::new(eni_cni()),
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf,
    )
    .error(4);
    assert!(msg.contains("K8S_POD_NAME"), "{msg}");
    // Nothing was wired by any of these.
    assert!(agent.wiring.wired.lock().unwrap().is_empty());
    assert_eq!(agent.state_files(), 0);
}

#[test]
fn agent_down_is_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.1.0","name":"eni","type":"eni-cni","socketPath":"{}"}}"#,
        dir.path().join("nobody.sock").display()
    );
    let netns = fake_netns(dir.path(), "netns");
    let msg = cni("ADD", "c1", Some(&netns), POD, &conf).error(11);
    assert!(msg.contains("eni-agent is down"), "{msg}");
    let msg = cni("STATUS", "c1", None, POD, &conf).error(50);
    assert!(msg.contains("eni-agent"), "{msg}");
}

#[test]
fn silent_agent_times_out_with_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // Accepts connections (the kernel queues them) but never answers.
    let _listener = UnixListener::bind(&socket).unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.1.0","name":"eni","type":"eni-cni","socketPath":"{}","agentTimeoutSeconds":0.5}}"#,
        socket.display()
    );
    let netns = fake_netns(dir.path(), "netns");
    let started = Instant::now();
    let run = cni("ADD", "c1", Some(&netns), POD, &conf);
    let msg = run.error(11);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        run.json()["details"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{}",
        run.stdout
    );
    assert!(msg.contains("not answering"), "{msg}");
}

#[test]
fn add_waits_for_a_late_allocation() {
    let agent = TestAgent::start(MemoryWiring::default(), vec![], true, 5000);
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let writer = agent.writer();
    let operator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        writer
            .lock()
            .unwrap()
            .apply(&kube::runtime::watcher::Event::Apply(podnetwork(
                "default", "web-0", "uid-1", "10.0.1.9",
            )));
    });
    let run = cni("ADD", "c1", Some(&netns), POD, &agent.conf("1.1.0"));
    operator.join().unwrap();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["ips"][0]["address"], "10.0.1.9/32");
}

#[test]
fn allocation_timeout_and_stale_uid_are_try_again_later() {
    // The PodNetwork present belongs to a previous pod of the same name.
    let agent = TestAgent::start(
        MemoryWiring::default(),
        vec![podnetwork("default", "web-0", "old-uid", "10.0.1.5")],
        true,
        200,
    );
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let msg = cni("ADD", "c1", Some(&netns), POD, &agent.conf("1.1.0")).error(11);
    assert!(msg.contains("old-uid"), "{msg}");
    let msg = cni(
        "ADD",
        "c1",
        Some(&netns),
        ("default", "other", "u"),
        &agent.conf("1.1.0"),
    )
    .error(11);
    assert!(msg.contains("has not allocated"), "{msg}");
    assert!(agent.wiring.wired.lock().unwrap().is_empty());
}

#[test]
fn a_mode_the_kernel_cannot_do_is_refused_clearly() {
    let agent = TestAgent::start(
        MemoryWiring::default(),
        vec![
            eni_test_support::podnetwork(
                "default",
                "web-0",
                NODE,
                shared_allocation("10.0.1.5")
                    .datapath(Datapath::IpVlan)
                    .build(),
            )
            .uid("uid-1")
            .build(),
        ],
        true,
        1000,
    );
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let msg = cni("ADD", "c1", Some(&netns), POD, &agent.conf("1.1.0")).error(101);
    assert!(msg.contains("ipvlan"), "{msg}");
    let status = agent.status.last("default", "web-0").unwrap();
    assert_eq!(status.phase, Some(PodNetworkPhase::Failed));
    assert!(status.message.unwrap().contains("ipvlan"));
    assert!(agent.wiring.wired.lock().unwrap().is_empty());
}

#[test]
fn gc_removes_only_attachments_not_listed() {
    let agent = TestAgent::start(
        MemoryWiring::default(),
        vec![
            podnetwork("default", "a", "ua", "10.0.1.10"),
            podnetwork("default", "b", "ub", "10.0.1.11"),
        ],
        true,
        1000,
    );
    let netns = fake_netns(agent.dir.path(), "netns");
    let conf = agent.conf("1.1.0");
    assert_eq!(
        cni("ADD", "ca", Some(&netns), ("default", "a", "ua"), &conf).code,
        0
    );
    assert_eq!(
        cni("ADD", "cb", Some(&netns), ("default", "b", "ub"), &conf).code,
        0
    );
    // Wiring the kernel has but no state record knows (e.g. a wiped state dir).
    let copy = agent.wiring.wired.lock().unwrap()["ca"].clone();
    agent
        .wiring
        .wired
        .lock()
        .unwrap()
        .insert("orphan".into(), copy);

    let mut gc: serde_json::Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": "ca", "ifname": "eth0"}]);
    run_plugin(
        Path::new(eni_cni()),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        &gc.to_string(),
    )
    .ok_empty();
    let mut left: Vec<String> = agent.wiring.wired.lock().unwrap().keys().cloned().collect();
    left.sort();
    assert_eq!(left, vec!["ca"]);
    assert_eq!(agent.state_files(), 1);
}

#[test]
fn status_reports_readiness() {
    let ready = agent_with_pod();
    run_plugin(
        Path::new(eni_cni()),
        &[("CNI_COMMAND", "STATUS")],
        &ready.conf("1.1.0"),
    )
    .ok_empty();
    let starting = TestAgent::start(MemoryWiring::default(), vec![], false, 100);
    let msg = run_plugin(
        Path::new(eni_cni()),
        &[("CNI_COMMAND", "STATUS")],
        &starting.conf("1.1.0"),
    )
    .error(50);
    assert!(msg.contains("not synced"), "{msg}");
}

#[test]
fn old_spec_versions_get_their_result_format() {
    let agent = agent_with_pod();
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let run = cni("ADD", "c1", Some(&netns), POD, &agent.conf("0.4.0"));
    assert_eq!(run.code, 0, "{}", run.stdout);
    let v = run.json();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(v["ips"][0]["version"], "4");
}

#[test]
fn metrics_count_requests_by_command_and_result() {
    let agent = agent_with_pod();
    let netns = fake_netns(agent.dir.path(), "netns-1");
    let conf = agent.conf("1.1.0");
    assert_eq!(cni("ADD", "c1", Some(&netns), POD, &conf).code, 0);
    cni("DEL", "c1", None, POD, &conf).ok_empty();
    let text = agent.metrics.encode();
    assert!(
        text.contains(r#"eni_agent_cni_requests_total{command="ADD",result="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"eni_agent_cni_requests_total{command="DEL",result="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("eni_agent_cni_add_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"eni_agent_kernel_feature_available{feature="ipvlan"} 0"#),
        "{text}"
    );
}
