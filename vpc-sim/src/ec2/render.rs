//! EC2 XML shapes of the cloud's records, as aws-sdk-ec2 reads them.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::xml::Xml;
use crate::catalog::InstanceType;
use crate::cloud::model::{Eni, Instance, SecurityGroup, Subnet, Tags, TrunkAssociation};
use crate::cloud::{CloudState, OWNER_ID};
use crate::dataplane_view::Protocol;

pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `ip-10-0-1-5.ec2.internal` in us-east-1, `ip-10-0-1-5.<region>.compute.internal`
/// elsewhere, as EC2 names hosts.
pub fn private_dns_name(ip: Ipv4Addr, region: &str) -> String {
    let host = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{host}.ec2.internal")
    } else {
        format!("ip-{host}.{region}.compute.internal")
    }
}

pub fn tag_set(x: &mut Xml, tags: &Tags) {
    x.list("tagSet", tags, |x, (k, v)| {
        x.leaf("key", k);
        x.leaf("value", v);
    });
}

fn group_set(x: &mut Xml, state: &CloudState, groups: &[String]) {
    x.list("groupSet", groups, |x, id| {
        x.leaf("groupId", id);
        x.opt_leaf("groupName", state.groups.get(id).map(|g| &g.name));
    });
}

fn private_ips(x: &mut Xml, eni: &Eni, region: &str) {
    x.list("privateIpAddressesSet", eni.all_ips(), |x, ip| {
        x.leaf("privateIpAddress", ip);
        x.leaf("privateDnsName", private_dns_name(ip, region));
        x.leaf("primary", ip == eni.primary_ip);
    });
    x.list("ipv4PrefixSet", &eni.prefixes, |x, p| {
        x.leaf("ipv4Prefix", p)
    });
    x.elem("ipv6AddressesSet", |_| {});
}

/// The `NetworkInterface` shape (DescribeNetworkInterfaces, CreateNetworkInterface).
pub fn network_interface(x: &mut Xml, state: &CloudState, eni: &Eni) {
    let region = &state.vpc.region;
    x.leaf("networkInterfaceId", &eni.id);
    x.leaf("subnetId", &eni.subnet_id);
    x.leaf("vpcId", &state.vpc.id);
    x.leaf("availabilityZone", &eni.az);
    x.leaf("description", &eni.description);
    x.leaf("ownerId", OWNER_ID);
    x.leaf("requesterManaged", false);
    x.leaf("status", eni.status().as_str());
    x.leaf("macAddress", &eni.mac);
    x.leaf("privateIpAddress", eni.primary_ip);
    x.leaf("privateDnsName", private_dns_name(eni.primary_ip, region));
    x.leaf("sourceDestCheck", eni.source_dest_check);
    group_set(x, state, &eni.groups);
    if let Some(a) = &eni.attachment {
        x.elem("attachment", |x| {
            x.leaf("attachmentId", &a.id);
            x.leaf("instanceId", &a.instance_id);
            x.leaf("instanceOwnerId", OWNER_ID);
            x.leaf("deviceIndex", a.device_index);
            x.leaf("networkCardIndex", 0);
            x.leaf("status", a.state.as_str());
            x.leaf("attachTime", timestamp(a.attach_time));
            x.leaf("deleteOnTermination", a.delete_on_termination);
        });
    }
    tag_set(x, &eni.tags);
    private_ips(x, eni, region);
    x.leaf("interfaceType", eni.interface_type.as_str());
}

/// The `InstanceNetworkInterface` shape inside DescribeInstances.
fn instance_network_interface(x: &mut Xml, state: &CloudState, eni: &Eni) {
    let region = &state.vpc.region;
    x.leaf("networkInterfaceId", &eni.id);
    x.leaf("subnetId", &eni.subnet_id);
    x.leaf("vpcId", &state.vpc.id);
    x.leaf("description", &eni.description);
    x.leaf("ownerId", OWNER_ID);
    x.leaf("status", eni.status().as_str());
    x.leaf("macAddress", &eni.mac);
    x.leaf("privateIpAddress", eni.primary_ip);
    x.leaf("privateDnsName", private_dns_name(eni.primary_ip, region));
    x.leaf("sourceDestCheck", eni.source_dest_check);
    group_set(x, state, &eni.groups);
    if let Some(a) = &eni.attachment {
        x.elem("attachment", |x| {
            x.leaf("attachmentId", &a.id);
            x.leaf("deviceIndex", a.device_index);
            x.leaf("networkCardIndex", 0);
            x.leaf("status", a.state.as_str());
            x.leaf("attachTime", timestamp(a.attach_time));
            x.leaf("deleteOnTermination", a.delete_on_termination);
        });
    }
    private_ips(x, eni, region);
    x.leaf("interfaceType", eni.interface_type.as_str());
}

