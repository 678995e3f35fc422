//! rtnetlink connections inside a namespace.
//!
//! A netlink socket belongs to the namespace it was created in, so it is created on a
//! dedicated thread inside the namespace; the connection is then driven by the caller's
//! tokio runtime, whatever thread uses the handle.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec};
use tokio::task::JoinHandle;

use crate::NetnsError;
use crate::thread::{run_in, run_in_scratch};

/// A netlink handle inside the namespace at `path`, and the task driving its
/// connection (abort it to close the socket).
pub async fn netlink(path: &Path) -> Result<(Handle, JoinHandle<()>), NetnsError> {
    let runtime = tokio::runtime::Handle::current();
    let inside = path.to_path_buf();
    run_in(path, move || connect(&runtime, inside)).await?
}

/// A netlink handle inside a fresh scratch namespace (for probing kernel features).
pub async fn scratch_netlink() -> Result<(Handle, JoinHandle<()>), NetnsError> {
    let runtime = tokio::runtime::Handle::current();
    run_in_scratch(move || connect(&runtime, PathBuf::from("<scratch>"))).await?
}

fn connect(
    runtime: &tokio::runtime::Handle,
    path: PathBuf,
) -> Result<(Handle, JoinHandle<()>), NetnsError> {
    // The socket registers with the caller's runtime, whose reactor then drives it.
    let _guard = runtime.enter();
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| NetnsError::Netlink {
            path,
            what: "opening a socket",
            source,
        })?;
    Ok((handle, runtime.spawn(connection)))
}

/// Sets `lo` up in the namespace at `path`, as a fresh namespace needs before local
/// traffic works.
pub(crate) async fn set_loopback_up(path: &Path) -> Result<(), NetnsError> {
    let (handle, task) = netlink(path).await?;
    let failed = |what| {
        move |source: rtnetlink::Error| NetnsError::Netlink {
            path: path.to_path_buf(),
            what,
            source: std::io::Error::other(source),
        }
    };
    let result = async {
        let lo = handle
            .link()
            .get()
            .match_name("lo")
            .execute()
            .try_next()
            .await
            .map_err(failed("finding lo"))?;
        match lo {
            Some(lo) => handle
                .link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(failed("setting lo up")),
            None => Ok(()),
        }
    }
    .await;
    task.abort();
    result
}
