//! ClientToken idempotency: a retried request with the same token and the same
//! parameters gets the first answer; the same token with other parameters is refused.

use std::collections::HashMap;

use super::model::{Eni, TrunkAssociation};
use super::requests::{AssignIps, AssignedIps, AssociateTrunk, CreateEni};
use crate::error::{CloudError, CloudResult, ErrorCode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdemRequest {
    CreateEni(CreateEni),
    /// An assign on one ENI (ECS takes a ClientToken for it; EC2 does not).
    AssignIps(String, AssignIps),
    AssociateTrunk(AssociateTrunk),
    DisassociateTrunk(String),
}

#[derive(Clone, Debug)]
pub enum IdemResult {
    Eni(Box<Eni>),
    Assigned(AssignedIps),
    Association(TrunkAssociation),
    Done,
}

#[derive(Clone, Debug, Default)]
pub struct Idempotency {
    records: HashMap<String, (IdemRequest, IdemResult)>,
}

impl Idempotency {
    /// The recorded answer for `token`, if the request matches the recorded one.
    pub fn lookup(&self, token: &str, request: &IdemRequest) -> CloudResult<Option<IdemResult>> {
        match self.records.get(token) {
            None => Ok(None),
            Some((recorded, result)) if recorded == request => Ok(Some(result.clone())),
            Some(_) => Err(CloudError::new(
                ErrorCode::IdempotentParameterMismatch,
                format!("The client token '{token}' was already used with different parameters"),
            )),
        }
    }

    pub fn record(&mut self, token: String, request: IdemRequest, result: IdemResult) {
        self.records.insert(token, (request, result));
    }

    pub fn clear(&mut self) {
        self.records.clear();
    }
}
