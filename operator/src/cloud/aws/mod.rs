//! The EC2 provider (aws-sdk-ec2). Talks to AWS, or to any EC2-compatible endpoint
//! (vpc-sim, moto) through the endpoint override.

mod convert;
mod describe;
mod errors;
mod trunking;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{NetworkInterfaceCreationType, ResourceType, Tag, TagSpecification};
use prometheus_client::registry::Registry;

use super::error::{CloudError, Limit};
use super::metrics::CloudMetrics;
use super::policy::{Backoff, CallPolicy, RateLimit, Retry};
use super::provider::{CloudProvider, CloudResult};
use super::tags;
use super::types::{
    AddressAssignment, AddressRelease, AssignedAddresses, AssociateTrunkRequest, CreateEniRequest,
    Eni, EniKind, EniQuery, InitialAddresses, Instance, InstanceLimits, SecurityGroup, Subnet,
    SubnetQuery, Tags, TrunkAssociation,
};
use errors::from_sdk;

/// Page size of list calls (EC2 allows 5..=1000; trunk associations at most 255).
const PAGE_SIZE: i32 = 500;
const TRUNK_PAGE_SIZE: i32 = 255;
/// Values per filter; EC2 documents 200 as the most one filter takes.
const FILTER_VALUES: usize = 200;

/// Settings of the EC2 provider beyond the standard AWS configuration chain.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// Value of the `eni-operator.io/cluster` tag on everything this operator creates.
    pub cluster: String,
    /// EC2 endpoint to use instead of the region's (vpc-sim, moto, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// The operator's own bucket for mutations, and for describes.
    pub rate: RateLimit,
    pub describe_rate: RateLimit,
    /// A bucket per mutating action as well, when set (the cloud's per-action limit).
    pub action_rate: Option<RateLimit>,
    pub backoff: Backoff,
    /// Time limit of one request attempt; a timeout counts as `Transient`.
    pub attempt_timeout: Duration,
    /// Branch interfaces per trunk for types the published table lacks (0 = no trunking).
    pub trunk_branch_overrides: BTreeMap<String, u32>,
}

impl AwsSettings {
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            endpoint_url: None,
            rate: RateLimit::default(),
            describe_rate: RateLimit::default(),
            action_rate: None,
            backoff: Backoff::default(),
            attempt_timeout: Duration::from_secs(20),
            trunk_branch_overrides: BTreeMap::new(),
        }
    }
}

