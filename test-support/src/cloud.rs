//! vpc-sim in process: the EC2 server on a loopback port, nodes registered through its
//! admin operations, lookups of layout ids, the operator's AWS provider talking to it,
//! and the state leak checks read.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use eni_operator::cloud::{
    Backoff, RateLimit,
    aws::{AwsProvider, AwsSettings},
};
use prometheus_client::registry::Registry;
use vpc_sim::{
    behaviour::SimConfig,
    catalog::Cloud,
    cloud::requests::{RegisterInstance, RegisteredInstance},
    server::{ServerConfig, ServerHandle, spawn},
    sigv4::Credentials,
    sim::{ActionCounters, Sim},
};

/// Region every test cloud answers for.
const REGION: &str = "us-east-1";

/// Layout subnet new instances are registered in.
const NODE_SUBNET: &str = "nodes-a";

/// Tag an ENI carries when the operator of cluster `<value>` owns it.
const CLUSTER_TAG: &str = "eni-operator.io/cluster";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("vpc-sim: {0}")]
    Server(#[from] vpc_sim::server::ServerError),
    #[error("vpc-sim refused: {0}")]
    Refused(String),
    #[error("no {kind} named {name} in the layout")]
    Unknown { kind: &'static str, name: String },
}

impl SimError {
    /// Short, stable name of the failure, for metric labels and reports.
    pub fn label(&self) -> &'static str {
        match self {
            SimError::Server(_) => "server",
            SimError::Refused(_) => "refused",
            SimError::Unknown { .. } => "unknown",
        }
    }
}

/// The environment an operator process reads to talk to vpc-sim at `endpoint` as
/// `cloud`: the EC2 provider with AWS credentials, or the ECS provider with Alibaba
/// Cloud's.
pub fn operator_env(
    cloud: Cloud,
    region: &str,
    endpoint: &str,
    credentials: &Credentials,
) -> Vec<(&'static str, String)> {
    match cloud {
        Cloud::Aws => vec![
            ("AWS_ACCESS_KEY_ID", credentials.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", credentials.secret_key.clone()),
            ("AWS_REGION", region.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("ENI_EC2_ENDPOINT", endpoint.to_owned()),
        ],
        Cloud::Alibaba => vec![
            ("ENI_CLOUD", "alibaba".into()),
            ("ENI_REGION", region.to_owned()),
            ("ENI_ECS_ENDPOINT", endpoint.to_owned()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
                credentials.access_key.clone(),
            ),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                credentials.secret_key.clone(),
            ),
        ],
    }
}

pub struct SimCloud {
    handle: ServerHandle,
    credentials: Credentials,
}

impl SimCloud {
    /// The built-in layout and catalog with `behaviour`.
    pub async fn start(behaviour: SimConfig) -> Result<Self, SimError> {
        let mut config = ServerConfig::new()?;
        config.behaviour = behaviour;
        Self::start_with(config).await
    }

    /// A cloud configured in full: another layout (a larger pod subnet, more security
    /// groups), catalog or behaviour.
    pub async fn start_with(config: ServerConfig) -> Result<Self, SimError> {
        let credentials = config
            .credentials
            .first()
            .cloned()
            .ok_or_else(|| SimError::Refused("the configuration has no credentials".into()))?;
        Ok(SimCloud {
            handle: spawn(config).await?,
            credentials,
        })
    }

    pub fn sim(&self) -> &Arc<Sim> {
        self.handle.sim()
    }

    pub fn ec2_url(&self) -> &str {
        &self.handle.ec2_url
    }

    /// The access key pair the cloud accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The variables that point an out-of-process operator at this cloud: its EC2
    /// provider, or its ECS provider when the layout is in Alibaba Cloud.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let (cloud, region) = self
            .sim()
            .with_state(|d| (d.state.vpc.cloud, d.state.vpc.region.clone()));
        let region = match cloud {
            Cloud::Aws => REGION.to_owned(),
            Cloud::Alibaba => region,
        };
        operator_env(cloud, &region, &self.handle.ec2_url, &self.credentials)
    }

    /// An AWS SDK configuration for this cloud (endpoint, region, credentials).
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config(
            self.ec2_url(),
            &self.credentials.access_key,
            &self.credentials.secret_key,
        )
        .await
    }

    /// The operator's EC2 provider for `cluster`, talking to this cloud, with a quick
    /// backoff so that throttling tests stay short.
    pub async fn provider(
        &self,
        cluster: &str,
        rate: RateLimit,
        registry: &mut Registry,
    ) -> AwsProvider {
        let mut settings = AwsSettings::new(cluster);
        settings.endpoint_url = Some(self.handle.ec2_url.clone());
        settings.rate = rate;
        settings.describe_rate = rate;
        settings.backoff = Backoff {
            min_delay: Duration::from_millis(50),
            ..Backoff::default()
        };
        AwsProvider::new(&self.sdk_config().await, settings, registry)
    }

    /// Registers instance `node` of `instance_type` in the layout's node subnet.
    pub fn register(
        &self,
        node: &str,
        instance_type: &str,
    ) -> Result<RegisteredInstance, SimError> {
        self.sim()
            .register_instance(&RegisterInstance {
                node_name: node.to_owned(),
                instance_type: instance_type.to_owned(),
                subnet: NODE_SUBNET.to_owned(),
                security_groups: Vec::new(),
                netns: None,
            })
            .map_err(|e| SimError::Refused(e.to_string()))
    }

    /// The id of a layout subnet, by its `Name` tag.
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

    /// The id of a layout security group, by name.
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

    /// Ids of every security group, sorted.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sim()
            .with_state(|d| d.state.groups.values().map(|g| g.id.clone()).collect());
        ids.sort();
        ids
    }

    /// ENIs carrying `cluster`'s ownership tag: `(id, attached instance, addresses held)`.
    pub fn owned_enis(&self, cluster: &str) -> Vec<(String, Option<String>, usize)> {
        self.sim().with_state(|d| {
            d.state
                .enis
                .values()
                .filter(|e| e.tags.get(CLUSTER_TAG).map(String::as_str) == Some(cluster))
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

    /// Counters of one EC2 action (zero when it was never called).
    pub fn counters(&self, action: &str) -> ActionCounters {
        self.sim()
            .counters()
            .get(action)
            .cloned()
            .unwrap_or_default()
    }

    /// Calls per action `(action, calls, throttled)`.
    pub fn calls(&self) -> Vec<(String, u64, u64)> {
        self.sim()
            .counters()
            .into_iter()
            .map(|(a, c)| (a, c.calls, c.throttled))
            .collect()
    }
}

/// An AWS SDK configuration for any EC2 endpoint (vpc-sim, moto).
pub async fn sdk_config(endpoint: &str, access_key: &str, secret_key: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            access_key, secret_key, None, None, "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}
