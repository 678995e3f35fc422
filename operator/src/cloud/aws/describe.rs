//! The EC2 provider's read calls: instances and their limits, interfaces by query,
//! trunk associations and subnets, with pagination and the filters they share.

use std::future::Future;

use aws_sdk_ec2::types::{Filter, InstanceType};

use super::super::error::CloudError;
use super::super::provider::CloudResult;
use super::super::tags;
use super::super::types::{
    Eni, EniQuery, Instance, InstanceLimits, SecurityGroup, Subnet, SubnetQuery, TrunkAssociation,
};
use super::errors::from_sdk;
use super::{AwsProvider, FILTER_VALUES, PAGE_SIZE, Retry, TRUNK_PAGE_SIZE, convert, trunking};

impl AwsProvider {
    pub(super) fn tag_filter(key: &str, value: &str) -> Filter {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    }

    pub(super) fn filter(name: &str, value: &str) -> Filter {
        Filter::builder().name(name).values(value).build()
    }

    /// Runs a paginated call to the end; each page passes the policy on its own.
    async fn collect_pages<T, F, Fut>(&self, action: &'static str, page: F) -> CloudResult<Vec<T>>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = CloudResult<(Vec<T>, Option<String>)>>,
    {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (mut batch, next) = self
                .policy
                .call(action, Retry::Safe, || page(token.clone()))
                .await?;
            items.append(&mut batch);
            match next.filter(|t| !t.is_empty()) {
                Some(next) if Some(&next) == token.as_ref() => {
                    return Err(CloudError::Unexpected(format!(
                        "{action} repeated its page token"
                    )));
                }
                Some(next) => token = Some(next),
                None => return Ok(items),
            }
        }
    }

    async fn describe_enis(&self, filters: Vec<Filter>) -> CloudResult<Vec<Eni>> {
        let pages = self
            .collect_pages("DescribeNetworkInterfaces", |token| {
                let request = self
                    .client
                    .describe_network_interfaces()
                    .set_filters(Some(filters.clone()))
                    .max_results(PAGE_SIZE)
                    .set_next_token(token);
                async move {
                    let out = request.send().await.map_err(from_sdk)?;
                    Ok((
                        out.network_interfaces().to_vec(),
                        out.next_token().map(str::to_owned),
                    ))
                }
            })
            .await?;
        pages.iter().map(convert::eni).collect()
    }

    /// Those of `ids` that exist. A `network-interface-id` filter instead of explicit ids:
    /// EC2 fails a whole id lookup with NotFound when one id is gone, while a filter just
    /// leaves it out, which is what inventory refreshes want.
    async fn describe_eni_ids(&self, ids: &[String]) -> CloudResult<Vec<Eni>> {
        let mut enis = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FILTER_VALUES) {
            let filter = Filter::builder()
                .name("network-interface-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            enis.extend(self.describe_enis(vec![filter]).await?);
        }
        Ok(enis)
    }

    pub(super) async fn describe_eni(&self, eni_id: &str) -> CloudResult<Eni> {
        self.describe_eni_ids(&[eni_id.to_owned()])
            .await?
            .into_iter()
            .find(|e| e.id == eni_id)
            .ok_or_else(|| CloudError::NotFound {
                code: "InvalidNetworkInterfaceID.NotFound".to_owned(),
                message: format!("network interface {eni_id} is not listed"),
            })
    }

