//! ECS JSON answers → domain types. ECS wraps every list in an object named for it
//! (`"Tags": {"Tag": [..]}`) and reports a member ENI as `Type: Member` with an
//! `Attachment` naming its trunk and its device index there (the VLAN id).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::cloud::error::CloudError;
use crate::cloud::provider::CloudResult;
use crate::cloud::types::{
    Attachment, Eni, EniKind, EniStatus, Instance, InstanceLimits, SecurityGroup, Subnet, Tags,
    TrunkAssociation,
};

/// Tag the provider puts on an ENI created as a member: until it is attached to a trunk
/// ECS reports it as a plain `Secondary`, and the operator must still know what it is.
pub const MEMBER_TAG: &str = "eni-operator.io/member";

fn text<'a>(v: &'a Value, key: &str) -> CloudResult<&'a str> {
    v[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CloudError::missing(key))
}

fn opt_text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

fn u32_of(v: &Value, key: &str) -> CloudResult<u32> {
    v[key]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| CloudError::missing(key))
}

/// The items of `v[outer][inner]`; an absent list is empty.
pub fn items<'a>(v: &'a Value, outer: &str, inner: &str) -> &'a [Value] {
    v[outer][inner].as_array().map_or(&[], Vec::as_slice)
}

fn ipv4(s: &str) -> CloudResult<Ipv4Addr> {
    s.parse()
        .map_err(|_| CloudError::Unexpected(format!("not an IPv4 address: {s}")))
}

fn prefix(s: &str) -> CloudResult<Ipv4Net> {
    s.parse()
        .map_err(|_| CloudError::Unexpected(format!("not an IPv4 prefix: {s}")))
}

