//! The Alibaba Cloud ECS provider (ECS API 2014-05-26, vSwitches from VPC 2016-04-28),
//! behind the same `CloudProvider` trait as EC2. No maintained Rust SDK covers these
//! calls: `client` signs RPC requests with ACS3-HMAC-SHA256 (the `eni-acs3` crate),
//! `convert` reads ECS's JSON, `errors` maps ECS codes onto `CloudError`.
//!
//! Where ECS differs from EC2 (docs/cloud.md has the call-by-call table):
//! - the cloud picks a new ENI's device index; a member ENI is attached to a trunk and
//!   its VLAN id is its device index there, so `associate_trunk` returns the VLAN ECS
//!   chose and the member ENI's id names the association;
//! - there is no attachment id: the provider's is `instance/eni`;
//! - `DeleteNetworkInterface` is asynchronous: the provider reads until the ENI is gone.

mod client;
mod convert;
pub mod errors;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use serde_json::Value;

pub use client::Endpoints;
use client::{Api, Client, Params, list, tags as tag_params};
use convert::{MEMBER_TAG, items};

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

/// Page size of DescribeNetworkInterfaces (ECS allows 10..=500).
const PAGE_SIZE: &str = "500";
/// Ids per DescribeNetworkInterfaces call.
const IDS_PER_CALL: usize = 100;
/// Groups per DescribeSecurityGroups call: one page of its largest size.
const GROUPS_PER_CALL: usize = 50;
/// vSwitches per DescribeVSwitches page (the VPC API's most).
const VSWITCH_PAGE: u32 = 50;
/// How long an asynchronous change (a deleted ENI leaving, a member reaching its
/// trunk) may take to show before the call gives up with `Transient`: 40 × 250 ms.
const SETTLE_POLLS: u32 = 40;
const SETTLE_POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct AlibabaSettings {
    pub cluster: String,
    pub endpoints: Endpoints,
    /// The operator's own bucket for mutations, and for describes.
    pub rate: RateLimit,
    pub describe_rate: RateLimit,
    /// A bucket per mutating action as well, when set (the cloud's per-action limit).
    pub action_rate: Option<RateLimit>,
    pub backoff: Backoff,
    pub attempt_timeout: Duration,
}

impl AlibabaSettings {
    /// The public regional endpoints of `region`.
    pub fn new(
        cluster: impl Into<String>,
        region: &str,
        access_key_id: String,
        access_key_secret: String,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            endpoints: Endpoints {
                ecs: format!("https://ecs.{region}.aliyuncs.com"),
                vpc: format!("https://vpc.{region}.aliyuncs.com"),
                region: region.to_owned(),
                access_key_id,
                access_key_secret,
            },
            rate: RateLimit::default(),
            describe_rate: RateLimit::default(),
            action_rate: None,
            backoff: Backoff::default(),
            attempt_timeout: Duration::from_secs(20),
        }
    }
}

pub struct AlibabaProvider {
    client: Client,
    policy: CallPolicy,
    cluster: String,
    limits_cache: Mutex<HashMap<String, InstanceLimits>>,
}

impl std::fmt::Debug for AlibabaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlibabaProvider")
            .field("cluster", &self.cluster)
            .field("region", &self.client.region())
            .finish_non_exhaustive()
    }
}

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// A fresh client token (ECS allows 64 ASCII characters).
fn new_client_token() -> String {
    hex::encode(rand::Rng::random::<[u8; 16]>(&mut rand::rng()))
}

