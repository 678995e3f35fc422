//! Describe* actions: explicit ids, filters, NextToken/MaxResults pagination.

use super::params::{Filter, Params, decode_next_token, encode_next_token};
use super::render;
use super::xml::Xml;
use crate::catalog::Catalog;
use crate::cloud::CloudState;
use crate::cloud::model::Tags;
use crate::error::{CloudError, CloudResult, ErrorCode};

/// Values a record offers for a filter name; `None` when the filter is unknown.
type Fields<'a, T> = &'a dyn Fn(&T, &str) -> Option<Vec<String>>;

fn tag_fields(tags: &Tags, name: &str) -> Option<Vec<String>> {
    if name == "tag-key" {
        return Some(tags.keys().cloned().collect());
    }
    if name == "tag-value" {
        return Some(tags.values().cloned().collect());
    }
    let key = name.strip_prefix("tag:")?;
    Some(tags.get(key).cloned().into_iter().collect())
}

fn filter<'a, T>(
    items: Vec<&'a T>,
    filters: &[Filter],
    known: &[&str],
    fields: Fields<'_, T>,
) -> CloudResult<Vec<&'a T>> {
    for f in filters {
        let generic = f.name.starts_with("tag:") || f.name == "tag-key" || f.name == "tag-value";
        if !generic && !known.contains(&f.name.as_str()) {
            return Err(CloudError::invalid_parameter(format!(
                "The filter '{}' is invalid",
                f.name
            )));
        }
    }
    Ok(items
        .into_iter()
        .filter(|item| {
            filters.iter().all(|f| {
                let values = fields(item, &f.name).unwrap_or_default();
                f.matches_any(values.iter().map(String::as_str))
            })
        })
        .collect())
}

/// Page of `items` (sorted by key) after the NextToken, at most MaxResults long.
fn paginate<T>(
    items: Vec<(&str, T)>,
    params: &Params,
    max: (u32, u32),
) -> CloudResult<(Vec<T>, Option<String>)> {
    let max_results = params.parsed::<u32>("MaxResults")?;
    if let Some(m) = max_results
        && (m < max.0 || m > max.1)
    {
        return Err(CloudError::invalid_parameter(format!(
            "Value ( {m} ) for parameter maxResults is invalid. Expecting a value between {} and {}.",
            max.0, max.1
        )));
    }
    let after = match params.get("NextToken") {
        Some(token) => Some(decode_next_token(token)?),
        None => None,
    };
    let mut page: Vec<(&str, T)> = items
        .into_iter()
        .filter(|(k, _)| after.as_deref().is_none_or(|a| *k > a))
        .collect();
    let limit = max_results.unwrap_or(u32::MAX) as usize;
    let next = (page.len() > limit).then(|| encode_next_token(page[limit - 1].0));
    page.truncate(limit);
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
}

fn no_ids_with_max_results(params: &Params, ids: &[String]) -> CloudResult<()> {
    if !ids.is_empty() && params.get("MaxResults").is_some() {
        return Err(CloudError::new(
            ErrorCode::InvalidParameterCombination,
            "The parameter MaxResults cannot be used with the ids parameter",
        ));
    }
    Ok(())
}

pub fn network_interfaces(
    params: &Params,
    state: &CloudState,
    request_id: &str,
) -> CloudResult<String> {
    let ids = params.list("NetworkInterfaceId");
    no_ids_with_max_results(params, &ids)?;
    if let Some(missing) = ids.iter().find(|id| !state.enis.contains_key(*id)) {
        return Err(CloudError::eni_not_found(missing));
    }
    let items = state
        .enis
        .values()
        .filter(|e| ids.is_empty() || ids.contains(&e.id))
        .collect();
    let known = [
        "network-interface-id",
        "subnet-id",
        "vpc-id",
        "availability-zone",
        "status",
        "interface-type",
        "attachment.instance-id",
        "attachment.attachment-id",
        "attachment.status",
        "attachment.device-index",
        "private-ip-address",
        "addresses.private-ip-address",
        "mac-address",
        "group-id",
        "description",
        "owner-id",
        "requester-managed",
        "ipv4-prefix",
    ];
    let fields = |e: &crate::cloud::model::Eni, name: &str| -> Option<Vec<String>> {
        let att = e.attachment.as_ref();
        Some(match name {
            "network-interface-id" => vec![e.id.clone()],
            "subnet-id" => vec![e.subnet_id.clone()],
            "vpc-id" => vec![state.vpc.id.clone()],
            "availability-zone" => vec![e.az.clone()],
            "status" => vec![e.status().as_str().into()],
            "interface-type" => vec![e.interface_type.as_str().into()],
            "attachment.instance-id" => att.map(|a| a.instance_id.clone()).into_iter().collect(),
            "attachment.attachment-id" => att.map(|a| a.id.clone()).into_iter().collect(),
            "attachment.status" => att
                .map(|a| a.state.as_str().to_owned())
                .into_iter()
                .collect(),
            "attachment.device-index" => att
                .map(|a| a.device_index.to_string())
                .into_iter()
                .collect(),
            "private-ip-address" => vec![e.primary_ip.to_string()],
            "addresses.private-ip-address" => e.all_ips().map(|ip| ip.to_string()).collect(),
            "mac-address" => vec![e.mac.clone()],
            "group-id" => e.groups.clone(),
            "description" => vec![e.description.clone()],
            "owner-id" => vec![crate::cloud::OWNER_ID.into()],
            "requester-managed" => vec!["false".into()],
            "ipv4-prefix" => e.prefixes.iter().map(|p| p.to_string()).collect(),
            other => tag_fields(&e.tags, other)?,
        })
    };
    let matched = filter(items, &params.filters(), &known, &fields)?;
    let keyed = matched.into_iter().map(|e| (e.id.as_str(), e)).collect();
    let (page, next) = paginate(keyed, params, (5, 1000))?;
    Ok(Xml::response(
        "DescribeNetworkInterfaces",
        request_id,
        |x| {
            x.list("networkInterfaceSet", page, |x, e| {
                render::network_interface(x, state, e)
            });
            x.opt_leaf("nextToken", next);
        },
    ))
}