    pub(super) async fn fetch_instance(&self, instance_id: &str) -> CloudResult<Instance> {
        let out = self
            .policy
            .call("DescribeInstances", Retry::Safe, || async {
                self.client
                    .describe_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map_err(from_sdk)
            })
            .await?;
        let found = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| CloudError::NotFound {
                code: "InvalidInstanceID.NotFound".to_owned(),
                message: format!("instance {instance_id} is not listed"),
            })?;
        convert::instance(found)
    }

    pub(super) async fn fetch_limits(&self, instance_type: &str) -> CloudResult<InstanceLimits> {
        if let Some(limits) = self.cached_limits(instance_type) {
            return Ok(limits);
        }
        let out = self
            .policy
            .call("DescribeInstanceTypes", Retry::Safe, || async {
                self.client
                    .describe_instance_types()
                    .instance_types(InstanceType::from(instance_type))
                    .send()
                    .await
                    .map_err(from_sdk)
            })
            .await?;
        let info = out
            .instance_types()
            .iter()
            .find(|t| t.instance_type().map(InstanceType::as_str) == Some(instance_type))
            .and_then(|t| t.network_info())
            .ok_or_else(|| CloudError::NotFound {
                code: "InvalidInstanceType".to_owned(),
                message: format!("no network information for instance type {instance_type}"),
            })?;
        let positive = |v: Option<i32>, what: &str| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| CloudError::missing(what))
        };
        let branches = trunking::branch_limit(instance_type, &self.trunk_overrides);
        let limits = InstanceLimits {
            max_enis: positive(
                info.maximum_network_interfaces(),
                "MaximumNetworkInterfaces",
            )?,
            ipv4_per_eni: positive(
                info.ipv4_addresses_per_interface(),
                "Ipv4AddressesPerInterface",
            )?,
            trunking_supported: branches.is_some(),
            branch_enis_per_trunk: branches.unwrap_or(0),
        };
        if let Ok(mut cache) = self.limits_cache.lock() {
            cache.insert(instance_type.to_owned(), limits);
        }
        Ok(limits)
    }

    pub(super) async fn fetch_enis(&self, query: &EniQuery) -> CloudResult<Vec<Eni>> {
        match query {
            EniQuery::Owned {
                pool,
                node,
                instance_id,
            } => {
                let mut filters = vec![Self::tag_filter(tags::CLUSTER, &self.cluster)];
                for (key, value) in [
                    (tags::POOL, pool),
                    (tags::NODE, node),
                    (tags::INSTANCE, instance_id),
                ] {
                    if let Some(value) = value {
                        filters.push(Self::tag_filter(key, value));
                    }
                }
                let enis = self.describe_enis(filters).await?;
                // Re-checked here: the collector must never act on a foreign interface,
                // even if a server ignored a filter.
                Ok(enis
                    .into_iter()
                    .filter(|e| e.tags.get(tags::CLUSTER) == Some(&self.cluster))
                    .collect())
            }
            EniQuery::AttachedTo(instance_id) => {
                let filters = vec![Self::filter("attachment.instance-id", instance_id)];
                let enis = self.describe_enis(filters).await?;
                Ok(enis
                    .into_iter()
                    .filter(|e| {
                        e.attachment
                            .as_ref()
                            .is_some_and(|a| &a.instance_id == instance_id)
                    })
                    .collect())
            }
            EniQuery::Ids(ids) if ids.is_empty() => Ok(Vec::new()),
            EniQuery::Ids(ids) => self.describe_eni_ids(ids).await,
        }
    }

    pub(super) async fn fetch_associations(
        &self,
        trunk_eni_id: &str,
    ) -> CloudResult<Vec<TrunkAssociation>> {
        let filter = Self::filter(
            "trunk-interface-association.trunk-interface-id",
            trunk_eni_id,
        );
        let all = self
            .collect_pages("DescribeTrunkInterfaceAssociations", |token| {
                let request = self
                    .client
                    .describe_trunk_interface_associations()
                    .filters(filter.clone())
                    .max_results(TRUNK_PAGE_SIZE)
                    .set_next_token(token);
                async move {
                    let out = request.send().await.map_err(from_sdk)?;
                    Ok((
                        out.interface_associations().to_vec(),
                        out.next_token().map(str::to_owned),
                    ))
                }
            })
            .await?;
        let mut associations = Vec::with_capacity(all.len());
        for a in &all {
            let a = convert::trunk_association(a)?;
            if a.trunk_eni_id == trunk_eni_id {
                associations.push(a);
            }
        }
        Ok(associations)
    }

    pub(super) async fn fetch_subnets(&self, query: &SubnetQuery) -> CloudResult<Vec<Subnet>> {
        let (ids, filters) = match query {
            SubnetQuery::Ids(ids) if ids.is_empty() => return Ok(Vec::new()),
            SubnetQuery::Ids(ids) => (ids.clone(), Vec::new()),
            SubnetQuery::Tagged(tags) => (
                Vec::new(),
                tags.iter()
                    .map(|(k, v)| Self::tag_filter(k, v))
                    .collect::<Vec<_>>(),
            ),
        };
        let by_ids = !ids.is_empty();
        let all = self
            .collect_pages("DescribeSubnets", |token| {
                let request = self
                    .client
                    .describe_subnets()
                    .set_subnet_ids(by_ids.then(|| ids.clone()))
                    .set_filters((!filters.is_empty()).then(|| filters.clone()))
                    .set_max_results((!by_ids).then_some(PAGE_SIZE))
                    .set_next_token(token);
                async move {
                    let out = request.send().await.map_err(from_sdk)?;
                    Ok((out.subnets().to_vec(), out.next_token().map(str::to_owned)))
                }
            })
            .await?;
        all.iter().map(convert::subnet).collect()
    }
    pub(super) async fn fetch_security_groups(
        &self,
        ids: &[String],
    ) -> CloudResult<Vec<SecurityGroup>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self
            .collect_pages("DescribeSecurityGroups", |token| {
                let request = self
                    .client
                    .describe_security_groups()
                    .set_group_ids(Some(ids.to_vec()))
                    .set_next_token(token);
                async move {
                    let out = request.send().await.map_err(from_sdk)?;
                    Ok((
                        out.security_groups().to_vec(),
                        out.next_token().map(str::to_owned),
                    ))
                }
            })
            .await?;
        Ok(groups
            .iter()
            .map(|g| SecurityGroup {
                id: g.group_id().unwrap_or_default().to_owned(),
                vpc_id: g.vpc_id().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    fn cached_limits(&self, instance_type: &str) -> Option<InstanceLimits> {
        self.limits_cache.lock().ok()?.get(instance_type).copied()
    }
}
