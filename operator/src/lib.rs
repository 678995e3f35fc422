//! eni-operator: the cluster controller that gives pods VPC addresses from cloud ENIs.

pub mod cloud;
pub mod context;
pub mod controllers;
pub mod engine;
pub mod finalizer;
pub mod keyed;
pub mod leadership;
pub mod metrics;
pub mod node;
pub mod pod_record;
pub mod run;
