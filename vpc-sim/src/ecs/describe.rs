//! Describe actions with ECS's filters and both of its paging styles: `NextToken` +
//! `MaxResults`, or `PageNumber` + `PageSize`.

use serde_json::{Value, json};

use super::render;
use crate::catalog::{Catalog, Cloud};
use crate::cloud::CloudState;
use crate::cloud::model::Tags;
use crate::ec2::params::{Params, decode_next_token, encode_next_token};
use crate::error::{CloudError, CloudResult};

/// One page of `items` (sorted by key) and the paging fields of the answer.
/// `max_results` is the allowed MaxResults range; `max_page_size` the PageSize bound.
fn page<T>(
    items: Vec<(String, T)>,
    params: &Params,
    max_results: Option<(u32, u32)>,
    max_page_size: u32,
) -> CloudResult<(Vec<T>, serde_json::Map<String, Value>)> {
    let mut meta = serde_json::Map::new();
    meta.insert("TotalCount".into(), json!(items.len()));
    let token_mode = params.get("NextToken").is_some() || params.get("MaxResults").is_some();
    if let (true, Some((lo, hi))) = (token_mode, max_results) {
        let limit = params.parsed::<u32>("MaxResults")?.unwrap_or(lo);
        if !(lo..=hi).contains(&limit) {
            return Err(CloudError::invalid_parameter(format!(
                "The specified parameter MaxResults is not valid: {limit} (expecting {lo} to {hi})."
            )));
        }
        let after = match params.get("NextToken").filter(|t| !t.is_empty()) {
            Some(t) => Some(decode_next_token(t)?),
            None => None,
        };
        let mut rest: Vec<(String, T)> = items
            .into_iter()
            .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
            .collect();
        let limit = limit as usize;
        let next = if rest.len() > limit {
            encode_next_token(&rest[limit - 1].0)
        } else {
            String::new()
        };
        rest.truncate(limit);
        meta.insert("NextToken".into(), json!(next));
        meta.insert("MaxResults".into(), json!(limit));
        return Ok((rest.into_iter().map(|(_, v)| v).collect(), meta));
    }
    let number = params.parsed::<u32>("PageNumber")?.unwrap_or(1);
    let size = params.parsed::<u32>("PageSize")?.unwrap_or(10);
    if number == 0 || size == 0 || size > max_page_size {
        return Err(CloudError::invalid_parameter(format!(
            "PageNumber must be at least 1 and PageSize 1 to {max_page_size}."
        )));
    }
    meta.insert("PageNumber".into(), json!(number));
    meta.insert("PageSize".into(), json!(size));
    let skip = (number as usize - 1) * size as usize;
    Ok((
        items
            .into_iter()
            .skip(skip)
            .take(size as usize)
            .map(|(_, v)| v)
            .collect(),
        meta,
    ))
}

/// A JSON array of ids in a string parameter (`InstanceIds=["i-1","i-2"]`).
fn json_ids(params: &Params, key: &str) -> CloudResult<Option<Vec<String>>> {
    params
        .get(key)
        .map(|v| {
            serde_json::from_str::<Vec<String>>(v).map_err(|_| {
                CloudError::invalid_parameter(format!(
                    "The specified parameter {key} is not a JSON array of strings: {v}"
                ))
            })
        })
        .transpose()
}

/// `Tag.N.Key` / `Tag.N.Value`: every pair must be on the resource (a key without a
/// value matches any value).
fn tags_match(params: &Params, tags: &Tags) -> bool {
    params.structs("Tag").iter().all(|t| match t.get("Key") {
        None => true,
        Some(k) => match t.get("Value").filter(|v| !v.is_empty()) {
            Some(v) => tags.get(k).is_some_and(|have| have == v),
            None => tags.contains_key(k),
        },
    })
}

fn answer(
    mut meta: serde_json::Map<String, Value>,
    key: &str,
    inner: &str,
    list: Vec<Value>,
) -> Value {
    meta.insert(key.into(), json!({ inner: list }));
    Value::Object(meta)
}

