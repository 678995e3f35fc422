//! EC2 shapes → domain types. Fields a usable answer must carry are checked here, so a
//! broken answer surfaces as `CloudError::Unexpected` instead of a half-filled value.

use std::net::Ipv4Addr;
use std::str::FromStr;

use aws_sdk_ec2::types as ec2;
use ipnet::Ipv4Net;

use crate::cloud::error::CloudError;
use crate::cloud::types::{
    Attachment, Eni, EniKind, EniStatus, Instance, Subnet, Tags, TrunkAssociation,
};

fn required<'a>(value: Option<&'a str>, what: &str) -> Result<&'a str, CloudError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CloudError::missing(what))
}

fn parse<T: FromStr>(value: &str, what: &str) -> Result<T, CloudError> {
    value
        .parse()
        .map_err(|_| CloudError::Unexpected(format!("{what} {value:?} does not parse")))
}

fn optional_ip(value: Option<&str>, what: &str) -> Result<Option<Ipv4Addr>, CloudError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| parse(v, what))
        .transpose()
}

fn non_negative(value: Option<i32>, what: &str) -> Result<u32, CloudError> {
    let v = value.ok_or_else(|| CloudError::missing(what))?;
    u32::try_from(v).map_err(|_| CloudError::Unexpected(format!("{what} is negative: {v}")))
}

