//! vpc-sim as its own process with dataplane materialization, as the end-to-end bed runs
//! it: it outlives operator crashes, and its admin API registers instances, injects
//! faults and dumps the state for leak checks.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use eni_test_support::cloud::operator_env;
use serde::Deserialize;
use serde_json::{Value, json};
use vpc_sim::behaviour::SimConfig;
pub use vpc_sim::catalog::Cloud;
use vpc_sim::sigv4::Credentials;

use crate::process::ChildGuard;

#[derive(Debug, thiserror::Error)]
pub enum VpcError {
    #[error("starting vpc-sim: {0}")]
    Spawn(std::io::Error),
    #[error("vpc-sim did not print its addresses within {0:?}: {1}")]
    NoAddress(Duration, String),
    #[error("vpc-sim admin {0}: {1}")]
    Admin(String, String),
    #[error("writing the behaviour file: {0}")]
    Behaviour(String),
}

/// The answer of `POST /admin/instances`.
#[derive(Clone, Debug, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    pub provider_id: String,
    pub primary_eni_id: String,
    pub primary_ip: Ipv4Addr,
    pub netns: String,
}

/// An ENI of the state dump, reduced to what leak checks need.
#[derive(Clone, Debug)]
pub struct Eni {
    pub id: String,
    pub attached_to: Option<String>,
    pub primary_ip: String,
    pub groups: Vec<String>,
    /// The trunk ENI a member is associated with.
    pub trunk: Option<String>,
    /// `interface`, `trunk` (a trunk ENI itself) or `branch`.
    pub interface_type: String,
    /// Secondary addresses.
    pub secondary: Vec<String>,
    pub tags: Value,
}

pub struct VpcSim {
    /// Whose cloud vpc-sim plays: its ids, zones, instance types and API.
    pub cloud: Cloud,
    child: ChildGuard,
    pub prefix: String,
    pub ec2_url: String,
    admin_url: String,
    http: reqwest::Client,
}

const ACCESS_KEY: &str = "vpcsim";
const SECRET_KEY: &str = "vpcsim-secret";

/// The instance type on `cloud` that plays the role of AWS type `aws` in a trial (same
/// interfaces per node and addresses per interface where the clouds offer it): trials
/// name AWS types and run unchanged on Alibaba Cloud.
pub fn instance_type_on(cloud: Cloud, aws: &str) -> &str {
    match (cloud, aws) {
        (Cloud::Aws, t) => t,
        // 3 ENIs of 6 addresses, as t3.medium (trunking unused on SharedIP nodes).
        (Cloud::Alibaba, "t3.medium" | "m5.large") => "ecs.g7.large",
        (Cloud::Alibaba, "m5.xlarge") => "ecs.g7.xlarge",
        (Cloud::Alibaba, "m5.2xlarge") => "ecs.g7.2xlarge",
        (Cloud::Alibaba, "m5.4xlarge") => "ecs.g7.4xlarge",
        (Cloud::Alibaba, t) => t,
    }
}