/// `Ok(())` for "already gone".
fn absent_is_done(result: CloudResult<()>) -> CloudResult<()> {
    match result {
        Err(CloudError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

impl AlibabaProvider {
    pub fn new(settings: AlibabaSettings, registry: &mut Registry) -> CloudResult<Self> {
        let metrics = CloudMetrics::register(registry);
        Ok(Self {
            client: Client::new(settings.endpoints, settings.attempt_timeout)?,
            policy: CallPolicy::new(
                settings.rate,
                settings.describe_rate,
                settings.backoff,
                metrics,
            )
            .with_action_rate(settings.action_rate),
            cluster: settings.cluster,
            limits_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn metrics(&self) -> &CloudMetrics {
        self.policy.metrics()
    }

    async fn call(
        &self,
        api: Api,
        action: &'static str,
        retry: Retry,
        params: Params,
    ) -> CloudResult<Value> {
        self.policy
            .call(action, retry, || {
                self.client.call(api, action, params.clone())
            })
            .await
    }

    /// Every page of DescribeNetworkInterfaces for `params`, as raw items.
    async fn network_interfaces(&self, params: Params) -> CloudResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut page = params.clone();
            page.push(p("MaxResults", PAGE_SIZE));
            if !token.is_empty() {
                page.push(p("NextToken", token.clone()));
            }
            let v = self
                .call(Api::Ecs, "DescribeNetworkInterfaces", Retry::Safe, page)
                .await?;
            out.extend(
                items(&v, "NetworkInterfaceSets", "NetworkInterfaceSet")
                    .iter()
                    .cloned(),
            );
            token = v["NextToken"].as_str().unwrap_or_default().to_owned();
            if token.is_empty() {
                return Ok(out);
            }
        }
    }

    async fn raw_eni(&self, eni_id: &str) -> CloudResult<Option<Value>> {
        let mut params = Params::new();
        list(&mut params, "NetworkInterfaceId", [eni_id.to_owned()]);
        Ok(self.network_interfaces(params).await?.into_iter().next())
    }

    async fn raw_instance(&self, instance_id: &str) -> CloudResult<Value> {
        let ids = serde_json::to_string(&[instance_id]).unwrap_or_default();
        let v = self
            .call(
                Api::Ecs,
                "DescribeInstances",
                Retry::Safe,
                vec![p("InstanceIds", ids)],
            )
            .await?;
        // ECS answers an unknown id with an empty list.
        items(&v, "Instances", "Instance")
            .first()
            .cloned()
            .ok_or_else(|| CloudError::NotFound {
                code: "InvalidInstanceId.NotFound".to_owned(),
                message: format!("instance {instance_id} does not exist"),
            })
    }

    async fn instance_groups(&self, instance_id: &str) -> CloudResult<Vec<String>> {
        let v = self.raw_instance(instance_id).await?;
        Ok(items(&v, "SecurityGroupIds", "SecurityGroupId")
            .iter()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect())
    }

    /// The member ENI's ride on its trunk, `None` while it rides none.
    async fn membership(&self, eni_id: &str) -> CloudResult<Option<TrunkAssociation>> {
        Ok(self
            .raw_eni(eni_id)
            .await?
            .as_ref()
            .and_then(convert::membership))
    }

    /// The instance a trunk ENI is attached to.
    async fn trunk_instance(&self, trunk_eni_id: &str) -> CloudResult<String> {
        let trunk = self
            .raw_eni(trunk_eni_id)
            .await?
            .ok_or_else(|| CloudError::NotFound {
                code: "InvalidEniId.NotFound".to_owned(),
                message: format!("trunk ENI {trunk_eni_id} does not exist"),
            })?;
        trunk["InstanceId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| CloudError::InvalidState {
                code: "InvalidOperation.InvalidEniState".to_owned(),
                message: format!("trunk ENI {trunk_eni_id} is not attached"),
            })
    }
}

#[async_trait]
impl CloudProvider for AlibabaProvider {
    async fn describe_instance(&self, instance_id: &str) -> CloudResult<Instance> {
        convert::instance(&self.raw_instance(instance_id).await?)
    }

    async fn instance_limits(&self, instance_type: &str) -> CloudResult<InstanceLimits> {
        if let Some(l) = self
            .limits_cache
            .lock()
            .ok()
            .and_then(|c| c.get(instance_type).copied())
        {
            return Ok(l);
        }
        let v = self
            .call(
                Api::Ecs,
                "DescribeInstanceTypes",
                Retry::Safe,
                vec![p("InstanceTypes.1", instance_type)],
            )
            .await?;
        let found = items(&v, "InstanceTypes", "InstanceType")
            .iter()
            .find(|t| t["InstanceTypeId"].as_str() == Some(instance_type))
            .ok_or_else(|| CloudError::InvalidRequest {
                code: "InvalidInstanceType.NotFound".to_owned(),
                message: format!("instance type {instance_type} is unknown to ECS"),
            })?;
        let limits = convert::limits(found)?;
        if let Ok(mut c) = self.limits_cache.lock() {
            c.insert(instance_type.to_owned(), limits);
        }
        Ok(limits)
    }

    async fn list_enis(&self, query: &EniQuery) -> CloudResult<Vec<Eni>> {
        let raw = match query {
            EniQuery::Owned {
                pool,
                node,
                instance_id,
            } => {
                let mut wanted = Tags::from([(tags::CLUSTER.to_owned(), self.cluster.clone())]);
                let narrow = [
                    (tags::POOL, pool),
                    (tags::NODE, node),
                    (tags::INSTANCE, instance_id),
                ];
                for (key, value) in narrow {
                    if let Some(value) = value {
                        wanted.insert(key.to_owned(), value.clone());
                    }
                }
                let mut params = Params::new();
                tag_params(&mut params, &wanted);
                let found = self.network_interfaces(params).await?;
                // Never trust a server to have applied the filter: the collector acts on
                // what this returns.
                found
                    .into_iter()
                    .filter(|e| convert::tags(e).get(tags::CLUSTER) == Some(&self.cluster))
                    .collect()
            }
            EniQuery::AttachedTo(instance) => {
                self.network_interfaces(vec![p("InstanceId", instance.clone())])
                    .await?
            }
            EniQuery::Ids(ids) => {
                let mut all = Vec::new();
                for chunk in ids.chunks(IDS_PER_CALL) {
                    let mut params = Params::new();
                    list(&mut params, "NetworkInterfaceId", chunk.iter().cloned());
                    all.extend(self.network_interfaces(params).await?);
                }
                all
            }
        };
        raw.iter().map(convert::eni).collect()
    }

    async fn create_eni(&self, request: &CreateEniRequest) -> CloudResult<Eni> {
        let mut all_tags = tags::ownership_tags(&self.cluster, &request.owner, &request.tags);
        if request.kind == EniKind::Branch {
            all_tags.insert(MEMBER_TAG.to_owned(), "true".to_owned());
        }
        let mut params = vec![
            p("VSwitchId", request.subnet_id.clone()),
            p("Description", request.description.clone()),
            p(
                "InstanceType",
                if request.kind == EniKind::Trunk {
                    "Trunk"
                } else {
                    "Secondary"
                },
            ),
            p("ClientToken", request.client_token.clone()),
        ];
        // ECS has no VPC default group for a new ENI: without groups of its own, an ENI
        // takes those of the instance it is for (as EC2's default group would apply).
        let groups =
            if request.security_groups.is_empty() {
                let instance = request.owner.instance_id.as_deref().ok_or_else(|| {
                    CloudError::InvalidRequest {
                        code: "MissingParameter".to_owned(),
                        message: "ECS needs a security group for an ENI that is for no instance"
                            .to_owned(),
                    }
                })?;
                self.instance_groups(instance).await?
            } else {
                request.security_groups.clone()
            };
        list(&mut params, "SecurityGroupIds", groups);
        match request.initial_addresses {
            Some(InitialAddresses::Ips(n)) => {
                params.push(p("SecondaryPrivateIpAddressCount", n.to_string()));
            }
            Some(InitialAddresses::Prefixes(n)) => {
                params.push(p("Ipv4PrefixCount", n.to_string()));
            }
            None => {}
        }
        tag_params(&mut params, &all_tags);
        // Retried with the same client token: a repeat returns the first ENI.
        let v = self
            .call(Api::Ecs, "CreateNetworkInterface", Retry::Safe, params)
            .await?;
        convert::eni(&v)
    }

    async fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        _device_index: u32,
    ) -> CloudResult<String> {
        let params = vec![
            p("InstanceId", instance_id),
            p("NetworkInterfaceId", eni_id),
        ];
        // ECS picks the device index and has no client token for attach: only a
        // throttled attempt (which did nothing) is repeated here, and a refusal because
        // the ENI is no longer available is checked by reading it.
        match self
            .call(
                Api::Ecs,
                "AttachNetworkInterface",
                Retry::ThrottledOnly,
                params,
            )
            .await
        {
            Ok(_) => Ok(convert::attachment_id(instance_id, eni_id)),
            Err(e) => match self.raw_eni(eni_id).await? {
                Some(v) if v["InstanceId"].as_str() == Some(instance_id) => {
                    Ok(convert::attachment_id(instance_id, eni_id))
                }
                _ => Err(e),
            },
        }
    }

    async fn detach_eni(&self, attachment_id: &str, _force: bool) -> CloudResult<()> {
        let (instance_id, eni_id) = convert::parse_attachment_id(attachment_id)?;
        let params = vec![
            p("InstanceId", instance_id),
            p("NetworkInterfaceId", eni_id),
        ];
        let result = self
            .call(
                Api::Ecs,
                "DetachNetworkInterface",
                Retry::ThrottledOnly,
                params,
            )
            .await
            .map(drop);
        match absent_is_done(result) {
            // Refused because it is not attached there (any more): done.
            Err(e) => match self.raw_eni(eni_id).await? {
                Some(v) if v["InstanceId"].as_str() == Some(instance_id) => Err(e),
                _ => Ok(()),
            },
            ok => ok,
        }
    }

    async fn delete_eni(&self, eni_id: &str) -> CloudResult<()> {
        let result = self
            .call(
                Api::Ecs,
                "DeleteNetworkInterface",
                Retry::Safe,
                vec![p("NetworkInterfaceId", eni_id)],
            )
            .await
            .map(drop);
        absent_is_done(result)?;
        // Deletion is asynchronous on ECS: done when the ENI is gone.
        for _ in 0..SETTLE_POLLS {
            if self.raw_eni(eni_id).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(SETTLE_POLL_INTERVAL).await;
        }
        Err(CloudError::Transient {
            code: "DeleteInProgress".to_owned(),
            message: format!("ENI {eni_id} is still being deleted"),
        })
    }

    async fn assign_addresses(
        &self,
        eni_id: &str,
        assignment: &AddressAssignment,
    ) -> CloudResult<AssignedAddresses> {
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        match assignment {
            AddressAssignment::IpCount(n) => {
                params.push(p("SecondaryPrivateIpAddressCount", n.to_string()));
            }
            AddressAssignment::Ips(ips) => {
                list(
                    &mut params,
                    "PrivateIpAddress",
                    ips.iter().map(ToString::to_string),
                );
            }
            AddressAssignment::PrefixCount(n) => {
                params.push(p("Ipv4PrefixCount", n.to_string()));
            }
            AddressAssignment::Prefixes(prefixes) => {
                list(
                    &mut params,
                    "Ipv4Prefix",
                    prefixes.iter().map(ToString::to_string),
                );
            }
        }
        // ECS takes a client token here (EC2 does not): one per call, the same on every
        // retry, makes even a count-based assign safe to repeat after a lost answer.
        params.push(p("ClientToken", new_client_token()));
        let v = self
            .call(Api::Ecs, "AssignPrivateIpAddresses", Retry::Safe, params)
            .await?;
        let set = &v["AssignedPrivateIpAddressesSet"];
        let strings = |outer: &str, inner: &str| -> Vec<String> {
            set[outer][inner]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let bad = |s: &String| CloudError::Unexpected(format!("not an address: {s}"));
        Ok(AssignedAddresses {
            ips: strings("PrivateIpSet", "PrivateIpAddress")
                .iter()
                .map(|s| s.parse().map_err(|_| bad(s)))
                .collect::<CloudResult<_>>()?,
            prefixes: strings("Ipv4PrefixSet", "Ipv4Prefixes")
                .iter()
                .map(|s| s.parse().map_err(|_| bad(s)))
                .collect::<CloudResult<_>>()?,
        })
    }

    async fn unassign_addresses(&self, eni_id: &str, release: &AddressRelease) -> CloudResult<()> {
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        match release {
            AddressRelease::Ips(ips) if ips.is_empty() => return Ok(()),
            AddressRelease::Prefixes(ps) if ps.is_empty() => return Ok(()),
            AddressRelease::Ips(ips) => {
                list(
                    &mut params,
                    "PrivateIpAddress",
                    ips.iter().map(ToString::to_string),
                );
            }
            AddressRelease::Prefixes(ps) => {
                list(
                    &mut params,
                    "Ipv4Prefix",
                    ps.iter().map(ToString::to_string),
                );
            }
        }
        // InvalidIp.IpUnassigned (already released) classifies as NotFound: done.
        let result = self
            .call(Api::Ecs, "UnassignPrivateIpAddresses", Retry::Safe, params)
            .await
            .map(drop);
        absent_is_done(result)
    }

    async fn set_security_groups(&self, eni_id: &str, groups: &[String]) -> CloudResult<()> {
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        list(&mut params, "SecurityGroupId", groups.iter().cloned());
        self.call(
            Api::Ecs,
            "ModifyNetworkInterfaceAttribute",
            Retry::Safe,
            params,
        )
        .await
        .map(drop)
    }

    async fn tag_resources(&self, resource_ids: &[String], tags: &Tags) -> CloudResult<()> {
        if resource_ids.is_empty() || tags.is_empty() {
            return Ok(());
        }
        let mut params = vec![p("ResourceType", "eni")];
        list(&mut params, "ResourceId", resource_ids.iter().cloned());
        tag_params(&mut params, tags);
        self.call(Api::Ecs, "TagResources", Retry::Safe, params)
            .await
            .map(drop)
    }

    async fn associate_trunk(
        &self,
        request: &AssociateTrunkRequest,
    ) -> CloudResult<TrunkAssociation> {
        let instance_id = self.trunk_instance(&request.trunk_eni_id).await?;
        let params = vec![
            p("InstanceId", instance_id),
            p("NetworkInterfaceId", request.branch_eni_id.clone()),
            p("TrunkNetworkInstanceId", request.trunk_eni_id.clone()),
        ];
        // The VLAN id is ECS's choice (the member's device index on the trunk); the
        // requested one is not sent. A refused repeat of an attach that went through is
        // recognised by reading the member.
        let result = self
            .call(
                Api::Ecs,
                "AttachNetworkInterface",
                Retry::ThrottledOnly,
                params,
            )
            .await
            .map_err(|e| match e {
                CloudError::LimitExceeded { message, .. } => CloudError::LimitExceeded {
                    limit: Limit::BranchInterfaces,
                    message,
                },
                other => other,
            });
        if let Err(e) = result {
            return match self.membership(&request.branch_eni_id).await? {
                Some(m) if m.trunk_eni_id == request.trunk_eni_id => Ok(m),
                _ => Err(e),
            };
        }
        // The attach is asynchronous: the member shows its device index once attached.
        for _ in 0..SETTLE_POLLS {
            if let Some(m) = self.membership(&request.branch_eni_id).await? {
                return if m.trunk_eni_id == request.trunk_eni_id {
                    Ok(m)
                } else {
                    Err(CloudError::InvalidState {
                        code: "InvalidOperation.InvalidEniState".to_owned(),
                        message: format!(
                            "{} rides trunk {}, not {}",
                            m.branch_eni_id, m.trunk_eni_id, request.trunk_eni_id
                        ),
                    })
                };
            }
            tokio::time::sleep(SETTLE_POLL_INTERVAL).await;
        }
        Err(CloudError::Transient {
            code: "AttachInProgress".to_owned(),
            message: format!(
                "member {} is not on trunk {} yet",
                request.branch_eni_id, request.trunk_eni_id
            ),
        })
    }

    async fn disassociate_trunk(
        &self,
        association_id: &str,
        _client_token: &str,
    ) -> CloudResult<()> {
        // The association is the member ENI itself.
        let Some(member) = self.raw_eni(association_id).await? else {
            return Ok(());
        };
        let Some(m) = convert::membership(&member) else {
            return Ok(());
        };
        let instance_id = member["Attachment"]["InstanceId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let params = vec![
            p("InstanceId", instance_id),
            p("NetworkInterfaceId", m.branch_eni_id.clone()),
            p("TrunkNetworkInstanceId", m.trunk_eni_id.clone()),
        ];
        let result = self
            .call(Api::Ecs, "DetachNetworkInterface", Retry::Safe, params)
            .await
            .map(drop);
        absent_is_done(result)
    }

    async fn trunk_associations(&self, trunk_eni_id: &str) -> CloudResult<Vec<TrunkAssociation>> {
        let instance_id = match self.trunk_instance(trunk_eni_id).await {
            Ok(i) => i,
            // An unattached trunk carries no member.
            Err(CloudError::InvalidState { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let members = self
            .network_interfaces(vec![p("InstanceId", instance_id), p("Type", "Member")])
            .await?;
        Ok(members
            .iter()
            .filter_map(convert::membership)
            .filter(|m| m.trunk_eni_id == trunk_eni_id)
            .collect())
    }

    async fn describe_subnets(&self, query: &SubnetQuery) -> CloudResult<Vec<Subnet>> {
        let pages: Vec<Params> = match query {
            // The VPC API takes one vSwitch id per call.
            SubnetQuery::Ids(ids) => ids
                .iter()
                .map(|id| vec![p("VSwitchId", id.clone())])
                .collect(),
            SubnetQuery::Tagged(wanted) => {
                let mut params = Params::new();
                tag_params(&mut params, wanted);
                vec![params]
            }
        };
        let mut out = Vec::new();
        for params in pages {
            let mut number = 1;
            loop {
                let mut page = params.clone();
                page.push(p("PageSize", VSWITCH_PAGE.to_string()));
                page.push(p("PageNumber", number.to_string()));
                let v = self
                    .call(Api::Vpc, "DescribeVSwitches", Retry::Safe, page)
                    .await?;
                let found = items(&v, "VSwitches", "VSwitch");
                for s in found {
                    out.push(convert::vswitch(s)?);
                }
                let total = v["TotalCount"].as_u64().unwrap_or(0);
                if found.is_empty() || u64::from(number * VSWITCH_PAGE) >= total {
                    break;
                }
                number += 1;
            }
        }
        Ok(out)
    }

    async fn describe_security_groups(&self, ids: &[String]) -> CloudResult<Vec<SecurityGroup>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(GROUPS_PER_CALL) {
            let json = serde_json::to_string(chunk).unwrap_or_default();
            let v = self
                .call(
                    Api::Ecs,
                    "DescribeSecurityGroups",
                    Retry::Safe,
                    vec![p("SecurityGroupIds", json), p("PageSize", "50")],
                )
                .await?;
            for g in items(&v, "SecurityGroups", "SecurityGroup") {
                out.push(convert::security_group(g)?);
            }
        }
        // ECS leaves unknown ids out of the answer; the trait names the missing one.
        if let Some(missing) = ids.iter().find(|id| !out.iter().any(|g| &g.id == *id)) {
            return Err(CloudError::NotFound {
                code: "InvalidSecurityGroupId.NotFound".to_owned(),
                message: format!("security group {missing} does not exist"),
            });
        }
        Ok(out)
    }
}
