//! `eni-agent`: the node daemon that wires pods for `eni-cni`.
//!
//! - [`cache`]: this node's PodNetworks in memory (kube reflector store);
//! - [`kube`]: the watch that fills the cache and the status writes (all API traffic);
//! - [`status_queue`]: status writes off the request's path, in order;
//! - [`handler`]: what each CNI command does;
//! - [`server`]: the unix socket the plugin talks to;
//! - [`state`]: the per-container records that outlive PodNetworks and restarts;
//! - [`wiring`]: the seam to the dataplane, implemented by [`crate::dataplane::Dataplane`];
//! - [`http`], [`metrics`]: health endpoints and Prometheus metrics.

pub mod cache;
pub mod handler;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod server;
pub mod state;
pub mod status_queue;
pub mod wiring;

pub use handler::{Agent, AgentConfig};