fn eq_or_absent(params: &Params, key: &str, value: &str) -> bool {
    params.get(key).is_none_or(|want| want == value)
}

pub fn instances(params: &Params, state: &CloudState) -> CloudResult<Value> {
    let ids = json_ids(params, "InstanceIds")?;
    if ids.as_ref().is_some_and(|ids| ids.len() > 100) {
        return Err(CloudError::invalid_parameter(
            "InstanceIds takes at most 100 ids.",
        ));
    }
    let items: Vec<(String, Value)> = state
        .instances
        .values()
        .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
        .filter(|_| eq_or_absent(params, "VpcId", &state.vpc.id))
        .filter(|i| eq_or_absent(params, "ZoneId", &i.az))
        .filter(|i| eq_or_absent(params, "VSwitchId", &i.subnet_id))
        .filter(|i| tags_match(params, &i.tags))
        .map(|i| {
            let enis: Vec<Value> = state
                .enis
                .values()
                .filter_map(|e| {
                    let a = e.attachment.as_ref().filter(|a| a.instance_id == i.id)?;
                    Some(json!({
                        "NetworkInterfaceId": e.id,
                        "Type": if a.device_index == 0 { "Primary" } else { "Secondary" },
                        "PrimaryIpAddress": e.primary_ip.to_string(),
                        "MacAddress": e.mac,
                    }))
                })
                .collect();
            let groups = state
                .enis
                .get(&i.primary_eni)
                .map(|e| e.groups.clone())
                .unwrap_or_default();
            let v = json!({
                "InstanceId": i.id,
                "InstanceName": i.node_name,
                "HostName": i.node_name,
                "InstanceType": i.instance_type,
                "InstanceTypeFamily": family(&i.instance_type),
                "RegionId": state.vpc.region,
                "ZoneId": i.az,
                "Status": "Running",
                "InstanceNetworkType": "vpc",
                "VpcAttributes": {
                    "VpcId": state.vpc.id,
                    "VSwitchId": i.subnet_id,
                    "PrivateIpAddress": {"IpAddress": [i.private_ip.to_string()]},
                },
                "NetworkInterfaces": {"NetworkInterface": enis},
                "SecurityGroupIds": {"SecurityGroupId": groups},
                "Tags": render::tags(&i.tags),
            });
            (i.id.clone(), v)
        })
        .collect();
    let (list, meta) = page(items, params, Some((1, 100)), 100)?;
    Ok(answer(meta, "Instances", "Instance", list))
}

/// `ecs.g7.large` → `ecs.g7`.
fn family(instance_type: &str) -> &str {
    instance_type
        .rsplit_once('.')
        .map_or(instance_type, |(f, _)| f)
}

pub fn instance_types(params: &Params, catalog: &Catalog) -> CloudResult<Value> {
    let wanted = params.list("InstanceTypes");
    if wanted.len() > 10 {
        return Err(CloudError::invalid_parameter(
            "InstanceTypes takes at most 10 types.",
        ));
    }
    let items: Vec<(String, Value)> = catalog
        .iter()
        .filter(|t| t.cloud == Cloud::Alibaba)
        .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
        .filter(|t| eq_or_absent(params, "InstanceTypeFamily", family(&t.name)))
        .map(|t| {
            let v = json!({
                "InstanceTypeId": t.name,
                "InstanceTypeFamily": family(&t.name),
                "CpuCoreCount": t.vcpus,
                "MemorySize": t.memory_mib as f64 / 1024.0,
                "EniQuantity": t.max_enis,
                "EniPrivateIpAddressQuantity": t.ipv4_per_eni,
                "EniIpv6AddressQuantity": 0,
                // Primary and secondary ENIs plus the members a trunk may carry.
                "EniTotalQuantity": t.max_enis + t.max_members,
                "EniTrunkSupported": t.trunk,
            });
            (t.name.clone(), v)
        })
        .collect();
    let (list, meta) = page(items, params, Some((1, 1600)), 1600)?;
    Ok(answer(meta, "InstanceTypes", "InstanceType", list))
}

