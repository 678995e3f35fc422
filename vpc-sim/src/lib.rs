//! vpc-sim: a strict VPC simulator that speaks EC2's and Alibaba Cloud ECS's APIs.
//!
//! [`cloud::Cloud`] is the state machine (no I/O); [`sim::Sim`] adds the cloud's
//! behaviour (latency, throttling, faults, eventual consistency, from [`behaviour`]);
//! [`server`] puts the EC2 Query API ([`ec2`]), the ECS OpenAPI ([`ecs`]) and the admin
//! API ([`admin`]) in front of it; [`materialize`] makes the resulting [`dataplane_view::DataplaneView`] real
//! on the local kernel.

pub mod admin;
pub mod behaviour;
pub mod catalog;
pub mod cloud;
pub mod dataplane_view;
pub mod ec2;
pub mod ecs;
pub mod error;
pub mod ids;
pub mod layout;
pub mod materialize;
pub mod server;
pub mod sigv4;
pub mod sim;
