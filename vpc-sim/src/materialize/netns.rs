//! Named network namespaces, the way iproute2 makes them: a bind mount of the
//! namespace's nsfs file on `/run/netns/<name>`, so that `ip netns exec` works on them
//! for debugging and tests, and so that they outlive the thread that created them.
//!
//! Work inside a namespace runs on a short-lived dedicated thread that calls `setns`:
//! the namespace of a thread is per thread, so the async runtime's threads are never
//! moved.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};
use rtnetlink::Handle;

use super::MaterializeError;

const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether `name` is a live named namespace (not just a leftover empty file).
pub fn exists(name: &str) -> bool {
    statfs(&path(name)).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

/// Names of all named namespaces.
pub fn list() -> Result<Vec<String>, MaterializeError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error(format!("listing {NETNS_DIR}"), source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error(format!("listing {NETNS_DIR}"), source))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Creates the named namespace; a namespace that already exists is kept.
pub async fn create(name: &str) -> Result<(), MaterializeError> {
    if exists(name) {
        return Ok(());
    }
    prepare_dir()?;
    let target = path(name);
    File::create(&target)
        .map_err(|source| io_error(format!("creating {}", target.display()), source))?;
    let context = format!("creating network namespace {name}");
    on_thread(context.clone(), move || {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .await?
    .map_err(|source| nix_error(context, source))
}

/// Removes the named namespace; absent is fine. As with `ip netns del`, processes still
/// inside keep the namespace (and its links) alive until they exit.
pub fn delete(name: &str) -> Result<(), MaterializeError> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(source) => {
            return Err(nix_error(
                format!("unmounting {}", target.display()),
                source,
            ));
        }
    }
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(io_error(format!("removing {}", target.display()), source)),
    }
}

/// Runs `work` on a thread that has entered namespace `name`.
pub async fn run_in<T, F>(name: &str, work: F) -> Result<T, MaterializeError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, MaterializeError> + Send + 'static,
{
    let file = File::open(path(name))
        .map_err(|source| io_error(format!("opening network namespace {name}"), source))?;
    let context = format!("entering network namespace {name}");
    on_thread(context.clone(), move || {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| nix_error(context, source))?;
        work()
    })
    .await?
}

/// A netlink handle whose socket lives in namespace `name` (a socket stays in the
/// namespace it was created in, whatever thread later uses it).
pub async fn netlink(name: &str) -> Result<Handle, MaterializeError> {
    let runtime = tokio::runtime::Handle::current();
    let (connection, handle, _) = run_in(name, move || {
        // The socket registers with the caller's runtime, not with this thread.
        let _guard = runtime.enter();
        rtnetlink::new_connection()
            .map_err(|source| io_error("opening a netlink socket".to_string(), source))
    })
    .await?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Writes a sysctl under /proc/sys/net of the calling thread's namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), MaterializeError> {
    let path = Path::new("/proc/sys/net").join(key);
    std::fs::write(&path, value)
        .map_err(|source| io_error(format!("writing {}", path.display()), source))
}

/// Makes /run/netns a shared mount point as iproute2 does, so that namespaces mounted
/// later show up in mount namespaces created by `ip netns exec`.
fn prepare_dir() -> Result<(), MaterializeError> {
    std::fs::create_dir_all(NETNS_DIR)
        .map_err(|source| io_error(format!("creating {NETNS_DIR}"), source))?;
    let make_shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(Errno::EINVAL) => mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| make_shared())
        .map_err(|source| nix_error(format!("mounting {NETNS_DIR}"), source)),
        Err(source) => Err(nix_error(format!("mounting {NETNS_DIR}"), source)),
    }
}

/// Runs `work` on a fresh OS thread (its namespace changes die with it) without
/// blocking the async runtime.
async fn on_thread<T, F>(context: String, work: F) -> Result<T, MaterializeError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("vpc-sim-netns".to_string())
        .spawn(move || {
            // The receiver only goes away when the caller was cancelled.
            let _ = tx.send(work());
        })
        .map_err(|source| io_error(context.clone(), source))?;
    rx.await.map_err(|_| MaterializeError::Thread(context))
}

fn io_error(context: String, source: io::Error) -> MaterializeError {
    MaterializeError::Io { context, source }
}

fn nix_error(context: String, source: Errno) -> MaterializeError {
    MaterializeError::Sys { context, source }
}
