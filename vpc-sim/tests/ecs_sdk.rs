//! Alibaba Cloud's official Go SDKs (ECS 2014-05-26, VPC 2016-04-28) against vpc-sim's
//! ECS front end: e2e/ecs-sdk-check drives a whole ENI life cycle in every mode and
//! refused signatures, as moto and aws-sdk-ec2 keep the EC2 front end honest. setup.sh
//! builds the program into the cache.

use std::path::PathBuf;
use std::process::Command;

use vpc_sim::behaviour::SimConfig;
use vpc_sim::catalog::Cloud;
use vpc_sim::cloud::requests::RegisterInstance;
use vpc_sim::layout::Layout;
use vpc_sim::server::{self, ServerConfig};

fn sdk_check() -> PathBuf {
    let cache = std::env::var_os("ENI_OPERATOR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/eni-operator")))
        .expect("HOME or ENI_OPERATOR_CACHE");
    let path = cache.join("bin/eni-ecs-sdk-check");
    assert!(
        path.is_file(),
        "{} is missing: run e2e/setup.sh test",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_go_sdk_runs_a_whole_eni_life_cycle() {
    let program = sdk_check();
    let mut config = ServerConfig::new().unwrap();
    config.layout = Layout::builtin_for(Cloud::Alibaba).unwrap();
    config.behaviour = SimConfig::instant();
    // Attach and detach take time, as on ECS: the program must poll.
    config.behaviour.attach_delay_ms = 300;
    config.behaviour.detach_delay_ms = 200;
    let h = server::spawn(config).await.unwrap();
    let register = |node: &str, instance_type: &str| {
        h.sim()
            .register_instance(&RegisterInstance {
                node_name: node.into(),
                instance_type: instance_type.into(),
                subnet: "nodes-a".into(),
                security_groups: vec![],
                netns: None,
            })
            .unwrap()
    };
    let trunk = register("sdk-trunk", "ecs.g7.xlarge");
    let plain = register("sdk-plain", "ecs.g6.xlarge");
    assert!(trunk.instance_id.starts_with("i-") && trunk.subnet_id.starts_with("vsw-"));
    assert_eq!(
        trunk.provider_id,
        format!("cn-hangzhou.{}", trunk.instance_id)
    );

    let endpoint = h.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .args([
                "-endpoint",
                &endpoint,
                "-trunk-instance",
                &trunk.instance_id,
            ])
            .args(["-plain-instance", &plain.instance_id])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    assert!(report["checks"].as_u64().unwrap() >= 39, "{report}");
    assert!(out.status.success());

    // The SDK's traffic left the cloud as it found it.
    h.sim().with_state(|dump| {
        assert!(
            dump.invariant_violations.is_empty(),
            "{:?}",
            dump.invariant_violations
        );
        assert_eq!(dump.state.enis.len(), 2, "only the primaries remain");
    });
    let counters = h.sim().counters();
    assert!(counters["AttachNetworkInterface"].calls >= 5);
    h.shutdown().await.unwrap();
}
