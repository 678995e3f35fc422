//! Named network namespaces of the materializer: the `eni-netns` crate addressed by
//! namespace name (everything the materializer makes lives under `/run/netns`).

use rtnetlink::Handle;

use super::MaterializeError;

pub use eni_netns::{delete, exists, list, path, write_sysctl};

/// Creates the named namespace (loopback up); a namespace that already exists is kept.
pub async fn create(name: &str) -> Result<(), MaterializeError> {
    Ok(eni_netns::create(name).await?)
}

/// Runs `work` on a thread that has entered namespace `name`.
pub async fn run_in<T, E, F>(name: &str, work: F) -> Result<T, MaterializeError>
where
    T: Send + 'static,
    E: Into<MaterializeError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    eni_netns::run_in(&path(name), work).await?.map_err(Into::into)
}

/// A netlink handle whose socket lives in namespace `name`. The connection runs on the
/// caller's runtime for as long as the handle is used.
pub async fn netlink(name: &str) -> Result<Handle, MaterializeError> {
    let (handle, _connection) = eni_netns::netlink(&path(name)).await?;
    Ok(handle)
}
