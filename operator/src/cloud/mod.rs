//! The cloud layer: a provider trait in the domain's terms, its typed errors and types,
//! the call policy (token bucket, backoff, metrics) and the EC2 implementation.

pub mod alibaba;
pub mod aws;
pub mod error;
pub mod metrics;
pub mod policy;
pub mod provider;
pub mod tags;
pub mod types;

pub use error::{CloudError, Limit};
pub use metrics::CloudMetrics;
pub use policy::{Backoff, CallPolicy, RateLimit, Retry};
pub use provider::{CloudProvider, CloudResult};
pub use types::*;
