//! The materializer at a moderate scale: how long a first apply, a no-op apply and a
//! one-address change take (printed; run with `--nocapture` to see them). Needs root.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use vpc_sim::dataplane_view::{
    DataplaneView, EniKind, EniPortView, IngressRule, NodeView, Protocol, SecurityGroupView,
};
use vpc_sim::materialize::{Materializer, node_netns};

const NODES: u32 = 16;
const ENIS_PER_NODE: u32 = 3;
const ADDRESSES_PER_ENI: u32 = 10;

struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test runtime")
                .block_on(Materializer::cleanup(&prefix))
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("cleanup of {} failed: {done:?}", self.0);
        }
    }
}

fn view(prefix: &str, extra_address: bool) -> DataplaneView {
    let nodes = (0..NODES)
        .map(|node| NodeView {
            instance_id: format!("i-{node}"),
            netns: node_netns(prefix, &format!("n{node}")),
            enis: (0..ENIS_PER_NODE)
                .map(|index| {
                    // One /24 per node; ENI `index` holds .(index*20+10)...
                    let base = index * 20 + 10;
                    let mut addresses: Vec<Ipv4Addr> = (0..ADDRESSES_PER_ENI)
                        .map(|i| Ipv4Addr::new(10, 1, node as u8, (base + i) as u8))
                        .collect();
                    if extra_address && node == 0 && index == 1 {
                        addresses.push(Ipv4Addr::new(10, 1, 0, 200));
                    }
                    EniPortView {
                        eni_id: format!("eni-{node}-{index}"),
                        mac: format!("02:00:00:{node:02x}:{index:02x}:01"),
                        device_index: index,
                        kind: if index == 0 {
                            EniKind::Primary
                        } else {
                            EniKind::Secondary
                        },
                        addresses,
                        prefixes: vec![],
                        security_group_ids: vec!["sg-1".to_string()],
                        subnet_cidr: format!("10.1.{node}.0/24").parse().unwrap(),
                        gateway: Ipv4Addr::new(10, 1, node as u8, 1),
                    }
                })
                .collect(),
        })
        .collect();
    DataplaneView {
        nodes,
        security_groups: vec![SecurityGroupView {
            group_id: "sg-1".to_string(),
            ingress: vec![IngressRule {
                protocol: Protocol::Tcp,
                from_port: 80,
                to_port: 80,
                cidrs: vec![],
                source_group_ids: vec!["sg-1".to_string()],
            }],
        }],
    }
}

fn route_count(vpc: &str) -> usize {
    let output = Command::new("ip")
        .args(["-n", vpc, "route", "show", "proto", "static"])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).lines().count()
}

#[tokio::test]
async fn converges_at_moderate_scale() {
    let guard = Guard(format!("ms{}", std::process::id()));
    let prefix = guard.0.clone();
    let vpc = format!("{prefix}-vpc");
    let mut materializer = Materializer::new(&prefix).await.unwrap();

    let start = Instant::now();
    materializer.apply(&view(&prefix, false)).await.unwrap();
    let first = start.elapsed();
    let expected = (NODES * ENIS_PER_NODE * ADDRESSES_PER_ENI) as usize;
    assert_eq!(route_count(&vpc), expected);

    let start = Instant::now();
    materializer.apply(&view(&prefix, false)).await.unwrap();
    let noop = start.elapsed();

    let start = Instant::now();
    materializer.apply(&view(&prefix, true)).await.unwrap();
    let one_more = start.elapsed();
    assert_eq!(route_count(&vpc), expected + 1);

    let start = Instant::now();
    materializer.apply(&DataplaneView::default()).await.unwrap();
    let emptied = start.elapsed();
    assert_eq!(route_count(&vpc), 0);

    println!(
        "{NODES} nodes x {ENIS_PER_NODE} ENIs x {ADDRESSES_PER_ENI} addresses: first apply {first:?}, \
         no-op apply {noop:?}, one address more {one_more:?}, to empty {emptied:?}"
    );
}
