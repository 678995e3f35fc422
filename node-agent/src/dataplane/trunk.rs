//! Trunk: a member (branch) ENI relayed over the node's trunk ENI.
//!
//! A member that the cloud presents as its own link is handed to the pod like an
//! Exclusive ENI (see [`super::passthrough`], kind `TrunkMember`). A member that exists
//! only as a VLAN on the trunk is made here: a VLAN sub-interface of the trunk ENI
//! (found by the allocation's `trunkMAC`) with the member's VLAN id and MAC, created
//! and moved into the pod by one request (kind `TrunkVlan`). The pod's addresses and
//! routes are then those of every whole-link pod.

use std::os::fd::AsFd;

use eni_crds::{Mac, Mode};

use super::error::{DataplaneError, KernelFeature};
use super::kernel::Netlink;
use super::naming::{PodLinkOrigin, WiringKind};
use super::requests;
use super::veth_pair::mark_pod_link;
use super::{Checked, Dataplane, PodRequest};

/// How a member ENI that is not a link of its own reaches the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct VlanRelay {
    /// MAC of the trunk ENI the VLAN is made on.
    trunk_mac: Mac,
    vlan_id: u16,
}

/// The VLAN relay for a request, when its allocation is a Trunk member with a trunk
/// and VLAN id; `None` for every other request.
pub(super) fn vlan_relay(
    mode: Mode,
    trunk_mac: Option<Mac>,
    vlan_id: Option<u16>,
) -> Option<VlanRelay> {
    match (mode, trunk_mac, vlan_id) {
        (Mode::Trunk, Some(trunk_mac), Some(vlan_id)) => Some(VlanRelay { trunk_mac, vlan_id }),
        _ => None,
    }
}

impl Dataplane {
    /// Creates the member's VLAN sub-interface of the trunk ENI inside the pod as
    /// `<ifname>`, marked as this container's.
    pub(super) async fn relay_as_vlan(
        &self,
        request: &PodRequest,
        checked: &Checked,
        relay: VlanRelay,
        pod: &Netlink,
        pod_file: &std::fs::File,
    ) -> Result<WiringKind, DataplaneError> {
        if !self.features.vlan {
            return Err(DataplaneError::FeatureMissing {
                feature: KernelFeature::Vlan,
                needed_by: "a Trunk member relayed as a VLAN sub-interface",
            });
        }
        let trunk =
            self.host
                .link_by_mac(relay.trunk_mac)
                .await?
                .ok_or(DataplaneError::EniNotFound {
                    mac: relay.trunk_mac,
                })?;
        self.host
            .add_link(
                requests::vlan_link(
                    &request.ifname,
                    trunk.index,
                    relay.vlan_id,
                    checked.eni_mac.octets(),
                    Some(pod_file.as_fd()),
                ),
                &format!(
                    "creating VLAN {} of {} in the pod",
                    relay.vlan_id, trunk.name
                ),
            )
            .await?;
        mark_pod_link(pod, request, PodLinkOrigin::Vlan, "marking the VLAN link").await?;
        Ok(WiringKind::TrunkVlan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trunk_member_with_trunk_and_vlan_is_relayed() {
        let trunk = Some(Mac::new([2, 0, 0, 0, 0, 0xaa]));
        assert_eq!(
            vlan_relay(Mode::Trunk, trunk, Some(7)),
            Some(VlanRelay {
                trunk_mac: Mac::new([2, 0, 0, 0, 0, 0xaa]),
                vlan_id: 7
            })
        );
        for (mode, trunk_mac, vlan_id) in [
            (Mode::Trunk, None, Some(7)),
            (Mode::Trunk, trunk, None),
            (Mode::Exclusive, trunk, Some(7)),
            (Mode::SharedIp, trunk, Some(7)),
        ] {
            assert_eq!(vlan_relay(mode, trunk_mac, vlan_id), None, "{mode:?}");
        }
    }
}
