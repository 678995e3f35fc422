//! The controllers: each watches what it acts on and schedules its work per key on the
//! keyed runner (the collector runs on a timer).
//!
//! - `pods`: allocation (`allocation`) and the PodNetworks of pods that are gone.
//! - `podnetworks`: release of deleted PodNetworks' units after their hold.
//! - `nodes`: loading nodes, their maintenance and draining, their trunks (`trunk`),
//!   their teardown.
//! - `pools`: finalizer, status, deletion.
//! - `gc`: leaked ENIs.

mod allocation;
pub mod gc;
pub mod nodes;
pub mod podnetworks;
pub mod pods;
pub mod pools;
pub mod trunk;