pub(crate) fn tags(tags: &[ec2::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

pub(crate) fn eni(ni: &ec2::NetworkInterface) -> Result<Eni, CloudError> {
    let id = required(ni.network_interface_id(), "NetworkInterfaceId")?;
    let kind = match ni.interface_type() {
        Some(ec2::NetworkInterfaceType::Trunk) => EniKind::Trunk,
        Some(ec2::NetworkInterfaceType::Branch) => EniKind::Branch,
        _ => EniKind::Standard,
    };
    let status = ni.status().map_or(EniStatus::Other(String::new()), |s| {
        EniStatus::parse(s.as_str())
    });
    let primary_ip = optional_ip(ni.private_ip_address(), "PrivateIpAddress")?;
    let mut secondary_ips = Vec::new();
    for a in ni.private_ip_addresses() {
        let Some(ip) = optional_ip(a.private_ip_address(), "PrivateIpAddress")? else {
            continue;
        };
        // Some servers leave `primary` out; the interface's own primary address decides.
        if a.primary() != Some(true) && Some(ip) != primary_ip {
            secondary_ips.push(ip);
        }
    }
    let prefixes = ni
        .ipv4_prefixes()
        .iter()
        .filter_map(|p| p.ipv4_prefix())
        .map(|p| parse::<Ipv4Net>(p, "Ipv4Prefix"))
        .collect::<Result<Vec<_>, _>>()?;
    let attachment = match ni.attachment() {
        Some(a) if a.attachment_id().is_some_and(|id| !id.is_empty()) => Some(Attachment {
            id: required(a.attachment_id(), "AttachmentId")?.to_owned(),
            instance_id: a.instance_id().unwrap_or_default().to_owned(),
            device_index: non_negative(a.device_index(), "DeviceIndex")?,
            status: a
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(Eni {
        id: id.to_owned(),
        mac: ni.mac_address().unwrap_or_default().to_ascii_lowercase(),
        kind,
        status,
        subnet_id: ni.subnet_id().unwrap_or_default().to_owned(),
        vpc_id: ni.vpc_id().unwrap_or_default().to_owned(),
        availability_zone: ni.availability_zone().unwrap_or_default().to_owned(),
        description: ni.description().unwrap_or_default().to_owned(),
        primary_ip,
        secondary_ips,
        prefixes,
        security_groups: ni
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        attachment,
        tags: tags(ni.tag_set()),
    })
}

pub(crate) fn instance(i: &ec2::Instance) -> Result<Instance, CloudError> {
    let id = required(i.instance_id(), "InstanceId")?;
    let primary = i
        .network_interfaces()
        .iter()
        .find(|ni| ni.attachment().and_then(|a| a.device_index()) == Some(0))
        .ok_or_else(|| CloudError::missing("the instance's primary network interface"))?;
    Ok(Instance {
        id: id.to_owned(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .ok_or_else(|| CloudError::missing("InstanceType"))?,
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        vpc_id: i.vpc_id().unwrap_or_default().to_owned(),
        subnet_id: required(i.subnet_id(), "SubnetId")?.to_owned(),
        primary_eni_id: required(primary.network_interface_id(), "NetworkInterfaceId")?.to_owned(),
        private_ip: optional_ip(i.private_ip_address(), "PrivateIpAddress")?,
    })
}

pub(crate) fn subnet(s: &ec2::Subnet) -> Result<Subnet, CloudError> {
    Ok(Subnet {
        id: required(s.subnet_id(), "SubnetId")?.to_owned(),
        vpc_id: s.vpc_id().unwrap_or_default().to_owned(),
        cidr: parse(required(s.cidr_block(), "CidrBlock")?, "CidrBlock")?,
        availability_zone: s.availability_zone().unwrap_or_default().to_owned(),
        available_ips: non_negative(s.available_ip_address_count(), "AvailableIpAddressCount")?,
        tags: tags(s.tags()),
    })
}

pub(crate) fn trunk_association(
    a: &ec2::TrunkInterfaceAssociation,
) -> Result<TrunkAssociation, CloudError> {
    let vlan = non_negative(a.vlan_id(), "VlanId")?;
    Ok(TrunkAssociation {
        id: required(a.association_id(), "AssociationId")?.to_owned(),
        trunk_eni_id: required(a.trunk_interface_id(), "TrunkInterfaceId")?.to_owned(),
        branch_eni_id: required(a.branch_interface_id(), "BranchInterfaceId")?.to_owned(),
        vlan_id: u16::try_from(vlan)
            .map_err(|_| CloudError::Unexpected(format!("VlanId {vlan} out of range")))?,
    })
}

pub(crate) fn ipv4_list(
    values: impl IntoIterator<Item = Option<String>>,
    what: &str,
) -> Result<Vec<Ipv4Addr>, CloudError> {
    values
        .into_iter()
        .flatten()
        .map(|v| parse(&v, what))
        .collect()
}

pub(crate) fn prefix_list(
    values: impl IntoIterator<Item = Option<String>>,
) -> Result<Vec<Ipv4Net>, CloudError> {
    values
        .into_iter()
        .flatten()
        .map(|v| parse(&v, "Ipv4Prefix"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_eni() -> ec2::NetworkInterface {
        ec2::NetworkInterface::builder()
            .network_interface_id("eni-1")
            .mac_address("02:AB:CD:00:00:01")
            .interface_type(ec2::NetworkInterfaceType::Trunk)
            .status(ec2::NetworkInterfaceStatus::InUse)
            .subnet_id("subnet-1")
            .vpc_id("vpc-1")
            .private_ip_address("10.0.1.10")
            .private_ip_addresses(
                ec2::NetworkInterfacePrivateIpAddress::builder()
                    .private_ip_address("10.0.1.10")
                    .primary(true)
                    .build(),
            )
            .private_ip_addresses(
                ec2::NetworkInterfacePrivateIpAddress::builder()
                    .private_ip_address("10.0.1.11")
                    .primary(false)
                    .build(),
            )
            // No `primary` flag at all: decided by the interface's primary address.
            .private_ip_addresses(
                ec2::NetworkInterfacePrivateIpAddress::builder()
                    .private_ip_address("10.0.1.12")
                    .build(),
            )
            .ipv4_prefixes(
                ec2::Ipv4PrefixSpecification::builder()
                    .ipv4_prefix("10.0.1.32/28")
                    .build(),
            )
            .groups(ec2::GroupIdentifier::builder().group_id("sg-1").build())
            .attachment(
                ec2::NetworkInterfaceAttachment::builder()
                    .attachment_id("eni-attach-1")
                    .instance_id("i-1")
                    .device_index(1)
                    .status(ec2::AttachmentStatus::Attached)
                    .build(),
            )
            .tag_set(
                ec2::Tag::builder()
                    .key("eni-operator.io/cluster")
                    .value("c1")
                    .build(),
            )
            .build()
    }

    #[test]
    fn converts_an_interface() {
        let e = eni(&sample_eni()).unwrap();
        assert_eq!(e.id, "eni-1");
        assert_eq!(e.mac, "02:ab:cd:00:00:01");
        assert_eq!(e.kind, EniKind::Trunk);
        assert_eq!(e.status, EniStatus::InUse);
        assert_eq!(e.primary_ip, Some(Ipv4Addr::new(10, 0, 1, 10)));
        assert_eq!(
            e.secondary_ips,
            vec![Ipv4Addr::new(10, 0, 1, 11), Ipv4Addr::new(10, 0, 1, 12)]
        );
        assert_eq!(e.prefixes, vec!["10.0.1.32/28".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(e.security_groups, vec!["sg-1"]);
        let a = e.attachment.unwrap();
        assert_eq!(
            (a.id.as_str(), a.instance_id.as_str(), a.device_index),
            ("eni-attach-1", "i-1", 1)
        );
        assert_eq!(e.tags["eni-operator.io/cluster"], "c1");
    }

    #[test]
    fn rejects_answers_without_an_id_or_with_bad_addresses() {
        let no_id = ec2::NetworkInterface::builder().build();
        assert!(matches!(eni(&no_id), Err(CloudError::Unexpected(_))));
        let bad_ip = ec2::NetworkInterface::builder()
            .network_interface_id("eni-1")
            .private_ip_address("10.0.1")
            .build();
        assert!(matches!(eni(&bad_ip), Err(CloudError::Unexpected(_))));
    }

    #[test]
    fn instance_needs_a_primary_interface() {
        let ni = |index: i32, id: &str| {
            ec2::InstanceNetworkInterface::builder()
                .network_interface_id(id)
                .attachment(
                    ec2::InstanceNetworkInterfaceAttachment::builder()
                        .device_index(index)
                        .build(),
                )
                .build()
        };
        let base = ec2::Instance::builder()
            .instance_id("i-1")
            .instance_type(ec2::InstanceType::M5Large)
            .subnet_id("subnet-1")
            .private_ip_address("10.0.0.5");
        let i = instance(
            &base
                .clone()
                .network_interfaces(ni(1, "eni-2"))
                .network_interfaces(ni(0, "eni-1"))
                .build(),
        )
        .unwrap();
        assert_eq!(i.primary_eni_id, "eni-1");
        assert_eq!(i.instance_type, "m5.large");
        assert_eq!(i.private_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert!(instance(&base.network_interfaces(ni(1, "eni-2")).build()).is_err());
    }

    #[test]
    fn converts_subnets_and_associations() {
        let s = subnet(
            &ec2::Subnet::builder()
                .subnet_id("subnet-1")
                .cidr_block("10.0.3.0/28")
                .available_ip_address_count(11)
                .build(),
        )
        .unwrap();
        assert_eq!(s.cidr, "10.0.3.0/28".parse::<Ipv4Net>().unwrap());
        assert_eq!(s.available_ips, 11);
        let a = ec2::TrunkInterfaceAssociation::builder()
            .association_id("trunk-assoc-1")
            .trunk_interface_id("eni-t")
            .branch_interface_id("eni-b")
            .vlan_id(100)
            .build();
        assert_eq!(trunk_association(&a).unwrap().vlan_id, 100);
        let bad = ec2::TrunkInterfaceAssociation::builder()
            .association_id("trunk-assoc-2")
            .trunk_interface_id("eni-t")
            .branch_interface_id("eni-b")
            .vlan_id(-1)
            .build();
        assert!(trunk_association(&bad).is_err());
    }
}
