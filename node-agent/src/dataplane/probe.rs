//! Which optional kernel features this node has, found by trying: a throwaway veth
//! in a scratch namespace, then an ipvlan and a VLAN link on top of it. The scratch
//! namespace disappears with its netlink socket.

use eni_crds::{Allocation, Datapath, Mode};
use tracing::{info, warn};

use super::error::{DataplaneError, errno};
use super::kernel::Netlink;
use super::netns;
use super::requests;

/// Optional kernel features the datapaths use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFeatures {
    /// ipvlan links (SharedIP with datapath IPVlan).
    pub ipvlan: bool,
    /// 802.1Q VLAN links (Trunk members as VLAN sub-interfaces).
    pub vlan: bool,
}

impl KernelFeatures {
    /// Each feature with the name logs and metrics give it.
    pub fn named(&self) -> [(&'static str, bool); 2] {
        [("ipvlan", self.ipvlan), ("vlan", self.vlan)]
    }

    /// Why this node cannot wire a pod of `mode` with `allocation`, when that is known
    /// before wiring. Trunk needs VLAN only when the member ENI does not arrive as its
    /// own device, which only wiring can tell; the dataplane reports that case itself.
    pub fn refusal(&self, mode: Mode, allocation: &Allocation) -> Option<String> {
        let ipvlan = mode == Mode::SharedIp && allocation.datapath == Some(Datapath::IpVlan);
        (ipvlan && !self.ipvlan).then(|| {
            "the node's kernel lacks ipvlan, which SharedIP with datapath IPVlan needs; use datapath VethPolicyRouting for this pool".to_string()
        })
    }
}

/// Probes the running kernel.
pub async fn probe() -> Result<KernelFeatures, DataplaneError> {
    let scratch = netns::scratch_netlink().await?;
    scratch
        .add_link(
            rtnetlink::LinkVeth::new("probe0", "probe1").build(),
            "creating the probe veth",
        )
        .await?;
    let parent = scratch
        .link_by_name("probe0")
        .await?
        .ok_or_else(|| DataplaneError::Worker("probe veth vanished".into()))?
        .index;
    let features = KernelFeatures {
        ipvlan: try_create(
            &scratch,
            "ipvlan",
            requests::ipvlan_link("probe-ipvl", parent, None),
        )
        .await?,
        vlan: try_create(
            &scratch,
            "vlan",
            requests::vlan_link("probe-vlan", parent, 2, [0x02, 0, 0, 0, 0, 2], None),
        )
        .await?,
    };
    info!(?features, "kernel features probed");
    Ok(features)
}

async fn try_create(
    scratch: &Netlink,
    kind: &str,
    message: netlink_packet_route::link::LinkMessage,
) -> Result<bool, DataplaneError> {
    match scratch.add_link(message, &format!("probing {kind}")).await {
        Ok(()) => Ok(true),
        Err(DataplaneError::Netlink { source, .. })
            if errno(&source) == Some(nix::libc::EOPNOTSUPP) =>
        {
            warn!(kind, "link kind not supported by this kernel");
            Ok(false)
        }
        Err(other) => Err(other),
    }
}
