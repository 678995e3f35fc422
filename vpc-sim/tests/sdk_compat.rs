//! aws-sdk-ec2 (the operator's client) against vpc-sim: the SDK signs, sends and parses
//! every action the operator uses, and sees EC2's error codes.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{
    Filter, NetworkInterfaceCreationType, ResourceType, Tag, TagSpecification,
};
use vpc_sim::behaviour::SimConfig;
use vpc_sim::cloud::requests::RegisterInstance;
use vpc_sim::server::{self, ServerConfig};

#[tokio::test]
async fn the_sdk_parses_every_action() {
    let mut config = ServerConfig::new().unwrap();
    config.behaviour = SimConfig::instant();
    let h = server::spawn(config).await.unwrap();
    let node = h
        .sim()
        .register_instance(&RegisterInstance {
            node_name: "sdk-node".into(),
            instance_type: "m5.large".into(),
            subnet: "nodes-a".into(),
            security_groups: vec![],
            netns: None,
        })
        .unwrap();
    let sdk_config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&h.ec2_url)
        .credentials_provider(Credentials::new(
            "vpcsim",
            "vpcsim-secret",
            None,
            None,
            "test",
        ))
        .build();
    let ec2 = Client::from_conf(sdk_config);

    let subnets = ec2
        .describe_subnets()
        .filters(Filter::builder().name("tag:Name").values("pods-a").build())
        .send()
        .await
        .unwrap();
    let subnet = subnets.subnets()[0].clone();
    assert_eq!(subnet.available_ip_address_count(), Some(251));
    let subnet_id = subnet.subnet_id().unwrap();

    let types = ec2
        .describe_instance_types()
        .instance_types("m5.large".into())
        .send()
        .await
        .unwrap();
    let net = types.instance_types()[0].network_info().unwrap();
    assert_eq!(
        (
            net.maximum_network_interfaces(),
            net.ipv4_addresses_per_interface()
        ),
        (Some(3), Some(10))
    );

    let groups = ec2.describe_security_groups().send().await.unwrap();
    assert!(
        groups
            .security_groups()
            .iter()
            .any(|g| g.group_name() == Some("default"))
    );

    let created = ec2
        .create_network_interface()
        .subnet_id(subnet_id)
        .secondary_private_ip_address_count(2)
        .client_token("sdk-1")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::NetworkInterface)
                .tags(Tag::builder().key("owner").value("sdk").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let eni = created.network_interface().unwrap();
    let eni_id = eni.network_interface_id().unwrap().to_owned();
    assert_eq!(eni.private_ip_addresses().len(), 3);
    assert_eq!(eni.tag_set()[0].value(), Some("sdk"));

    let att = ec2
        .attach_network_interface()
        .network_interface_id(&eni_id)
        .instance_id(&node.instance_id)
        .device_index(1)
        .send()
        .await
        .unwrap();
    assert!(att.attachment_id().unwrap().starts_with("eni-attach-"));

    let assigned = ec2
        .assign_private_ip_addresses()
        .network_interface_id(&eni_id)
        .ipv4_prefix_count(1)
        .send()
        .await
        .unwrap();
    assert_eq!(assigned.assigned_ipv4_prefixes().len(), 1);

    let described = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&node.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(described.network_interfaces().len(), 2);
    let mine = described
        .network_interfaces()
        .iter()
        .find(|n| n.network_interface_id() == Some(eni_id.as_str()))
        .unwrap();
    assert_eq!(mine.attachment().unwrap().device_index(), Some(1));
    assert_eq!(mine.ipv4_prefixes().len(), 1);
    assert!(mine.attachment().unwrap().attach_time().is_some());

    let instances = ec2
        .describe_instances()
        .instance_ids(&node.instance_id)
        .send()
        .await
        .unwrap();
    let inst = &instances.reservations()[0].instances()[0];
    assert_eq!(inst.network_interfaces().len(), 2);
    assert_eq!(
        inst.placement().unwrap().availability_zone(),
        Some("us-east-1a")
    );

    let trunk = ec2
        .create_network_interface()
        .subnet_id(subnet_id)
        .interface_type(NetworkInterfaceCreationType::Trunk)
        .send()
        .await
        .unwrap();
    let trunk_id = trunk
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_owned();
    ec2.attach_network_interface()
        .network_interface_id(&trunk_id)
        .instance_id(&node.instance_id)
        .device_index(2)
        .send()
        .await
        .unwrap();
    let branch = ec2
        .create_network_interface()
        .subnet_id(subnet_id)
        .send()
        .await
        .unwrap();
    let branch_id = branch
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_owned();
    let assoc = ec2
        .associate_trunk_interface()
        .branch_interface_id(&branch_id)
        .trunk_interface_id(&trunk_id)
        .vlan_id(7)
        .send()
        .await
        .unwrap();
    let assoc_id = assoc
        .interface_association()
        .unwrap()
        .association_id()
        .unwrap()
        .to_owned();
    let listed = ec2
        .describe_trunk_interface_associations()
        .association_ids(&assoc_id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.interface_associations()[0].vlan_id(), Some(7));
    ec2.disassociate_trunk_interface()
        .association_id(&assoc_id)
        .send()
        .await
        .unwrap();

    ec2.create_tags()
        .resources(&eni_id)
        .tags(Tag::builder().key("k").value("v").build())
        .send()
        .await
        .unwrap();
    ec2.modify_network_interface_attribute()
        .network_interface_id(&eni_id)
        .groups(groups.security_groups()[0].group_id().unwrap())
        .send()
        .await
        .unwrap();
    ec2.unassign_private_ip_addresses()
        .network_interface_id(&eni_id)
        .private_ip_addresses(mine.private_ip_addresses()[1].private_ip_address().unwrap())
        .send()
        .await
        .unwrap();

    let refused = ec2
        .delete_network_interface()
        .network_interface_id(&eni_id)
        .send()
        .await
        .unwrap_err();
    let code = aws_sdk_ec2::error::ProvideErrorMetadata::code(&refused);
    assert_eq!(code, Some("InvalidNetworkInterface.InUse"));
    ec2.detach_network_interface()
        .attachment_id(att.attachment_id().unwrap())
        .send()
        .await
        .unwrap();
    ec2.delete_network_interface()
        .network_interface_id(&eni_id)
        .send()
        .await
        .unwrap();
    h.shutdown().await.unwrap();
}