/// Loads region and credentials from the standard AWS chain (environment, profile files,
/// web identity, IMDS); `region` overrides the chain's region when set.
pub async fn load_sdk_config(region: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

pub struct AwsProvider {
    client: Client,
    policy: CallPolicy,
    cluster: String,
    trunk_overrides: BTreeMap<String, u32>,
    limits_cache: Mutex<HashMap<String, InstanceLimits>>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// Builds the provider and registers its metrics in `registry`.
    pub fn new(sdk: &SdkConfig, settings: AwsSettings, registry: &mut Registry) -> Self {
        // The SDK's own retries are off: every retry goes through our limiter and backoff,
        // so that attempts are counted, paced and bounded in one place.
        let mut conf = aws_sdk_ec2::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(settings.attempt_timeout)
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        let metrics = CloudMetrics::register(registry);
        Self {
            client: Client::from_conf(conf.build()),
            policy: CallPolicy::new(
                settings.rate,
                settings.describe_rate,
                settings.backoff,
                metrics,
            )
            .with_action_rate(settings.action_rate),
            cluster: settings.cluster,
            trunk_overrides: settings.trunk_branch_overrides,
            limits_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn metrics(&self) -> &CloudMetrics {
        self.policy.metrics()
    }
}

/// `Ok(())` for "already gone": deletes and detaches converge on absence.
fn absent_is_done(result: CloudResult<()>) -> CloudResult<()> {
    match result {
        Err(CloudError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

fn to_i32(n: u32, what: &str) -> CloudResult<i32> {
    i32::try_from(n).map_err(|_| CloudError::InvalidRequest {
        code: "InvalidParameterValue".to_owned(),
        message: format!("{what} {n} is too large"),
    })
}

fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

#[async_trait]
impl CloudProvider for AwsProvider {
    async fn describe_instance(&self, instance_id: &str) -> CloudResult<Instance> {
        self.fetch_instance(instance_id).await
    }

    async fn instance_limits(&self, instance_type: &str) -> CloudResult<InstanceLimits> {
        self.fetch_limits(instance_type).await
    }

    async fn list_enis(&self, query: &EniQuery) -> CloudResult<Vec<Eni>> {
        self.fetch_enis(query).await
    }

    async fn create_eni(&self, request: &CreateEniRequest) -> CloudResult<Eni> {
        let all_tags = tags::ownership_tags(&self.cluster, &request.owner, &request.tags);
        let tag_spec = TagSpecification::builder()
            .resource_type(ResourceType::NetworkInterface)
            .set_tags(Some(ec2_tags(&all_tags)))
            .build();
        let interface_type = match request.kind {
            EniKind::Standard => None,
            EniKind::Trunk => Some(NetworkInterfaceCreationType::Trunk),
            EniKind::Branch => Some(NetworkInterfaceCreationType::Branch),
        };
        let (ip_count, prefix_count) = match request.initial_addresses {
            None => (None, None),
            Some(InitialAddresses::Ips(n)) => (Some(to_i32(n, "address count")?), None),
            Some(InitialAddresses::Prefixes(n)) => (None, Some(to_i32(n, "prefix count")?)),
        };
        // Retried with the same client token: a repeat returns the first interface.
        let out = self
            .policy
            .call("CreateNetworkInterface", Retry::Safe, || {
                let request = self
                    .client
                    .create_network_interface()
                    .subnet_id(&request.subnet_id)
                    .set_groups(Some(request.security_groups.clone()))
                    .description(&request.description)
                    .set_interface_type(interface_type.clone())
                    .set_secondary_private_ip_address_count(ip_count)
                    .set_ipv4_prefix_count(prefix_count)
                    .tag_specifications(tag_spec.clone())
                    .client_token(&request.client_token);
                async move { request.send().await.map_err(from_sdk) }
            })
            .await?;
        let eni = out
            .network_interface()
            .ok_or_else(|| CloudError::missing("NetworkInterface"))?;
        convert::eni(eni)
    }

    async fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
    ) -> CloudResult<String> {
        let index = to_i32(device_index, "device index")?;
        let result = self
            .policy
            .call("AttachNetworkInterface", Retry::Safe, || async {
                let out = self
                    .client
                    .attach_network_interface()
                    .network_interface_id(eni_id)
                    .instance_id(instance_id)
                    .device_index(index)
                    .send()
                    .await
                    .map_err(from_sdk)?;
                out.attachment_id()
                    .map(str::to_owned)
                    .ok_or_else(|| CloudError::missing("AttachmentId"))
            })
            .await;
        match result {
            // EC2 has no client token for attach: a repeat of an attach that went through
            // (after a timeout, or a crash of the caller) finds the interface in use.
            Err(e @ CloudError::InvalidState { .. }) => {
                let eni = self.describe_eni(eni_id).await?;
                match eni.attachment {
                    Some(a) if a.instance_id == instance_id && a.device_index == device_index => {
                        Ok(a.id)
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    async fn detach_eni(&self, attachment_id: &str, force: bool) -> CloudResult<()> {
        let result = self
            .policy
            .call("DetachNetworkInterface", Retry::Safe, || async {
                self.client
                    .detach_network_interface()
                    .attachment_id(attachment_id)
                    .force(force)
                    .send()
                    .await
                    .map(drop)
                    .map_err(from_sdk)
            })
            .await;
        absent_is_done(result)
    }

    async fn delete_eni(&self, eni_id: &str) -> CloudResult<()> {
        let result = self
            .policy
            .call("DeleteNetworkInterface", Retry::Safe, || async {
                self.client
                    .delete_network_interface()
                    .network_interface_id(eni_id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(from_sdk)
            })
            .await;
        absent_is_done(result)
    }

    async fn assign_addresses(
        &self,
        eni_id: &str,
        assignment: &AddressAssignment,
    ) -> CloudResult<AssignedAddresses> {
        let mut request = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(eni_id);
        request = match assignment {
            AddressAssignment::IpCount(n) => {
                request.secondary_private_ip_address_count(to_i32(*n, "address count")?)
            }
            AddressAssignment::Ips(ips) => request
                .set_private_ip_addresses(Some(ips.iter().map(ToString::to_string).collect())),
            AddressAssignment::PrefixCount(n) => {
                request.ipv4_prefix_count(to_i32(*n, "prefix count")?)
            }
            AddressAssignment::Prefixes(prefixes) => {
                request.set_ipv4_prefixes(Some(prefixes.iter().map(ToString::to_string).collect()))
            }
        };
        let retry = if assignment.is_idempotent() {
            Retry::Safe
        } else {
            Retry::ThrottledOnly
        };
        let out = self
            .policy
            .call("AssignPrivateIpAddresses", retry, || {
                let request = request.clone();
                async move { request.send().await.map_err(from_sdk) }
            })
            .await?;
        Ok(AssignedAddresses {
            ips: convert::ipv4_list(
                out.assigned_private_ip_addresses()
                    .iter()
                    .map(|a| a.private_ip_address().map(str::to_owned)),
                "PrivateIpAddress",
            )?,
            prefixes: convert::prefix_list(
                out.assigned_ipv4_prefixes()
                    .iter()
                    .map(|p| p.ipv4_prefix().map(str::to_owned)),
            )?,
        })
    }

    async fn unassign_addresses(&self, eni_id: &str, release: &AddressRelease) -> CloudResult<()> {
        let request = self
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(eni_id);
        let request = match release {
            AddressRelease::Ips(ips) if ips.is_empty() => return Ok(()),
            AddressRelease::Prefixes(p) if p.is_empty() => return Ok(()),
            AddressRelease::Ips(ips) => request
                .set_private_ip_addresses(Some(ips.iter().map(ToString::to_string).collect())),
            AddressRelease::Prefixes(prefixes) => {
                request.set_ipv4_prefixes(Some(prefixes.iter().map(ToString::to_string).collect()))
            }
        };
        self.policy
            .call("UnassignPrivateIpAddresses", Retry::Safe, || {
                let request = request.clone();
                async move { request.send().await.map(drop).map_err(from_sdk) }
            })
            .await
    }

    async fn set_security_groups(&self, eni_id: &str, groups: &[String]) -> CloudResult<()> {
        self.policy
            .call("ModifyNetworkInterfaceAttribute", Retry::Safe, || async {
                self.client
                    .modify_network_interface_attribute()
                    .network_interface_id(eni_id)
                    .set_groups(Some(groups.to_vec()))
                    .send()
                    .await
                    .map(drop)
                    .map_err(from_sdk)
            })
            .await
    }

    async fn tag_resources(&self, resource_ids: &[String], tags: &Tags) -> CloudResult<()> {
        if resource_ids.is_empty() || tags.is_empty() {
            return Ok(());
        }
        self.policy
            .call("CreateTags", Retry::Safe, || async {
                self.client
                    .create_tags()
                    .set_resources(Some(resource_ids.to_vec()))
                    .set_tags(Some(ec2_tags(tags)))
                    .send()
                    .await
                    .map(drop)
                    .map_err(from_sdk)
            })
            .await
    }

    async fn associate_trunk(
        &self,
        request: &AssociateTrunkRequest,
    ) -> CloudResult<TrunkAssociation> {
        let out = self
            .policy
            .call("AssociateTrunkInterface", Retry::Safe, || async {
                self.client
                    .associate_trunk_interface()
                    .trunk_interface_id(&request.trunk_eni_id)
                    .branch_interface_id(&request.branch_eni_id)
                    .vlan_id(i32::from(request.vlan_id))
                    .client_token(&request.client_token)
                    .send()
                    .await
                    .map_err(from_sdk)
            })
            .await
            .map_err(|e| match e {
                // For this call EC2's attachment limit is the trunk's branch limit.
                CloudError::LimitExceeded {
                    limit: Limit::Attachments,
                    message,
                } => CloudError::LimitExceeded {
                    limit: Limit::BranchInterfaces,
                    message,
                },
                other => other,
            })?;
        let association = out
            .interface_association()
            .ok_or_else(|| CloudError::missing("InterfaceAssociation"))?;
        convert::trunk_association(association)
    }

    async fn disassociate_trunk(
        &self,
        association_id: &str,
        client_token: &str,
    ) -> CloudResult<()> {
        let result = self
            .policy
            .call("DisassociateTrunkInterface", Retry::Safe, || async {
                self.client
                    .disassociate_trunk_interface()
                    .association_id(association_id)
                    .client_token(client_token)
                    .send()
                    .await
                    .map(drop)
                    .map_err(from_sdk)
            })
            .await;
        absent_is_done(result)
    }

    async fn trunk_associations(&self, trunk_eni_id: &str) -> CloudResult<Vec<TrunkAssociation>> {
        self.fetch_associations(trunk_eni_id).await
    }

    async fn describe_subnets(&self, query: &SubnetQuery) -> CloudResult<Vec<Subnet>> {
        self.fetch_subnets(query).await
    }

    async fn describe_security_groups(&self, ids: &[String]) -> CloudResult<Vec<SecurityGroup>> {
        self.fetch_security_groups(ids).await
    }
}
