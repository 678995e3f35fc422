//! eni-operator: the cluster controller that gives pods VPC addresses from cloud ENIs.

pub mod allocate;
pub mod cloud;
pub mod finalizer;
pub mod gc;
pub mod inventory;
pub mod metrics;
pub mod node;
pub mod nodes;
pub mod operator;
pub mod outcome;
pub mod pool;
pub mod release;
pub mod selector;
pub mod settings;
pub mod status;
pub mod sticky;
