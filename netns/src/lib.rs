//! Network namespaces as the agent, vpc-sim and the test bed use them.
//!
//! - `named`: namespaces made the iproute2 way (a bind mount on `/run/netns/<name>`), so
//!   `ip netns exec` works on them and they outlive the thread that made them.
//! - `thread`: work run on a short-lived dedicated thread that has entered a namespace.
//!   A thread's namespace is per thread, so no runtime thread ever changes namespace.
//! - `netlink`: an rtnetlink connection whose socket lives in a namespace.
//! - `sysctl`: `/proc/sys/net` of the calling thread's namespace.
//!
//! Every function fails with `NetnsError`; callers map it into their own error.

mod error;
pub mod named;
pub mod netlink;
pub mod sysctl;
pub mod thread;

pub use error::NetnsError;
pub use named::{create, delete, exists, list, path};
pub use netlink::{netlink, scratch_netlink};
pub use sysctl::{read_sysctl, write_sysctl};
pub use thread::{run_in, run_in_blocking, run_in_scratch};