/// One `Reservation` holding one instance (vpc-sim registers instances one by one).
pub fn reservation(x: &mut Xml, state: &CloudState, inst: &Instance) {
    x.leaf("reservationId", &inst.reservation_id);
    x.leaf("ownerId", OWNER_ID);
    x.elem("groupSet", |_| {});
    x.list("instancesSet", [inst], |x, inst| {
        let region = &state.vpc.region;
        let mut enis: Vec<&Eni> = state
            .enis
            .values()
            .filter(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == inst.id)
            })
            .collect();
        enis.sort_by_key(|e| e.attachment.as_ref().map_or(0, |a| a.device_index));
        let primary_groups = state
            .enis
            .get(&inst.primary_eni)
            .map(|e| e.groups.clone())
            .unwrap_or_default();
        x.leaf("instanceId", &inst.id);
        x.leaf("imageId", "ami-0123456789abcdef0");
        x.elem("instanceState", |x| {
            x.leaf("code", 16);
            x.leaf("name", "running");
        });
        x.leaf("privateDnsName", private_dns_name(inst.private_ip, region));
        x.elem("dnsName", |_| {});
        x.leaf("amiLaunchIndex", 0);
        x.leaf("instanceType", &inst.instance_type);
        x.leaf("launchTime", timestamp(inst.launch_time));
        x.elem("placement", |x| {
            x.leaf("availabilityZone", &inst.az);
            x.leaf("tenancy", "default");
        });
        x.elem("monitoring", |x| x.leaf("state", "disabled"));
        x.leaf("subnetId", &inst.subnet_id);
        x.leaf("vpcId", &state.vpc.id);
        x.leaf("privateIpAddress", inst.private_ip);
        x.leaf("sourceDestCheck", true);
        group_set(x, state, &primary_groups);
        x.leaf("architecture", "x86_64");
        x.leaf("rootDeviceType", "ebs");
        x.leaf("rootDeviceName", "/dev/xvda");
        x.leaf("virtualizationType", "hvm");
        x.leaf("hypervisor", "xen");
        x.leaf("ebsOptimized", false);
        x.leaf("enaSupport", true);
        tag_set(x, &inst.tags);
        x.list("networkInterfaceSet", enis, |x, eni| {
            instance_network_interface(x, state, eni)
        });
    });
}

pub fn subnet(x: &mut Xml, state: &CloudState, s: &Subnet) {
    x.leaf("subnetId", &s.id);
    x.leaf(
        "subnetArn",
        format!(
            "arn:aws:ec2:{}:{OWNER_ID}:subnet/{}",
            state.vpc.region, s.id
        ),
    );
    x.leaf("state", "available");
    x.leaf("ownerId", OWNER_ID);
    x.leaf("vpcId", &state.vpc.id);
    x.leaf("cidrBlock", s.cidr);
    x.elem("ipv6CidrBlockAssociationSet", |_| {});
    x.leaf("availableIpAddressCount", s.available_count());
    x.leaf("availabilityZone", &s.az);
    x.leaf("availabilityZoneId", az_id(&s.az));
    x.leaf("defaultForAz", false);
    x.leaf("mapPublicIpOnLaunch", false);
    x.leaf("assignIpv6AddressOnCreation", false);
    tag_set(x, &s.tags);
}

/// `us-east-1a` -> `use1-az1`: EC2's zone id shape (the mapping is per account).
fn az_id(az: &str) -> String {
    let (region, letter) = az.split_at(az.len().saturating_sub(1));
    let parts: Vec<&str> = region.split('-').collect();
    let mut short = String::new();
    if let Some((first, rest)) = parts.split_first() {
        short.push_str(first);
        if let Some((last, middle)) = rest.split_last() {
            short.extend(middle.iter().filter_map(|m| m.chars().next()));
            short.push_str(last);
        }
    }
    let n = letter
        .chars()
        .next()
        .map_or(1, |c| (c as u32).saturating_sub('a' as u32) + 1);
    format!("{short}-az{n}")
}

