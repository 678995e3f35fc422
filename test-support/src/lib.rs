//! Test support shared by the workspace's tests, the end-to-end bed and its programs.
//!
//! - `cloud`: vpc-sim's EC2 server in this process, nodes registered through its admin
//!   operations, lookups of layout ids, the operator's AWS provider pointed at it.
//! - `fake_vpc`: ENIs as real links in network namespaces, made by vpc-sim's own
//!   materializer (a VPC router namespace, a node namespace, pod namespaces).
//! - `pool`, `podnetwork`: typed ENIPool and PodNetwork fixtures.
//! - `probe`: ping and a TCP echo from inside namespaces; `command`: `ip` and friends.
//! - `transfer`: bulk TCP transfers between namespaces, timed at the receiver.
//!
//! Test code: failures to set up panic with a message, failures of the code under test
//! are returned to the test.

pub mod cloud;
pub mod command;
pub mod fake_vpc;
pub mod podnetwork;
pub mod pool;
pub mod probe;
pub mod transfer;

pub use cloud::{SimCloud, SimError};
pub use fake_vpc::{FakeEni, FakeEniKind, FakeVpc, FakeVpcError};
pub use podnetwork::{AllocationBuilder, PodNetworkBuilder, allocation, podnetwork};
pub use pool::{PoolBuilder, pool};