/// `Tags.Tag[]` with `TagKey`/`TagValue` (ECS) or `Key`/`Value` (VPC).
pub fn tags(v: &Value) -> Tags {
    items(v, "Tags", "Tag")
        .iter()
        .filter_map(|t| {
            let key = t["TagKey"].as_str().or(t["Key"].as_str())?;
            let value = t["TagValue"].as_str().or(t["Value"].as_str()).unwrap_or("");
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// ECS statuses are CamelCase; the domain keeps EC2's spelling.
fn status(s: &str) -> EniStatus {
    match s {
        "Available" => EniStatus::Available,
        "Attaching" => EniStatus::Attaching,
        "InUse" => EniStatus::InUse,
        "Detaching" => EniStatus::Detaching,
        other => EniStatus::Other(other.to_owned()),
    }
}

/// The provider's attachment id: ECS has none, and detaching names instance and ENI.
pub fn attachment_id(instance_id: &str, eni_id: &str) -> String {
    format!("{instance_id}/{eni_id}")
}

pub fn parse_attachment_id(id: &str) -> CloudResult<(&str, &str)> {
    id.split_once('/')
        .ok_or_else(|| CloudError::InvalidRequest {
            code: "InvalidAttachmentId".to_owned(),
            message: format!("{id} is not an ECS attachment (instance/eni)"),
        })
}

pub fn eni(v: &Value) -> CloudResult<Eni> {
    let id = text(v, "NetworkInterfaceId")?.to_owned();
    let tags = tags(v);
    let kind = match v["Type"].as_str().unwrap_or_default() {
        "Trunk" => EniKind::Trunk,
        "Member" => EniKind::Branch,
        _ if tags.contains_key(MEMBER_TAG) => EniKind::Branch,
        _ => EniKind::Standard,
    };
    let mut primary_ip = None;
    let mut secondary_ips = Vec::new();
    for ip in items(v, "PrivateIpSets", "PrivateIpSet") {
        let addr = ipv4(text(ip, "PrivateIpAddress")?)?;
        if ip["Primary"].as_bool().unwrap_or(false) {
            primary_ip = Some(addr);
        } else {
            secondary_ips.push(addr);
        }
    }
    if primary_ip.is_none() {
        primary_ip = v["PrivateIpAddress"].as_str().map(ipv4).transpose()?;
    }
    let prefixes = items(v, "Ipv4PrefixSets", "Ipv4PrefixSet")
        .iter()
        .map(|p| prefix(text(p, "Ipv4Prefix")?))
        .collect::<CloudResult<Vec<_>>>()?;
    // A member rides its trunk (the association) and is not attached in the domain's
    // sense; an attached ENI's attachment is named by instance and ENI.
    let attachment = match (kind, v["InstanceId"].as_str().filter(|s| !s.is_empty())) {
        (EniKind::Branch, _) | (_, None) => None,
        (_, Some(instance)) => Some(Attachment {
            id: attachment_id(instance, &id),
            instance_id: instance.to_owned(),
            device_index: v["Attachment"]["DeviceIndex"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            status: match v["Status"].as_str() {
                Some("Attaching") => "attaching",
                Some("Detaching") => "detaching",
                _ => "attached",
            }
            .to_owned(),
        }),
    };
    Ok(Eni {
        mac: opt_text(v, "MacAddress"),
        kind,
        status: status(v["Status"].as_str().unwrap_or_default()),
        subnet_id: opt_text(v, "VSwitchId"),
        vpc_id: opt_text(v, "VpcId"),
        availability_zone: opt_text(v, "ZoneId"),
        description: opt_text(v, "Description"),
        primary_ip,
        secondary_ips,
        prefixes,
        security_groups: items(v, "SecurityGroupIds", "SecurityGroupId")
            .iter()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect(),
        attachment,
        tags,
        id,
    })
}

/// A member's ride on its trunk, from its `Attachment`; `None` for other ENIs.
pub fn membership(v: &Value) -> Option<TrunkAssociation> {
    if v["Type"].as_str() != Some("Member") {
        return None;
    }
    let att = &v["Attachment"];
    let branch = v["NetworkInterfaceId"].as_str()?.to_owned();
    Some(TrunkAssociation {
        // ECS has no association object: the member itself names it.
        id: branch.clone(),
        trunk_eni_id: att["TrunkNetworkInterfaceId"].as_str()?.to_owned(),
        branch_eni_id: branch,
        vlan_id: u16::try_from(att["DeviceIndex"].as_u64()?).ok()?,
    })
}

pub fn instance(v: &Value) -> CloudResult<Instance> {
    let vpc = &v["VpcAttributes"];
    let primary = items(v, "NetworkInterfaces", "NetworkInterface")
        .iter()
        .find(|n| n["Type"].as_str() == Some("Primary"))
        .ok_or_else(|| CloudError::missing("NetworkInterfaces.NetworkInterface[Type=Primary]"))?;
    Ok(Instance {
        id: text(v, "InstanceId")?.to_owned(),
        instance_type: text(v, "InstanceType")?.to_owned(),
        availability_zone: text(v, "ZoneId")?.to_owned(),
        vpc_id: text(vpc, "VpcId")?.to_owned(),
        subnet_id: text(vpc, "VSwitchId")?.to_owned(),
        primary_eni_id: text(primary, "NetworkInterfaceId")?.to_owned(),
        private_ip: items(vpc, "PrivateIpAddress", "IpAddress")
            .first()
            .and_then(Value::as_str)
            .map(ipv4)
            .transpose()?,
    })
}

/// Limits from DescribeInstanceTypes: members per trunk are `EniTotalQuantity −
/// EniQuantity`, and 0 when the type does not support trunking (some types report a
/// total without it).
pub fn limits(v: &Value) -> CloudResult<InstanceLimits> {
    let max_enis = u32_of(v, "EniQuantity")?;
    let trunking_supported = v["EniTrunkSupported"].as_bool().unwrap_or(false);
    let total = u32_of(v, "EniTotalQuantity").unwrap_or(max_enis);
    Ok(InstanceLimits {
        max_enis,
        ipv4_per_eni: u32_of(v, "EniPrivateIpAddressQuantity")?,
        trunking_supported,
        branch_enis_per_trunk: if trunking_supported {
            total.saturating_sub(max_enis)
        } else {
            0
        },
    })
}

pub fn vswitch(v: &Value) -> CloudResult<Subnet> {
    Ok(Subnet {
        id: text(v, "VSwitchId")?.to_owned(),
        vpc_id: text(v, "VpcId")?.to_owned(),
        cidr: prefix(text(v, "CidrBlock")?)?,
        availability_zone: text(v, "ZoneId")?.to_owned(),
        available_ips: u32_of(v, "AvailableIpAddressCount")?,
        tags: tags(v),
    })
}

pub fn security_group(v: &Value) -> CloudResult<SecurityGroup> {
    Ok(SecurityGroup {
        id: text(v, "SecurityGroupId")?.to_owned(),
        vpc_id: opt_text(v, "VpcId"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_member_is_a_branch_riding_its_trunk() {
        let v = json!({
            "NetworkInterfaceId": "eni-m", "Type": "Member", "Status": "InUse",
            "InstanceId": "i-1", "VSwitchId": "vsw-1", "MacAddress": "00:16:3e:00:00:01",
            "PrivateIpSets": {"PrivateIpSet": [{"PrivateIpAddress": "10.0.1.5", "Primary": true}]},
            "Attachment": {"InstanceId": "i-1", "TrunkNetworkInterfaceId": "eni-t", "DeviceIndex": 3},
        });
        let e = eni(&v).unwrap();
        assert_eq!(e.kind, EniKind::Branch);
        assert_eq!(e.attachment, None);
        assert_eq!(e.status, EniStatus::InUse);
        let m = membership(&v).unwrap();
        assert_eq!(
            (m.trunk_eni_id.as_str(), m.vlan_id, m.id.as_str()),
            ("eni-t", 3, "eni-m")
        );
    }

    #[test]
    fn a_secondary_eni_with_addresses_and_prefixes() {
        let v = json!({
            "NetworkInterfaceId": "eni-s", "Type": "Secondary", "Status": "InUse",
            "InstanceId": "i-1", "Attachment": {"InstanceId": "i-1", "DeviceIndex": 2},
            "PrivateIpSets": {"PrivateIpSet": [
                {"PrivateIpAddress": "10.0.1.5", "Primary": true},
                {"PrivateIpAddress": "10.0.1.6", "Primary": false}]},
            "Ipv4PrefixSets": {"Ipv4PrefixSet": [{"Ipv4Prefix": "10.0.1.16/28"}]},
            "SecurityGroupIds": {"SecurityGroupId": ["sg-1"]},
            "Tags": {"Tag": [{"TagKey": "a", "TagValue": "b"}]},
        });
        let e = eni(&v).unwrap();
        assert_eq!(e.kind, EniKind::Standard);
        assert_eq!(e.primary_ip, Some(Ipv4Addr::new(10, 0, 1, 5)));
        assert_eq!(e.secondary_ips, vec![Ipv4Addr::new(10, 0, 1, 6)]);
        assert_eq!(e.prefixes.len(), 1);
        let a = e.attachment.unwrap();
        assert_eq!((a.id.as_str(), a.device_index), ("i-1/eni-s", 2));
        assert_eq!(parse_attachment_id(&a.id).unwrap(), ("i-1", "eni-s"));
        assert_eq!(e.tags.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn members_count_only_with_trunking() {
        let trunk = json!({"EniQuantity": 4, "EniTotalQuantity": 15,
            "EniPrivateIpAddressQuantity": 15, "EniTrunkSupported": true});
        assert_eq!(limits(&trunk).unwrap().branch_enis_per_trunk, 11);
        let plain = json!({"EniQuantity": 3, "EniTotalQuantity": 8,
            "EniPrivateIpAddressQuantity": 10, "EniTrunkSupported": false});
        let l = limits(&plain).unwrap();
        assert_eq!((l.trunking_supported, l.branch_enis_per_trunk), (false, 0));
    }
}
