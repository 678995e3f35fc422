//! The pure part of the operator: decisions without I/O and without reading a clock
//! (the time comes in as an argument). Everything here is table-tested beside it.

pub mod eni;
pub mod inventory;
pub mod outcome;
pub mod plan;
pub mod references;
pub mod release;
pub mod selector;
pub mod settings;
pub mod sizing;
pub mod status;
pub mod sticky;
pub mod subnets;
#[cfg(test)]
pub(crate) mod testkit;
