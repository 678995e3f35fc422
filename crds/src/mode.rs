use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a pod gets its VPC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// One secondary IP of an ENI shared by many pods (density: ENIs × IPs per ENI).
    #[serde(rename = "SharedIP")]
    SharedIp,
    /// A whole ENI moved into the pod's network namespace (ENI passthrough).
    Exclusive,
    /// A member (branch) ENI relayed over the node's trunk ENI, with per-pod security groups.
    Trunk,
}

/// How a SharedIP pod is connected to its ENI on the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Datapath {
    /// veth pair plus source policy routing into a route table per ENI.
    #[default]
    VethPolicyRouting,
    /// An L2 ipvlan slave of the ENI in the pod (needs the ipvlan kernel module).
    #[serde(rename = "IPVlan")]
    IpVlan,
}