pub fn vswitches(params: &Params, state: &CloudState) -> CloudResult<Value> {
    let items: Vec<(String, Value)> = state
        .subnets
        .values()
        .filter(|s| eq_or_absent(params, "VSwitchId", &s.id))
        .filter(|_| eq_or_absent(params, "VpcId", &state.vpc.id))
        .filter(|s| eq_or_absent(params, "ZoneId", &s.az))
        .filter(|s| tags_match(params, &s.tags))
        .map(|s| {
            let tags: Vec<Value> = s
                .tags
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            let v = json!({
                "VSwitchId": s.id,
                "VSwitchName": s.tags.get("Name").cloned().unwrap_or_default(),
                "VpcId": state.vpc.id,
                "ZoneId": s.az,
                "CidrBlock": s.cidr.to_string(),
                "AvailableIpAddressCount": s.available_count(),
                "Status": "Available",
                "IsDefault": false,
                "Tags": {"Tag": tags},
            });
            (s.id.clone(), v)
        })
        .collect();
    let (list, meta) = page(items, params, None, 50)?;
    Ok(answer(meta, "VSwitches", "VSwitch", list))
}

pub fn security_groups(params: &Params, state: &CloudState) -> CloudResult<Value> {
    let mut ids = json_ids(params, "SecurityGroupIds")?;
    if let Some(id) = params.get("SecurityGroupId") {
        ids.get_or_insert_with(Vec::new).push(id.to_owned());
    }
    let items: Vec<(String, Value)> = state
        .groups
        .values()
        .filter(|g| ids.as_ref().is_none_or(|ids| ids.contains(&g.id)))
        .filter(|_| eq_or_absent(params, "VpcId", &state.vpc.id))
        .filter(|g| tags_match(params, &g.tags))
        .map(|g| {
            let v = json!({
                "SecurityGroupId": g.id,
                "SecurityGroupName": g.name,
                "Description": g.description,
                "VpcId": state.vpc.id,
                "SecurityGroupType": "normal",
                "ServiceManaged": false,
                "Tags": render::tags(&g.tags),
            });
            (g.id.clone(), v)
        })
        .collect();
    let (list, mut meta) = page(items, params, Some((1, 100)), 50)?;
    meta.insert("RegionId".into(), json!(state.vpc.region));
    Ok(answer(meta, "SecurityGroups", "SecurityGroup", list))
}

pub fn network_interfaces(params: &Params, state: &CloudState) -> CloudResult<Value> {
    let ids = params.list("NetworkInterfaceId");
    if ids.len() > 100 {
        return Err(CloudError::invalid_parameter(
            "NetworkInterfaceId.N takes at most 100 ids.",
        ));
    }
    let ips = params.list("PrivateIpAddress");
    let items: Vec<(String, Value)> = state
        .enis
        .values()
        .filter(|e| ids.is_empty() || ids.contains(&e.id))
        .filter(|e| tags_match(params, &e.tags))
        .map(|e| render::network_interface(state, e))
        .filter(|v| {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            ["VpcId", "VSwitchId", "Type", "Status", "InstanceId"]
                .iter()
                .all(|k| eq_or_absent(params, k, &field(k)))
                && eq_or_absent(params, "PrimaryIpAddress", &field("PrivateIpAddress"))
                && params.get("SecurityGroupId").is_none_or(|g| {
                    v["SecurityGroupIds"]["SecurityGroupId"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == g))
                })
                && (ips.is_empty()
                    || v["PrivateIpSets"]["PrivateIpSet"]
                        .as_array()
                        .is_some_and(|a| {
                            a.iter()
                                .any(|s| ips.iter().any(|ip| s["PrivateIpAddress"] == ip.as_str()))
                        }))
        })
        .map(|v| {
            (
                v["NetworkInterfaceId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                v,
            )
        })
        .collect();
    let (list, meta) = page(items, params, Some((10, 500)), 1000)?;
    Ok(answer(
        meta,
        "NetworkInterfaceSets",
        "NetworkInterfaceSet",
        list,
    ))
}
