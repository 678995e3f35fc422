//! vpc-sim in-process: the EC2 server on a loopback port, a node instance registered
//! through its admin operations, and its per-action counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use eni_operator::cloud::{CloudProvider, SubnetQuery, Tags};
use vpc_sim::behaviour::SimConfig;
use vpc_sim::cloud::requests::{RegisterInstance, RegisteredInstance};
use vpc_sim::layout::GroupSpec;
use vpc_sim::server::{ServerConfig, ServerHandle, spawn};
use vpc_sim::sigv4::Credentials as SimCredentials;
use vpc_sim::sim::{ActionCounters, Sim};

use super::{Capabilities, Fixture, sdk_config_with, token};

/// A second group besides the layout's `default`, so that changing groups is visible.
const EXTRA_GROUP: &str = "pods-restricted";

pub struct VpcSim {
    handle: ServerHandle,
    credentials: SimCredentials,
}

impl VpcSim {
    pub async fn start(behaviour: SimConfig) -> Self {
        let mut config = ServerConfig::new().expect("vpc-sim defaults");
        config.behaviour = behaviour;
        config.layout.security_groups.push(GroupSpec {
            name: EXTRA_GROUP.to_owned(),
            description: "restricted pods".to_owned(),
            id: None,
            tags: BTreeMap::new(),
            ingress: Vec::new(),
        });
        let credentials = config.credentials[0].clone();
        let handle = spawn(config).await.expect("start vpc-sim");
        Self {
            handle,
            credentials,
        }
    }

    pub fn sim(&self) -> &Arc<Sim> {
        self.handle.sim()
    }

    pub fn counters(&self, action: &str) -> ActionCounters {
        self.sim()
            .counters()
            .get(action)
            .cloned()
            .unwrap_or_default()
    }

    /// Registers a node instance of `instance_type` in the layout's `nodes-a` subnet.
    pub fn register(&self, instance_type: &str) -> RegisteredInstance {
        self.sim()
            .register_instance(&RegisterInstance {
                node_name: token("node"),
                instance_type: instance_type.to_owned(),
                subnet: "nodes-a".to_owned(),
                security_groups: Vec::new(),
                netns: None,
            })
            .expect("register instance")
    }

    /// A fixture on a new instance; ENIs go to the `subnet` of the layout (by name).
    pub async fn fixture(&self, instance_type: &str, subnet: &str) -> Fixture {
        let instance = self.register(instance_type);
        let sdk = sdk_config_with(
            &self.handle.ec2_url,
            &self.credentials.access_key,
            &self.credentials.secret_key,
        )
        .await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let groups = ec2
            .describe_security_groups()
            .send()
            .await
            .expect("describe groups");
        let mut security_groups: Vec<String> = groups
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        security_groups.sort();
        let mut fx = Fixture {
            backend: "vpc-sim",
            endpoint: self.handle.ec2_url.clone(),
            access_key: self.credentials.access_key.clone(),
            secret_key: self.credentials.secret_key.clone(),
            instance_id: instance.instance_id,
            subnet_id: String::new(),
            subnet_tags: Tags::from([("eni-operator.io/pods".to_owned(), "true".to_owned())]),
            security_groups,
            caps: Capabilities::STRICT,
        };
        fx.subnet_id = self.subnet_id(&fx, subnet).await;
        fx
    }

    /// The id of a layout subnet, looked up by its `Name` tag through the provider.
    pub async fn subnet_id(&self, fx: &Fixture, name: &str) -> String {
        let (provider, _) =
            super::provider(fx, super::generous_rate(), super::quick_backoff()).await;
        let provider: &dyn CloudProvider = provider.as_ref();
        let found = provider
            .describe_subnets(&SubnetQuery::Tagged(Tags::from([(
                "Name".to_owned(),
                name.to_owned(),
            )])))
            .await
            .expect("describe subnets by Name");
        assert_eq!(found.len(), 1, "subnet {name}: {found:?}");
        found[0].id.clone()
    }
}
