//! PodNetwork and Allocation fixtures.
//!
//! Allocations are written in the CRD's wire form (strings, as the API server stores
//! them) and decoded, so a fixture reads the same whatever Rust types the fields have.

use std::net::Ipv4Addr;

use eni_crds::{Allocation, Datapath, Mode, PodNetwork, PodNetworkSpec};
use serde_json::{Map, Value, json};

use crate::fake_vpc::FakeEni;

/// Subnet id every fake ENI's allocation names (the fake VPC has no cloud ids).
const SUBNET_ID: &str = "subnet-1";

/// An Allocation being built.
#[derive(Clone, Debug)]
pub struct AllocationBuilder {
    wire: Map<String, Value>,
}

/// `address` on `eni`, as SharedIP pods get it: a /32, the subnet's gateway, the ENI's
/// MAC and device index.
pub fn allocation(eni: &FakeEni, address: Ipv4Addr) -> AllocationBuilder {
    let wire = json!({
        "address": address.to_string(),
        "prefixLength": 32,
        "gateway": eni.gateway().to_string(),
        "subnetCIDR": eni.subnet.to_string(),
        "subnetID": SUBNET_ID,
        "eniID": eni.id,
        "eniMAC": eni.mac,
        "deviceIndex": eni.device_index,
    });
    let Value::Object(wire) = wire else {
        unreachable!("a JSON object literal")
    };
    AllocationBuilder { wire }
}

impl AllocationBuilder {
    /// The prefix length the pod configures (its subnet's, for an ENI of its own).
    pub fn prefix_length(self, length: u8) -> Self {
        self.set("prefixLength", json!(length))
    }

    pub fn route_table(self, table: u32) -> Self {
        self.set("routeTable", json!(table))
    }

    pub fn datapath(self, datapath: Datapath) -> Self {
        self.set("datapath", json!(datapath))
    }

    /// A MAC no link has (an ENI that is not attached).
    pub fn eni_mac(self, mac: &str) -> Self {
        self.set("eniMAC", json!(mac))
    }

    /// A member ENI on VLAN `vlan_id` of `trunk`.
    pub fn trunk(self, vlan_id: u16, trunk: &FakeEni) -> Self {
        self.set("vlanID", json!(vlan_id))
            .set("trunkMAC", json!(trunk.mac))
    }

    pub fn build(self) -> Allocation {
        serde_json::from_value(Value::Object(self.wire)).expect("a fixture allocation decodes")
    }

    fn set(mut self, key: &str, value: Value) -> Self {
        self.wire.insert(key.to_owned(), value);
        self
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
        mac: "02:00:00:00:01:01",
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
            .eni_mac("02:00:00:00:00:99")
            .build();
        assert_eq!(trunk.vlan_id, Some(7));
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
