pub mod agent;
pub mod cni;
pub mod dataplane;
pub mod protocol;
