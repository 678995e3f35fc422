//! The provider trait: what the operator asks of a cloud, in the domain's terms.

use async_trait::async_trait;

use super::error::CloudError;
use super::types::{
    AddressAssignment, AddressRelease, AssignedAddresses, AssociateTrunkRequest, CreateEniRequest,
    Eni, EniQuery, Instance, InstanceLimits, SecurityGroup, Subnet, SubnetQuery, Tags,
    TrunkAssociation,
};

pub type CloudResult<T> = Result<T, CloudError>;

/// A cloud that can hand out network interfaces. Used as `Arc<dyn CloudProvider>`.
///
/// Implementations put every request through a client-side rate limiter and retry
/// `Throttled`/`Transient` answers with backoff, so callers see those two errors only once
/// the retry budget is spent. Mutations are idempotent in effect: repeating one after an
/// unknown outcome (crash, timeout) converges on the same state.
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// An instance with its type, subnet and primary interface.
    async fn describe_instance(&self, instance_id: &str) -> CloudResult<Instance>;

    /// Network limits of an instance type.
    async fn instance_limits(&self, instance_type: &str) -> CloudResult<InstanceLimits>;

    /// Interfaces matching the query, across all result pages.
    async fn list_enis(&self, query: &EniQuery) -> CloudResult<Vec<Eni>>;

    /// Creates an interface tagged with this cluster's ownership tags. The same
    /// `client_token` returns the interface of the first call instead of a second one.
    async fn create_eni(&self, request: &CreateEniRequest) -> CloudResult<Eni>;

    /// Attaches an interface at a device index and returns the attachment id. Succeeds
    /// if the interface is already attached to that instance at that index.
    async fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
    ) -> CloudResult<String>;

    /// Detaches an interface. Succeeds if the attachment is already gone.
    async fn detach_eni(&self, attachment_id: &str, force: bool) -> CloudResult<()>;

    /// Deletes a detached interface. Succeeds if the interface is already gone.
    async fn delete_eni(&self, eni_id: &str) -> CloudResult<()>;

    /// Adds secondary addresses or prefixes and returns what the cloud reports as added.
    /// Where the cloud takes no client token for it (EC2), a count-based request is not
    /// idempotent: it is retried only on throttling (when the cloud provably did
    /// nothing), never after a timeout. ECS takes one, and the provider retries with it.
    async fn assign_addresses(
        &self,
        eni_id: &str,
        assignment: &AddressAssignment,
    ) -> CloudResult<AssignedAddresses>;

    /// Removes secondary addresses or prefixes.
    async fn unassign_addresses(&self, eni_id: &str, release: &AddressRelease) -> CloudResult<()>;

    /// Replaces the security groups of an interface.
    async fn set_security_groups(&self, eni_id: &str, groups: &[String]) -> CloudResult<()>;

    /// Adds or overwrites tags on resources (e.g. re-owning an interface after a restart).
    async fn tag_resources(&self, resource_ids: &[String], tags: &Tags) -> CloudResult<()>;

    /// Puts a branch interface on a trunk as a VLAN.
    async fn associate_trunk(
        &self,
        request: &AssociateTrunkRequest,
    ) -> CloudResult<TrunkAssociation>;

    /// Takes a branch interface off its trunk. Succeeds if the association is already gone.
    async fn disassociate_trunk(&self, association_id: &str, client_token: &str)
    -> CloudResult<()>;

    /// Branch associations of a trunk interface.
    async fn trunk_associations(&self, trunk_eni_id: &str) -> CloudResult<Vec<TrunkAssociation>>;

    /// Subnets with their free address counts.
    async fn describe_subnets(&self, query: &SubnetQuery) -> CloudResult<Vec<Subnet>>;

    /// The security groups `ids` (all of them, or `NotFound` naming one that is missing).
    async fn describe_security_groups(&self, ids: &[String]) -> CloudResult<Vec<SecurityGroup>>;
}
