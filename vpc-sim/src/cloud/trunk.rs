//! Trunk associations: branch (member) ENIs relayed over a trunk ENI with a VLAN id.

use std::time::Instant;

use super::Cloud;
use super::enis::check_client_token;
use super::idempotency::{IdemRequest, IdemResult};
use super::model::{EniStatus, InterfaceType, Tags, TrunkAssociation};
use super::requests::AssociateTrunk;
use crate::error::{CloudError, CloudResult, ErrorCode};

const VLAN_IDS: std::ops::RangeInclusive<u32> = 1..=4094;

impl Cloud {
    pub fn associate_trunk_interface(
        &mut self,
        req: &AssociateTrunk,
        client_token: Option<&str>,
        now: Instant,
    ) -> CloudResult<TrunkAssociation> {
        self.settle(now);
        let idem = IdemRequest::AssociateTrunk(req.clone());
        if let Some(token) = client_token {
            check_client_token(token)?;
            if let Some(IdemResult::Association(a)) = self.idempotency.lookup(token, &idem)? {
                return Ok(a);
            }
        }
        if req.gre_key.is_some() {
            return Err(CloudError::new(
                ErrorCode::UnsupportedOperation,
                "GRE trunk associations are not supported; use VlanId",
            ));
        }
        let trunk = self.eni(&req.trunk_eni_id)?;
        let branch = self.eni(&req.branch_eni_id)?;
        if trunk.interface_type != InterfaceType::Trunk {
            return Err(CloudError::invalid_parameter(format!(
                "Network interface {} is not a trunk interface",
                trunk.id
            )));
        }
        if branch.id == trunk.id || branch.interface_type == InterfaceType::Trunk {
            return Err(CloudError::invalid_parameter(format!(
                "Network interface {} cannot be a branch interface",
                branch.id
            )));
        }
        let Some(instance_id) = trunk
            .attachment
            .as_ref()
            .filter(|_| trunk.status() == EniStatus::InUse)
            .map(|a| a.instance_id.clone())
        else {
            return Err(CloudError::new(
                ErrorCode::IncorrectState,
                format!(
                    "Trunk interface {} is not attached (status {})",
                    trunk.id,
                    trunk.status().as_str()
                ),
            ));
        };
        if branch.status() != EniStatus::Available {
            return Err(CloudError::new(
                ErrorCode::InvalidNetworkInterfaceInUse,
                format!("Interface: [{}] in use.", branch.id),
            ));
        }
        if branch.az != trunk.az {
            return Err(CloudError::new(
                ErrorCode::InvalidParameterCombination,
                format!(
                    "Branch {} and trunk {} are not in the same availability zone",
                    branch.id, trunk.id
                ),
            ));
        }
        if !VLAN_IDS.contains(&req.vlan_id) {
            return Err(CloudError::invalid_parameter(format!(
                "VlanId {} is out of range 1-4094",
                req.vlan_id
            )));
        }
        let members: Vec<&TrunkAssociation> = self
            .state
            .trunk_associations
            .values()
            .filter(|a| a.trunk_eni_id == trunk.id)
            .collect();
        if members.iter().any(|a| u32::from(a.vlan_id) == req.vlan_id) {
            return Err(CloudError::invalid_parameter(format!(
                "VlanId {} is already in use on trunk interface {}",
                req.vlan_id, trunk.id
            )));
        }
        let instance = self.instance(&instance_id)?;
        let itype = self.instance_type_of(instance)?;
        if members.len() as u32 >= itype.max_members {
            return Err(CloudError::new(
                ErrorCode::AttachmentLimitExceeded,
                format!(
                    "Trunk interface {} already has {} branch interfaces, the limit for {}",
                    trunk.id,
                    members.len(),
                    itype.name
                ),
            ));
        }
        if branch.ipv4_slots() > itype.ipv4_per_eni {
            return Err(CloudError::new(
                ErrorCode::PrivateIpAddressLimitExceeded,
                format!(
                    "Branch interface {} holds more addresses than {} allows",
                    branch.id, itype.name
                ),
            ));
        }
        let vlan_id = u16::try_from(req.vlan_id)
            .map_err(|_| CloudError::invalid_parameter("VlanId out of range"))?;
        let assoc = TrunkAssociation {
            id: self.ids.id("trunk-assoc"),
            trunk_eni_id: req.trunk_eni_id.clone(),
            branch_eni_id: req.branch_eni_id.clone(),
            vlan_id,
            gre_key: None,
            tags: Tags::new(),
        };
        if let Some(b) = self.state.enis.get_mut(&req.branch_eni_id) {
            b.trunk_association = Some(assoc.id.clone());
        }
        self.state
            .trunk_associations
            .insert(assoc.id.clone(), assoc.clone());
        if let Some(token) = client_token {
            self.idempotency.record(
                token.to_owned(),
                idem,
                IdemResult::Association(assoc.clone()),
            );
        }
        Ok(assoc)
    }

    pub fn disassociate_trunk_interface(
        &mut self,
        association_id: &str,
        client_token: Option<&str>,
    ) -> CloudResult<()> {
        let idem = IdemRequest::DisassociateTrunk(association_id.to_owned());
        if let Some(token) = client_token {
            check_client_token(token)?;
            if self.idempotency.lookup(token, &idem)?.is_some() {
                return Ok(());
            }
        }
        if !self.state.trunk_associations.contains_key(association_id) {
            return Err(CloudError::new(
                ErrorCode::InvalidAssociationIdNotFound,
                format!("The association ID '{association_id}' does not exist"),
            ));
        }
        self.remove_association(association_id);
        if let Some(token) = client_token {
            self.idempotency
                .record(token.to_owned(), idem, IdemResult::Done);
        }
        Ok(())
    }

    pub(super) fn remove_association(&mut self, association_id: &str) {
        if let Some(a) = self.state.trunk_associations.remove(association_id)
            && let Some(b) = self.state.enis.get_mut(&a.branch_eni_id)
        {
            b.trunk_association = None;
        }
    }
}