pub fn instances(params: &Params, state: &CloudState, request_id: &str) -> CloudResult<String> {
    let ids = params.list("InstanceId");
    no_ids_with_max_results(params, &ids)?;
    if let Some(missing) = ids.iter().find(|id| !state.instances.contains_key(*id)) {
        return Err(CloudError::instance_not_found(missing));
    }
    let items = state
        .instances
        .values()
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .collect();
    let known = [
        "instance-id",
        "instance-type",
        "availability-zone",
        "subnet-id",
        "vpc-id",
        "private-ip-address",
        "private-dns-name",
        "instance-state-name",
        "network-interface.network-interface-id",
    ];
    let fields = |i: &crate::cloud::model::Instance, name: &str| -> Option<Vec<String>> {
        Some(match name {
            "instance-id" => vec![i.id.clone()],
            "instance-type" => vec![i.instance_type.clone()],
            "availability-zone" => vec![i.az.clone()],
            "subnet-id" => vec![i.subnet_id.clone()],
            "vpc-id" => vec![state.vpc.id.clone()],
            "private-ip-address" => vec![i.private_ip.to_string()],
            "private-dns-name" => vec![render::private_dns_name(i.private_ip, &state.vpc.region)],
            "instance-state-name" => vec!["running".into()],
            "network-interface.network-interface-id" => state
                .enis
                .values()
                .filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == i.id))
                .map(|e| e.id.clone())
                .collect(),
            other => tag_fields(&i.tags, other)?,
        })
    };
    let matched = filter(items, &params.filters(), &known, &fields)?;
    let keyed = matched.into_iter().map(|i| (i.id.as_str(), i)).collect();
    let (page, next) = paginate(keyed, params, (5, 1000))?;
    Ok(Xml::response("DescribeInstances", request_id, |x| {
        x.list("reservationSet", page, |x, i| {
            render::reservation(x, state, i)
        });
        x.opt_leaf("nextToken", next);
    }))
}

pub fn subnets(params: &Params, state: &CloudState, request_id: &str) -> CloudResult<String> {
    let ids = params.list("SubnetId");
    no_ids_with_max_results(params, &ids)?;
    if let Some(missing) = ids.iter().find(|id| !state.subnets.contains_key(*id)) {
        return Err(CloudError::subnet_not_found(missing));
    }
    let items = state
        .subnets
        .values()
        .filter(|s| ids.is_empty() || ids.contains(&s.id))
        .collect();
    let known = [
        "subnet-id",
        "vpc-id",
        "availability-zone",
        "cidr-block",
        "cidr",
        "state",
        "available-ip-address-count",
    ];
    let fields = |s: &crate::cloud::model::Subnet, name: &str| -> Option<Vec<String>> {
        Some(match name {
            "subnet-id" => vec![s.id.clone()],
            "vpc-id" => vec![state.vpc.id.clone()],
            "availability-zone" => vec![s.az.clone()],
            "cidr-block" | "cidr" => vec![s.cidr.to_string()],
            "state" => vec!["available".into()],
            "available-ip-address-count" => vec![s.available_count().to_string()],
            other => tag_fields(&s.tags, other)?,
        })
    };
    let matched = filter(items, &params.filters(), &known, &fields)?;
    let keyed = matched.into_iter().map(|s| (s.id.as_str(), s)).collect();
    let (page, next) = paginate(keyed, params, (5, 1000))?;
    Ok(Xml::response("DescribeSubnets", request_id, |x| {
        x.list("subnetSet", page, |x, s| render::subnet(x, state, s));
        x.opt_leaf("nextToken", next);
    }))
}

