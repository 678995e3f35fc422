//! The vpc-sim backend of the provider suite: the workspace's in-process cloud
//! (`eni_test_support::SimCloud`) with a second security group, and fixtures on it.

use std::collections::BTreeMap;

use eni_operator::cloud::Tags;
use eni_test_support::SimCloud;
use eni_test_support::pool::POD_SUBNET_TAG;
use vpc_sim::behaviour::SimConfig;
use vpc_sim::catalog::Cloud;
use vpc_sim::layout::GroupSpec;
use vpc_sim::layout::Layout;
use vpc_sim::server::ServerConfig;

use super::{Capabilities, Fixture, token};

/// A second group besides the layout's `default`, so that changing groups is visible.
const EXTRA_GROUP: &str = "pods-restricted";

pub async fn start(behaviour: SimConfig) -> SimCloud {
    start_in(Cloud::Aws, behaviour).await
}

/// vpc-sim with the built-in layout of `cloud` (its ids, zones and instance types).
pub async fn start_in(cloud: Cloud, behaviour: SimConfig) -> SimCloud {
    let mut config = ServerConfig::new().expect("vpc-sim defaults");
    config.layout = Layout::builtin_for(cloud).expect("built-in layout");
    config.behaviour = behaviour;
    config.layout.security_groups.push(GroupSpec {
        name: EXTRA_GROUP.to_owned(),
        description: "restricted pods".to_owned(),
        id: None,
        tags: BTreeMap::new(),
        ingress: Vec::new(),
    });
    SimCloud::start_with(config).await.expect("start vpc-sim")
}

/// A small instance type of `cloud` with trunking (3 ENIs).
pub fn small_type(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Aws => "m5.large",
        Cloud::Alibaba => "ecs.g7.large",
    }
}

/// A fixture on a new instance of `instance_type`; ENIs go to the layout subnet named
/// `subnet`.
pub fn fixture(sim: &SimCloud, instance_type: &str, subnet: &str) -> Fixture {
    let instance = sim
        .register(&token("node"), instance_type)
        .expect("register instance");
    Fixture {
        backend: "vpc-sim",
        endpoint: sim.ec2_url().to_owned(),
        access_key: sim.credentials().access_key.clone(),
        secret_key: sim.credentials().secret_key.clone(),
        instance_id: instance.instance_id,
        subnet_id: sim.subnet_id(subnet).expect("layout subnet"),
        subnet_tags: Tags::from([(POD_SUBNET_TAG.0.to_owned(), POD_SUBNET_TAG.1.to_owned())]),
        security_groups: sim.group_ids(),
        caps: Capabilities::STRICT,
    }
}
