//! What the operator and the node agent agree on beyond the types: the labels and
//! finalizer on their objects, the route table a SharedIP pod's traffic leaves by, and
//! where a subnet's gateway is. One definition each, so the two sides cannot drift.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Label on every PodNetwork naming the node it is bound to (`spec.nodeName`). Custom
/// resources have no field selectors on spec fields; agents watch by this label.
pub const NODE_LABEL: &str = "eni-operator.io/node";
/// Label on every PodNetwork naming the ENIPool its allocation came from.
pub const POOL_LABEL: &str = "eni-operator.io/pool";
/// Label (value `"true"`) on the PodNetwork of a pod a StatefulSet owns, whose address
/// a sticky pool holds for the next pod of the same name. On the PodNetwork because the
/// pod cache may have lost the pod by the time its PodNetwork is released (a restarted
/// operator surely has).
pub const STATEFUL_LABEL: &str = "eni-operator.io/statefulset-pod";
/// Finalizer the operator puts on PodNetworks, Nodes and ENIPools it manages.
pub const FINALIZER: &str = "eni-operator.io/cleanup";

/// First route table of the per-ENI tables: ENI `n` gets table `ROUTE_TABLE_BASE + n`,
/// clear of the kernel's own tables (253..=255) and of small numbers admins use.
pub const ROUTE_TABLE_BASE: u32 = 1000;

/// The route table of the ENI at `device_index`, for an allocation that names none.
pub fn route_table(device_index: u32) -> u32 {
    ROUTE_TABLE_BASE + device_index
}

/// The VPC router's address in `subnet`: its first host (AWS and Alibaba both).
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_per_device_index() {
        for (index, table) in [(0, 1000), (1, 1001), (15, 1015)] {
            assert_eq!(route_table(index), table);
        }
    }

    #[test]
    fn gateway_is_the_first_host_of_the_subnet() {
        for (subnet, gateway) in [
            ("10.0.1.0/24", "10.0.1.1"),
            ("10.0.1.77/24", "10.0.1.1"),
            ("172.31.16.0/20", "172.31.16.1"),
            ("10.0.0.64/26", "10.0.0.65"),
        ] {
            let subnet: Ipv4Net = subnet.parse().expect("cidr");
            assert_eq!(gateway_of(subnet).to_string(), gateway, "{subnet}");
        }
    }
}
