//! Derives the DataplaneView (what the kernel should look like) from the cloud state.

use super::Cloud;
use super::model::{AttachState, Eni, InterfaceType};
use crate::dataplane_view::{DataplaneView, EniKind, EniPortView, NodeView, SecurityGroupView};

impl Cloud {
    pub fn dataplane_view(&self) -> DataplaneView {
        let s = &self.state;
        let mut nodes = Vec::new();
        for inst in s.instances.values() {
            let mut attached: Vec<&Eni> = s
                .enis
                .values()
                .filter(|e| {
                    e.attachment.as_ref().is_some_and(|a| {
                        a.instance_id == inst.id && a.state == AttachState::Attached
                    })
                })
                .collect();
            attached.sort_by_key(|e| e.attachment.as_ref().map_or(0, |a| a.device_index));
            let mut enis = Vec::new();
            for eni in &attached {
                let device_index = eni.attachment.as_ref().map_or(0, |a| a.device_index);
                let kind = if device_index == 0 {
                    EniKind::Primary
                } else if eni.interface_type == InterfaceType::Trunk {
                    EniKind::Trunk
                } else {
                    EniKind::Secondary
                };
                if let Some(port) = self.port(eni, device_index, kind) {
                    enis.push(port);
                }
                // Members ride on the trunk; they carry the trunk's device index.
                let mut members: Vec<_> = s
                    .trunk_associations
                    .values()
                    .filter(|a| a.trunk_eni_id == eni.id)
                    .collect();
                members.sort_by_key(|a| a.vlan_id);
                for a in members {
                    let Some(branch) = s.enis.get(&a.branch_eni_id) else {
                        continue;
                    };
                    let kind = EniKind::Member {
                        trunk_eni_id: eni.id.clone(),
                        vlan_id: a.vlan_id,
                    };
                    if let Some(port) = self.port(branch, device_index, kind) {
                        enis.push(port);
                    }
                }
            }
            nodes.push(NodeView {
                instance_id: inst.id.clone(),
                netns: inst.netns.clone(),
                enis,
            });
        }
        let security_groups = s
            .groups
            .values()
            .map(|g| SecurityGroupView {
                group_id: g.id.clone(),
                ingress: g.ingress.clone(),
            })
            .collect();
        DataplaneView {
            nodes,
            security_groups,
        }
    }

    fn port(&self, eni: &Eni, device_index: u32, kind: EniKind) -> Option<EniPortView> {
        let subnet = self.state.subnets.get(&eni.subnet_id)?;
        Some(EniPortView {
            eni_id: eni.id.clone(),
            mac: eni.mac.clone(),
            device_index,
            kind,
            addresses: eni.all_ips().collect(),
            prefixes: eni.prefixes.clone(),
            security_group_ids: eni.groups.clone(),
            subnet_cidr: subnet.cidr,
            gateway: subnet.gateway(),
        })
    }
}
