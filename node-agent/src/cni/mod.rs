//! The `eni-cni` plugin: parses a CNI invocation, forwards it to the node's eni-agent and
//! prints the spec's answer.

pub mod client;
pub mod config;
pub mod env;
pub mod error;
pub mod install;
pub mod plugin;
pub mod result;
pub mod version;

pub use error::CniError;
pub use plugin::{Output, run};
