//! PodNetwork and Allocation fixtures.

use std::net::Ipv4Addr;

use eni_crds::contract::gateway_of;
use eni_crds::{Allocation, Datapath, Mac, Mode, PodNetwork, PodNetworkSpec};

use crate::fake_vpc::FakeEni;

/// Subnet id every fake ENI's allocation names (the fake VPC has no cloud ids).
const SUBNET_ID: &str = "subnet-1";

/// An Allocation being built.
#[derive(Clone, Debug)]
pub struct AllocationBuilder {
    allocation: Allocation,
}

/// `address` on `eni`, as SharedIP pods get it: a /32, the subnet's gateway, the ENI's
/// MAC and device index.
pub fn allocation(eni: &FakeEni, address: Ipv4Addr) -> AllocationBuilder {
    AllocationBuilder {
        allocation: Allocation {
            address,
            prefix_length: 32,
            gateway: gateway_of(eni.subnet),
            subnet_cidr: eni.subnet,
            subnet_id: SUBNET_ID.into(),
            eni_id: eni.id.into(),
            eni_mac: eni.mac,
            device_index: eni.device_index,
            ..Allocation::default()
        },
    }
}

impl AllocationBuilder {
    /// The prefix length the pod configures (its subnet's, for an ENI of its own).
    pub fn prefix_length(mut self, length: u8) -> Self {
        self.allocation.prefix_length = length;
        self
    }

    pub fn route_table(mut self, table: u32) -> Self {
        self.allocation.route_table = Some(table);
        self
    }

    pub fn datapath(mut self, datapath: Datapath) -> Self {
        self.allocation.datapath = Some(datapath);
        self
    }

    /// A MAC no link has (an ENI that is not attached).
    pub fn eni_mac(mut self, mac: Mac) -> Self {
        self.allocation.eni_mac = mac;
        self
    }

    /// A member ENI on VLAN `vlan_id` of `trunk`.
    pub fn trunk(mut self, vlan_id: u16, trunk: &FakeEni) -> Self {
        self.allocation.vlan_id = Some(vlan_id);
        self.allocation.trunk_mac = Some(trunk.mac);
        self
    }

    pub fn build(self) -> Allocation {
        self.allocation
    }
}

/// A PodNetwork being built.
#[derive(Clone, Debug)]
pub struct PodNetworkBuilder {
    podnetwork: PodNetwork,
}

/// The PodNetwork the operator writes for pod `namespace/name` on `node`: mode
/// SharedIP, pool `default`, pod UID `uid-<name>`.
pub fn podnetwork(
    namespace: &str,
    name: &str,
    node: &str,
    allocation: Allocation,
) -> PodNetworkBuilder {
    let mut podnetwork = PodNetwork::new(
        name,
        PodNetworkSpec {
            pod_uid: format!("uid-{name}"),
            node_name: node.into(),
            pool: "default".into(),
            mode: Mode::SharedIp,
            allocation,
        },
    );
    podnetwork.metadata.namespace = Some(namespace.into());
    PodNetworkBuilder { podnetwork }
}

impl PodNetworkBuilder {
    pub fn uid(mut self, uid: &str) -> Self {
        self.podnetwork.spec.pod_uid = uid.into();
        self
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.podnetwork.spec.mode = mode;
        self
    }

    pub fn build(self) -> PodNetwork {
        self.podnetwork
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_vpc::FakeEniKind;
    use ipnet::Ipv4Net;

    const ENI: FakeEni = FakeEni {
        id: "eni-0a1b",
        mac: Mac::new([2, 0, 0, 0, 1, 1]),
        device_index: 1,
        subnet: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 1, 0), 24),
        block: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 1, 0), 25),
        kind: FakeEniKind::Secondary,
    };

    #[test]
    fn allocation_reads_like_the_crd() {
        let built = allocation(&ENI, Ipv4Addr::new(10, 0, 1, 5))
            .route_table(1001)
            .build();
        let parsed: Allocation = serde_json::from_str(
            r#"{"address":"10.0.1.5","prefixLength":32,"gateway":"10.0.1.1","subnetCIDR":"10.0.1.0/24","subnetID":"subnet-1","eniID":"eni-0a1b","eniMAC":"02:00:00:00:01:01","deviceIndex":1,"routeTable":1001}"#,
        )
        .unwrap();
        assert_eq!(built, parsed);
        let trunk = allocation(&ENI, Ipv4Addr::new(10, 0, 1, 6))
            .prefix_length(24)
            .trunk(7, &ENI)
            .datapath(Datapath::IpVlan)
            .eni_mac(Mac::new([2, 0, 0, 0, 0, 0x99]))
            .build();
        assert_eq!(trunk.vlan_id, Some(7));
        assert_eq!(trunk.trunk_mac, Some(ENI.mac));
        assert_eq!(trunk.prefix_length, 24);
        assert_eq!(trunk.datapath, Some(Datapath::IpVlan));
        assert_eq!(
            serde_json::to_value(&trunk).unwrap()["eniMAC"],
            "02:00:00:00:00:99"
        );
    }

    #[test]
    fn podnetwork_defaults_and_options() {
        let pn = podnetwork(
            "default",
            "web-0",
            "node-a",
            allocation(&ENI, Ipv4Addr::new(10, 0, 1, 5)).build(),
        )
        .uid("uid-1")
        .mode(Mode::Exclusive)
        .build();
        assert_eq!(pn.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(pn.metadata.name.as_deref(), Some("web-0"));
        assert_eq!(pn.spec.pod_uid, "uid-1");
        assert_eq!(pn.spec.node_name, "node-a");
        assert_eq!(pn.spec.pool, "default");
        assert_eq!(pn.spec.mode, Mode::Exclusive);
    }
}
