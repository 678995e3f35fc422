//! ECS's JSON shapes: PascalCase fields, lists wrapped in an object named for the list
//! (`"Tags": {"Tag": [...]}`), statuses in CamelCase.

use serde_json::{Value, json};

use crate::cloud::CloudState;
use crate::cloud::model::{Eni, EniStatus, InterfaceType, Tags};

/// The answer object with its `RequestId`.
pub fn with_request_id(mut body: Value, request_id: &str) -> String {
    if let Value::Object(map) = &mut body {
        map.insert("RequestId".into(), Value::from(request_id));
    }
    body.to_string()
}

/// `{"Tag": [{"TagKey": .., "TagValue": ..}]}` as ECS lists an ENI's or group's tags.
pub fn tags(tags: &Tags) -> Value {
    let list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    json!({ "Tag": list })
}

pub fn status(eni: &Eni) -> &'static str {
    match eni.status() {
        EniStatus::Available => "Available",
        EniStatus::Attaching => "Attaching",
        EniStatus::InUse => "InUse",
        EniStatus::Detaching => "Detaching",
    }
}

/// ECS's `Type`: Primary, Secondary, Trunk, or Member (an ENI riding a trunk).
pub fn eni_type(eni: &Eni) -> &'static str {
    if eni.trunk_association.is_some() {
        "Member"
    } else if eni.interface_type == InterfaceType::Trunk {
        "Trunk"
    } else if eni.attachment.as_ref().is_some_and(|a| a.device_index == 0) {
        "Primary"
    } else {
        "Secondary"
    }
}

/// Where an ENI is: its instance, and for a member the trunk and the member's device
/// index on it (which is its VLAN id).
fn attachment(state: &CloudState, eni: &Eni) -> Option<Value> {
    if let Some(assoc) = eni
        .trunk_association
        .as_ref()
        .and_then(|id| state.trunk_associations.get(id))
    {
        let trunk = state.enis.get(&assoc.trunk_eni_id)?;
        let instance = &trunk.attachment.as_ref()?.instance_id;
        return Some(json!({
            "InstanceId": instance,
            "TrunkNetworkInterfaceId": assoc.trunk_eni_id,
            "DeviceIndex": assoc.vlan_id,
        }));
    }
    let a = eni.attachment.as_ref()?;
    Some(json!({"InstanceId": a.instance_id, "DeviceIndex": a.device_index}))
}

pub fn network_interface(state: &CloudState, eni: &Eni) -> Value {
    let mut ips = vec![json!({"PrivateIpAddress": eni.primary_ip.to_string(), "Primary": true})];
    ips.extend(
        eni.secondary_ips
            .iter()
            .map(|ip| json!({"PrivateIpAddress": ip.to_string(), "Primary": false})),
    );
    let prefixes: Vec<Value> = eni
        .prefixes
        .iter()
        .map(|p| json!({"Ipv4Prefix": p.to_string()}))
        .collect();
    let attachment = attachment(state, eni);
    let mut v = json!({
        "NetworkInterfaceId": eni.id,
        "Status": status(eni),
        "Type": eni_type(eni),
        "VpcId": state.vpc.id,
        "VSwitchId": eni.subnet_id,
        "ZoneId": eni.az,
        "PrivateIpAddress": eni.primary_ip.to_string(),
        "MacAddress": eni.mac,
        "Description": eni.description,
        "OwnerId": state.vpc.owner_id,
        "ServiceManaged": false,
        "SourceDestCheck": eni.source_dest_check,
        "SecurityGroupIds": {"SecurityGroupId": eni.groups},
        "PrivateIpSets": {"PrivateIpSet": ips},
        "Ipv4PrefixSets": {"Ipv4PrefixSet": prefixes},
        "Tags": tags(&eni.tags),
    });
    if let (Some(att), Value::Object(map)) = (attachment, &mut v) {
        map.insert("InstanceId".into(), att["InstanceId"].clone());
        map.insert("Attachment".into(), att);
    }
    v
}
