//! Network namespaces for the dataplane: the `eni-netns` crate with its errors mapped
//! into `DataplaneError`. Netlink sockets and sysctls are opened on a short-lived thread
//! inside the namespace, so no runtime thread ever changes namespace.

use std::fs::File;
use std::path::{Path, PathBuf};

use eni_netns::NetnsError;

use super::error::DataplaneError;
use super::kernel::Netlink;

/// Namespace of the agent process itself.
const SELF_NETNS: &str = "/proc/self/ns/net";

/// Opens a network namespace file (kept open to pass as `IFLA_NET_NS_FD`).
pub fn open(path: &Path) -> Result<File, DataplaneError> {
    eni_netns::thread::open(path).map_err(into_dataplane)
}

/// Path of `netns`, or of the agent's own namespace.
pub fn path_or_self(netns: Option<&Path>) -> PathBuf {
    netns.map_or_else(|| PathBuf::from(SELF_NETNS), Path::to_path_buf)
}

/// Runs `work` on a dedicated thread inside the namespace at `path`.
pub async fn run_in<F, R>(path: &Path, work: F) -> Result<R, DataplaneError>
where
    F: FnOnce() -> Result<R, DataplaneError> + Send + 'static,
    R: Send + 'static,
{
    eni_netns::run_in(path, work)
        .await
        .map_err(into_dataplane)?
}

/// A netlink connection inside the namespace at `path`.
pub async fn netlink(path: &Path) -> Result<Netlink, DataplaneError> {
    let (handle, task) = eni_netns::netlink(path).await.map_err(into_dataplane)?;
    Ok(Netlink::new(handle, task, path.display().to_string()))
}

/// A netlink connection inside a fresh scratch namespace (for probing features).
pub async fn scratch_netlink() -> Result<Netlink, DataplaneError> {
    let (handle, task) = eni_netns::scratch_netlink().await.map_err(into_dataplane)?;
    Ok(Netlink::new(handle, task, "<scratch>".into()))
}

/// Writes `value` to `/proc/sys/net/<key>` of the calling thread's namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), DataplaneError> {
    eni_netns::write_sysctl(key, value).map_err(into_dataplane)
}

/// Reads `/proc/sys/net/<key>` of the calling thread's namespace.
pub fn read_sysctl(key: &str) -> Result<String, DataplaneError> {
    eni_netns::read_sysctl(key).map_err(into_dataplane)
}

/// A namespace that cannot be opened or entered stays `Netns` (callers treat that as
/// "the pod's namespace is gone").
fn into_dataplane(error: NetnsError) -> DataplaneError {
    match error {
        NetnsError::Open { path, source }
        | NetnsError::Enter { path, source }
        | NetnsError::Named { path, source, .. }
        | NetnsError::Netlink { path, source, .. } => DataplaneError::Netns { path, source },
        NetnsError::Sysctl { key, source } => DataplaneError::Sysctl { key, source },
        NetnsError::Thread { path, detail } => {
            DataplaneError::Worker(format!("{}: {detail}", path.display()))
        }
    }
}
