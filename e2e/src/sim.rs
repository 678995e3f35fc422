//! vpc-sim for tests: the EC2 server in-process, nodes registered through its admin
//! operations, lookups of layout ids, and the state for leak checks.

use std::sync::Arc;

use eni_operator::cloud::{
    Backoff, RateLimit,
    aws::{AwsProvider, AwsSettings},
};
use prometheus_client::registry::Registry;
use vpc_sim::{
    behaviour::SimConfig,
    cloud::requests::{RegisterInstance, RegisteredInstance},
    server::{ServerConfig, ServerHandle, spawn},
    sim::Sim,
};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("vpc-sim: {0}")]
    Server(#[from] vpc_sim::server::ServerError),
    #[error("vpc-sim refused: {0}")]
    Refused(String),
    #[error("no {kind} named {name} in the layout")]
    Unknown { kind: &'static str, name: String },
}

pub struct SimCloud {
    handle: ServerHandle,
    access_key: String,
    secret_key: String,
}

impl SimCloud {
    pub async fn start(behaviour: SimConfig) -> Result<Self, SimError> {
        let mut config = ServerConfig::new()?;
        config.behaviour = behaviour;
        Self::start_with(config).await
    }

    /// A cloud configured in full: another layout (e.g. a larger pod subnet), catalog or
    /// behaviour.
    pub async fn start_with(config: ServerConfig) -> Result<Self, SimError> {
        let creds = config
            .credentials
            .first()
            .cloned()
            .ok_or_else(|| SimError::Refused("the configuration has no credentials".into()))?;
        Ok(SimCloud {
            handle: spawn(config).await?,
            access_key: creds.access_key,
            secret_key: creds.secret_key,
        })
    }

    pub fn sim(&self) -> &Arc<Sim> {
        self.handle.sim()
    }

    pub fn ec2_url(&self) -> &str {
        &self.handle.ec2_url
    }

    /// `AWS_*` variables that point an out-of-process operator at this cloud.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("ENI_EC2_ENDPOINT", self.handle.ec2_url.clone()),
        ]
    }

    /// The operator's EC2 provider, talking to this cloud.
    pub async fn provider(
        &self,
        cluster: &str,
        rate: RateLimit,
        registry: &mut Registry,
    ) -> AwsProvider {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "vpc-sim",
            ))
            .load()
            .await;
        let mut settings = AwsSettings::new(cluster);
        settings.endpoint_url = Some(self.handle.ec2_url.clone());
        settings.rate = rate;
        settings.backoff = Backoff {
            min_delay: std::time::Duration::from_millis(50),
            ..Backoff::default()
        };
        AwsProvider::new(&sdk, settings, registry)
    }

    pub fn register(
        &self,
        node: &str,
        instance_type: &str,
    ) -> Result<RegisteredInstance, SimError> {
        self.sim()
            .register_instance(&RegisterInstance {
                node_name: node.to_owned(),
                instance_type: instance_type.to_owned(),
                subnet: "nodes-a".to_owned(),
                security_groups: Vec::new(),
                netns: None,
            })
            .map_err(|e| SimError::Refused(e.to_string()))
    }

    pub fn subnet_id(&self, name: &str) -> Result<String, SimError> {
        self.sim().with_state(|d| {
            d.state
                .subnets
                .values()
                .find(|s| s.tags.get("Name").map(String::as_str) == Some(name))
                .map(|s| s.id.clone())
                .ok_or(SimError::Unknown {
                    kind: "subnet",
                    name: name.to_owned(),
                })
        })
    }

    pub fn group_id(&self, name: &str) -> Result<String, SimError> {
        self.sim().with_state(|d| {
            d.state
                .groups
                .values()
                .find(|g| g.name == name)
                .map(|g| g.id.clone())
                .ok_or(SimError::Unknown {
                    kind: "security group",
                    name: name.to_owned(),
                })
        })
    }

    /// ENIs carrying `cluster`'s ownership tag: `(id, attached instance, addresses held)`.
    pub fn owned_enis(&self, cluster: &str) -> Vec<(String, Option<String>, usize)> {
        self.sim().with_state(|d| {
            d.state
                .enis
                .values()
                .filter(|e| {
                    e.tags.get("eni-operator.io/cluster").map(String::as_str) == Some(cluster)
                })
                .map(|e| {
                    let inst = e.attachment.as_ref().map(|a| a.instance_id.clone());
                    (
                        e.id.clone(),
                        inst,
                        1 + e.secondary_ips.len() + 16 * e.prefixes.len(),
                    )
                })
                .collect()
        })
    }

    /// Invariant violations the simulator finds in its own state (must be none).
    pub fn violations(&self) -> Vec<String> {
        self.sim().with_state(|d| d.invariant_violations.clone())
    }

    /// Calls per action `(calls, throttled)`.
    pub fn calls(&self) -> Vec<(String, u64, u64)> {
        self.sim()
            .counters()
            .into_iter()
            .map(|(a, c)| (a, c.calls, c.throttled))
            .collect()
    }
}