impl VpcSim {
    /// Starts `bin` with the materializer on (namespaces `<prefix>-*`), behaving as
    /// `behaviour`, listening on `listen` (a free port); its log goes to
    /// `<dir>/vpc-sim.log`.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        prefix: &str,
        behaviour: &SimConfig,
        listen: IpAddr,
        cloud: Cloud,
    ) -> Result<Self, VpcError> {
        let behaviour_file = dir.join("vpc-sim-behaviour.json");
        let text =
            serde_json::to_string(behaviour).map_err(|e| VpcError::Behaviour(e.to_string()))?;
        std::fs::write(&behaviour_file, text).map_err(|e| VpcError::Behaviour(e.to_string()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--materialize", "--prefix", prefix, "--behaviour"])
            .arg(&behaviour_file)
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args([
                "--cloud",
                match cloud {
                    Cloud::Aws => "aws",
                    Cloud::Alibaba => "alibaba",
                },
            ])
            .arg("--listen")
            .arg(SocketAddr::new(listen, 0).to_string())
            .env("RUST_LOG", "info");
        let log = dir.join("vpc-sim.log");
        let child = ChildGuard::spawn("vpc-sim", cmd, &log).map_err(VpcError::Spawn)?;
        let timeout = Duration::from_secs(20);
        let deadline = Instant::now() + timeout;
        let urls = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| {
                    Some((
                        v["ec2"].as_str()?.to_owned(),
                        v["admin"].as_str()?.to_owned(),
                    ))
                });
            if let Some(urls) = found {
                break urls;
            }
            if child.has_exited() || Instant::now() > deadline {
                return Err(VpcError::NoAddress(timeout, child.log_tail(20)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(VpcSim {
            cloud,
            child,
            prefix: prefix.to_owned(),
            ec2_url: urls.0,
            admin_url: urls.1,
            http: reqwest::Client::new(),
        })
    }

    /// The access key pair operators sign their calls with, under the names the
    /// cloud's provider reads (the chart's credentials Secret holds these keys).
    pub fn credentials(&self) -> [(&'static str, &'static str); 2] {
        match self.cloud {
            Cloud::Aws => [
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ],
            Cloud::Alibaba => [
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET_KEY),
            ],
        }
    }

    /// The chart's `cloud` values for an operator of this cloud.
    pub fn chart_cloud(&self) -> (&'static str, &'static str) {
        match self.cloud {
            Cloud::Aws => ("aws", "us-east-1"),
            Cloud::Alibaba => ("alibaba", "cn-hangzhou"),
        }
    }

    /// The variables that point an operator at this cloud: the EC2 provider and AWS
    /// credentials, or the ECS provider and Alibaba Cloud credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let credentials = Credentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        };
        operator_env(
            self.cloud,
            self.chart_cloud().1,
            &self.ec2_url,
            &credentials,
        )
    }

    /// The namespace the materializer gives `node`.
    pub fn node_netns(&self, node: &str) -> String {
        vpc_sim::materialize::node_netns(&self.prefix, node)
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VpcError> {
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.admin_url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| VpcError::Admin(what.clone(), e.to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| VpcError::Admin(what.clone(), e.to_string()))?;
        if !status.is_success() {
            return Err(VpcError::Admin(what, format!("{status}: {text}")));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| VpcError::Admin(what, e.to_string()))
    }

    /// Registers an instance whose node lives in `netns` (the materializer makes it),
    /// with its primary ENI in subnet `subnet` (id or Name).
    pub async fn register(
        &self,
        node: &str,
        instance_type: &str,
        subnet: &str,
        netns: &str,
    ) -> Result<Instance, VpcError> {
        let v = self
            .admin(
                reqwest::Method::POST,
                "instances",
                Some(json!({"node_name": node,
                            "instance_type": instance_type_on(self.cloud, instance_type),
                            "subnet": subnet, "netns": netns})),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| VpcError::Admin("register".into(), e.to_string()))
    }

    pub async fn terminate(&self, instance_id: &str) -> Result<(), VpcError> {
        self.admin(
            reqwest::Method::DELETE,
            &format!("instances/{instance_id}"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Merges `patch` into the behaviour (faults, rate limits, latency).
    pub async fn configure(&self, patch: Value) -> Result<(), VpcError> {
        self.admin(reqwest::Method::PUT, "config", Some(patch))
            .await
            .map(|_| ())
    }

    /// The whole state (`GET /admin/state`).
    pub async fn state(&self) -> Result<Value, VpcError> {
        self.admin(reqwest::Method::GET, "state", None).await
    }

    /// Per action `{calls, throttled, faulted, timed_out, errors}`.
    pub async fn counters(&self) -> Result<Value, VpcError> {
        self.admin(reqwest::Method::GET, "counters", None).await
    }

    /// ENIs carrying `cluster`'s ownership tag.
    pub async fn owned_enis(&self, cluster: &str) -> Result<Vec<Eni>, VpcError> {
        let state = self.state().await?;
        Ok(enis_in(&state)
            .into_iter()
            .filter(|e| e.tags["eni-operator.io/cluster"].as_str() == Some(cluster))
            .collect())
    }

    /// Invariant violations the simulator finds in its own state (must be none).
    pub async fn violations(&self) -> Result<Vec<String>, VpcError> {
        let state = self.state().await?;
        Ok(state["invariant_violations"]
            .as_array()
            .map(|a| a.iter().map(|v| v.to_string()).collect())
            .unwrap_or_default())
    }

    /// Id of the security group named `name`.
    pub async fn group_id(&self, name: &str) -> Result<String, VpcError> {
        let state = self.state().await?;
        let groups = &state["state"]["groups"];
        let all: Vec<&Value> = match groups {
            Value::Object(m) => m.values().collect(),
            Value::Array(a) => a.iter().collect(),
            _ => Vec::new(),
        };
        all.into_iter()
            .find(|g| g["name"].as_str() == Some(name))
            .and_then(|g| g["id"].as_str().map(str::to_owned))
            .ok_or_else(|| VpcError::Admin("state".into(), format!("no security group {name}")))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }
}

/// The ENIs of a state dump (`VpcSim::state`).
pub fn enis_in(state: &Value) -> Vec<Eni> {
    let items: Vec<&Value> = match &state["state"]["enis"] {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|e| Eni {
            id: e["id"].as_str().unwrap_or_default().to_owned(),
            attached_to: e["attachment"]["instance_id"].as_str().map(str::to_owned),
            primary_ip: e["primary_ip"].as_str().unwrap_or_default().to_owned(),
            groups: strings(&e["groups"]),
            trunk: e["trunk_association"].as_str().map(str::to_owned),
            interface_type: e["interface_type"].as_str().unwrap_or_default().to_owned(),
            secondary: e["secondary_ips"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            tags: e["tags"].clone(),
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
