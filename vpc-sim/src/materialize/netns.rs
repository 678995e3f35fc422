//! Named network namespaces of the materializer: the `eni-netns` crate addressed by
//! namespace name (everything the materializer makes lives under `/run/netns`).

use rtnetlink::Handle;

use super::MaterializeError;

pub use eni_netns::{delete, exists, list, path};

/// Creates the named namespace (loopback up); a namespace that already exists is kept.
pub async fn create(name: &str) -> Result<(), MaterializeError> {
    Ok(eni_netns::create(name).await?)
}

/// Runs `work` on a thread that has entered namespace `name`.
pub async fn run_in<T, F>(name: &str, work: F) -> Result<T, MaterializeError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, MaterializeError> + Send + 'static,
{
    eni_netns::run_in(&path(name), work).await?
}

/// Writes a sysctl under /proc/sys/net of the calling thread's namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), MaterializeError> {
    Ok(eni_netns::write_sysctl(key, value)?)
}

/// A netlink handle whose socket lives in namespace `name`. The connection runs on the
/// caller's runtime for as long as the handle is used.
pub async fn netlink(name: &str) -> Result<Handle, MaterializeError> {
    let (handle, _connection) = eni_netns::netlink(&path(name)).await?;
    Ok(handle)
}