pub fn security_groups(
    params: &Params,
    state: &CloudState,
    request_id: &str,
) -> CloudResult<String> {
    let ids = params.list("GroupId");
    let names = params.list("GroupName");
    no_ids_with_max_results(params, &ids)?;
    if let Some(missing) = ids.iter().find(|id| !state.groups.contains_key(*id)) {
        return Err(CloudError::group_not_found(missing));
    }
    if let Some(missing) = names
        .iter()
        .find(|n| !state.groups.values().any(|g| &g.name == *n))
    {
        return Err(CloudError::group_not_found(missing));
    }
    let items = state
        .groups
        .values()
        .filter(|g| {
            (ids.is_empty() || ids.contains(&g.id)) && (names.is_empty() || names.contains(&g.name))
        })
        .collect();
    let known = [
        "group-id",
        "group-name",
        "vpc-id",
        "description",
        "owner-id",
    ];
    let fields = |g: &crate::cloud::model::SecurityGroup, name: &str| -> Option<Vec<String>> {
        Some(match name {
            "group-id" => vec![g.id.clone()],
            "group-name" => vec![g.name.clone()],
            "vpc-id" => vec![state.vpc.id.clone()],
            "description" => vec![g.description.clone()],
            "owner-id" => vec![crate::cloud::OWNER_ID.into()],
            other => tag_fields(&g.tags, other)?,
        })
    };
    let matched = filter(items, &params.filters(), &known, &fields)?;
    let keyed = matched.into_iter().map(|g| (g.id.as_str(), g)).collect();
    let (page, next) = paginate(keyed, params, (5, 1000))?;
    Ok(Xml::response("DescribeSecurityGroups", request_id, |x| {
        x.list("securityGroupInfo", page, |x, g| {
            render::security_group(x, state, g)
        });
        x.opt_leaf("nextToken", next);
    }))
}

pub fn trunk_associations(
    params: &Params,
    state: &CloudState,
    request_id: &str,
) -> CloudResult<String> {
    let ids = params.list("AssociationId");
    no_ids_with_max_results(params, &ids)?;
    if let Some(missing) = ids
        .iter()
        .find(|id| !state.trunk_associations.contains_key(*id))
    {
        return Err(CloudError::new(
            ErrorCode::InvalidAssociationIdNotFound,
            format!("The association ID '{missing}' does not exist"),
        ));
    }
    let items = state
        .trunk_associations
        .values()
        .filter(|a| ids.is_empty() || ids.contains(&a.id))
        .collect();
    let known = [
        "trunk-interface-association.id",
        "trunk-interface-association.branch-interface-id",
        "trunk-interface-association.trunk-interface-id",
        "vlan-id",
    ];
    let fields = |a: &crate::cloud::model::TrunkAssociation, name: &str| -> Option<Vec<String>> {
        Some(match name {
            "trunk-interface-association.id" => vec![a.id.clone()],
            "trunk-interface-association.branch-interface-id" => vec![a.branch_eni_id.clone()],
            "trunk-interface-association.trunk-interface-id" => vec![a.trunk_eni_id.clone()],
            "vlan-id" => vec![a.vlan_id.to_string()],
            other => tag_fields(&a.tags, other)?,
        })
    };
    let matched = filter(items, &params.filters(), &known, &fields)?;
    let keyed = matched.into_iter().map(|a| (a.id.as_str(), a)).collect();
    let (page, next) = paginate(keyed, params, (5, 255))?;
    Ok(Xml::response(
        "DescribeTrunkInterfaceAssociations",
        request_id,
        |x| {
            x.list("interfaceAssociationSet", page, render::trunk_association);
            x.opt_leaf("nextToken", next);
        },
    ))
}

pub fn instance_types(params: &Params, catalog: &Catalog, request_id: &str) -> CloudResult<String> {
    let names = params.list("InstanceType");
    if let Some(missing) = names.iter().find(|n| catalog.get(n).is_none()) {
        return Err(CloudError::new(
            ErrorCode::InvalidInstanceType,
            format!("The following supplied instance types do not exist: [{missing}]"),
        ));
    }
    let items = catalog
        .iter()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .collect();
    let known = [
        "instance-type",
        "network-info.maximum-network-interfaces",
        "network-info.ipv4-addresses-per-interface",
    ];
    let fields = |t: &crate::catalog::InstanceType, name: &str| -> Option<Vec<String>> {
        match name {
            "instance-type" => Some(vec![t.name.clone()]),
            "network-info.maximum-network-interfaces" => Some(vec![t.max_enis.to_string()]),
            "network-info.ipv4-addresses-per-interface" => Some(vec![t.ipv4_per_eni.to_string()]),
            _ => None,
        }
    };
    let matched = filter(items, &params.filters(), &known, &fields)?;
    let keyed = matched.into_iter().map(|t| (t.name.as_str(), t)).collect();
    let (page, next) = paginate(keyed, params, (5, 100))?;
    Ok(Xml::response("DescribeInstanceTypes", request_id, |x| {
        x.list("instanceTypeSet", page, render::instance_type);
        x.opt_leaf("nextToken", next);
    }))
}
