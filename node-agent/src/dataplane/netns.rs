//! Network namespaces: netlink sockets opened inside one, sysctls written inside one.
//!
//! A socket belongs to the namespace it was created in, so each connection is created
//! on a short-lived dedicated thread that has entered the namespace with setns; the
//! thread ends right after and never runs anything else, so no runtime thread ever
//! changes namespace.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use tokio::sync::oneshot;

use super::error::DataplaneError;
use super::kernel::Netlink;

/// Namespace of the agent process itself.
const SELF_NETNS: &str = "/proc/self/ns/net";

/// Opens a network namespace file (kept open to pass as `IFLA_NET_NS_FD`).
pub fn open(path: &Path) -> Result<File, DataplaneError> {
    File::open(path).map_err(|source| DataplaneError::Netns {
        path: path.to_path_buf(),
        source,
    })
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
    let path = path.to_path_buf();
    run_on_thread(move || {
        let file = open(&path)?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| {
            DataplaneError::Netns {
                path: path.clone(),
                source: io::Error::from(errno),
            }
        })?;
        work()
    })
    .await
}

/// Runs `work` on a dedicated thread inside a fresh, empty namespace that disappears
/// once nothing refers to it any more.
pub async fn run_in_scratch<F, R>(work: F) -> Result<R, DataplaneError>
where
    F: FnOnce() -> Result<R, DataplaneError> + Send + 'static,
    R: Send + 'static,
{
    run_on_thread(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| DataplaneError::Netns {
            path: PathBuf::from("<scratch>"),
            source: io::Error::from(errno),
        })?;
        work()
    })
    .await
}

async fn run_on_thread<F, R>(work: F) -> Result<R, DataplaneError>
where
    F: FnOnce() -> Result<R, DataplaneError> + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("eni-netns".into())
        .spawn(move || {
            // The receiver only goes away if the caller was cancelled.
            let _ = tx.send(work());
        })
        .map_err(|e| DataplaneError::Worker(e.to_string()))?;
    rx.await
        .map_err(|_| DataplaneError::Worker("no answer".into()))?
}

/// A netlink connection inside the namespace at `path`.
pub async fn netlink(path: &Path) -> Result<Netlink, DataplaneError> {
    let runtime = tokio::runtime::Handle::current();
    let label = path.display().to_string();
    run_in(path, move || connect(&runtime, label)).await
}

/// A netlink connection inside a fresh scratch namespace (for probing features).
pub async fn scratch_netlink() -> Result<Netlink, DataplaneError> {
    let runtime = tokio::runtime::Handle::current();
    run_in_scratch(move || connect(&runtime, "<scratch>".into())).await
}

fn connect(runtime: &tokio::runtime::Handle, label: String) -> Result<Netlink, DataplaneError> {
    // The socket registers with the caller's runtime, whose reactor then drives it.
    let _guard = runtime.enter();
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| DataplaneError::Netns {
            path: PathBuf::from(&label),
            source,
        })?;
    let task = runtime.spawn(connection);
    Ok(Netlink::new(handle, task, label))
}

/// Writes `value` to `/proc/sys/net/<key>` of the calling thread's namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), DataplaneError> {
    let path = format!("/proc/sys/net/{key}");
    std::fs::write(&path, value).map_err(|source| DataplaneError::Sysctl {
        key: key.to_string(),
        source,
    })
}

/// Reads `/proc/sys/net/<key>` of the calling thread's namespace.
pub fn read_sysctl(key: &str) -> Result<String, DataplaneError> {
    let path = format!("/proc/sys/net/{key}");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| DataplaneError::Sysctl {
            key: key.to_string(),
            source,
        })
}
