//! Container images of eni-operator, built without a container daemon: reproducible OCI
//! image layouts (as tar files) for the operator, the node agent and the test bed's
//! pods, and a push to any OCI distribution registry.
//!
//! See docs/images.md for what each image holds.

pub mod blob;
pub mod debian;
pub mod elf;
pub mod error;
pub mod image;
pub mod layer;
pub mod layout;
pub mod product;
pub mod provenance;
pub mod push;
pub mod rootfs;
pub mod summary;
pub mod testbed;

pub use error::{Error, Result};
pub use image::Image;
pub use provenance::Provenance;