pub fn security_group(x: &mut Xml, state: &CloudState, g: &SecurityGroup) {
    x.leaf("ownerId", OWNER_ID);
    x.leaf("groupId", &g.id);
    x.leaf("groupName", &g.name);
    x.leaf("groupDescription", &g.description);
    x.leaf("vpcId", &state.vpc.id);
    x.leaf(
        "securityGroupArn",
        format!(
            "arn:aws:ec2:{}:{OWNER_ID}:security-group/{}",
            state.vpc.region, g.id
        ),
    );
    x.list("ipPermissions", &g.ingress, |x, r| {
        let (proto, ports) = match r.protocol {
            Protocol::Tcp => ("tcp", Some((i32::from(r.from_port), i32::from(r.to_port)))),
            Protocol::Udp => ("udp", Some((i32::from(r.from_port), i32::from(r.to_port)))),
            Protocol::Icmp => ("icmp", Some((-1, -1))),
            Protocol::All => ("-1", None),
        };
        x.leaf("ipProtocol", proto);
        if let Some((from, to)) = ports {
            x.leaf("fromPort", from);
            x.leaf("toPort", to);
        }
        x.list("groups", &r.source_group_ids, |x, id| {
            x.leaf("userId", OWNER_ID);
            x.leaf("groupId", id);
        });
        x.list("ipRanges", &r.cidrs, |x, c| x.leaf("cidrIp", c));
        x.elem("ipv6Ranges", |_| {});
        x.elem("prefixListIds", |_| {});
    });
    x.list("ipPermissionsEgress", [()], |x, ()| {
        x.leaf("ipProtocol", "-1");
        x.elem("groups", |_| {});
        x.list("ipRanges", ["0.0.0.0/0"], |x, c| x.leaf("cidrIp", c));
        x.elem("ipv6Ranges", |_| {});
        x.elem("prefixListIds", |_| {});
    });
    tag_set(x, &g.tags);
}

pub fn trunk_association(x: &mut Xml, a: &TrunkAssociation) {
    x.leaf("associationId", &a.id);
    x.leaf("branchInterfaceId", &a.branch_eni_id);
    x.leaf("trunkInterfaceId", &a.trunk_eni_id);
    x.leaf("interfaceProtocol", "VLAN");
    x.leaf("vlanId", a.vlan_id);
    tag_set(x, &a.tags);
}

pub fn instance_type(x: &mut Xml, t: &InstanceType) {
    x.leaf("instanceType", &t.name);
    x.leaf("currentGeneration", true);
    x.leaf("bareMetal", false);
    x.leaf("hypervisor", "nitro");
    x.elem("vCpuInfo", |x| x.leaf("defaultVCpus", t.vcpus));
    x.elem("memoryInfo", |x| x.leaf("sizeInMiB", t.memory_mib));
    x.elem("networkInfo", |x| {
        x.leaf("networkPerformance", &t.network_performance);
        x.leaf("maximumNetworkInterfaces", t.max_enis);
        x.leaf("maximumNetworkCards", 1);
        x.leaf("defaultNetworkCardIndex", 0);
        x.list("networkCards", [t], |x, t| {
            x.leaf("networkCardIndex", 0);
            x.leaf("networkPerformance", &t.network_performance);
            x.leaf("maximumNetworkInterfaces", t.max_enis);
        });
        x.leaf("ipv4AddressesPerInterface", t.ipv4_per_eni);
        x.leaf("ipv6AddressesPerInterface", t.ipv4_per_eni);
        x.leaf("ipv6Supported", true);
        x.leaf("enaSupport", "required");
        x.leaf("efaSupported", false);
        x.leaf("encryptionInTransitSupported", false);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_and_dns_names() {
        assert_eq!(az_id("us-east-1a"), "use1-az1");
        assert_eq!(az_id("eu-west-2c"), "euw2-az3");
        let ip: Ipv4Addr = "10.0.1.5".parse().unwrap();
        assert_eq!(
            private_dns_name(ip, "us-east-1"),
            "ip-10-0-1-5.ec2.internal"
        );
        assert_eq!(
            private_dns_name(ip, "eu-west-1"),
            "ip-10-0-1-5.eu-west-1.compute.internal"
        );
    }
}
