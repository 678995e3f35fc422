//! Work on a dedicated thread inside a namespace.
//!
//! The thread is created for the work and ends right after it, so its namespace change
//! dies with it and no runtime thread ever changes namespace. Sockets the work creates
//! stay in that namespace wherever they are used afterwards.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};

use crate::NetnsError;

/// Label of the fresh namespace `run_in_scratch` makes, in errors.
const SCRATCH: &str = "<scratch>";

/// Name of the dedicated threads (seen in `ps -T` and panics).
const WORKER: &str = "netns-worker";

/// Runs `work` on a dedicated thread inside the namespace at `path`, without blocking
/// the async runtime.
pub async fn run_in<T, F>(path: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = open(path)?;
    let path = path.to_path_buf();
    on_thread(path.clone(), move || enter(&file, &path).map(|()| work())).await?
}

/// `run_in` for synchronous callers: blocks until the work is done.
pub fn run_in_blocking<T, F>(path: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = open(path)?;
    let inside = path.to_path_buf();
    let worker = spawn(inside.clone(), move || {
        enter(&file, &inside).map(|()| work())
    })?;
    worker.join().map_err(|_| NetnsError::Thread {
        path: path.to_path_buf(),
        detail: "panicked".into(),
    })?
}

/// Runs `work` on a dedicated thread inside a fresh, empty namespace that disappears
/// once nothing refers to it any more (for probing kernel features).
pub async fn run_in_scratch<T, F>(work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    on_thread(PathBuf::from(SCRATCH), move || {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|errno| NetnsError::Enter {
                path: PathBuf::from(SCRATCH),
                source: io::Error::from(errno),
            })
            .map(|()| work())
    })
    .await?
}

/// Opens a namespace file (also what `IFLA_NET_NS_FD` takes to move a link there).
pub fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn enter(file: &File, path: &Path) -> Result<(), NetnsError> {
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Enter {
        path: path.to_path_buf(),
        source: io::Error::from(errno),
    })
}

/// Runs `work` on a fresh thread and awaits its answer.
pub(crate) async fn on_thread<T, F>(path: PathBuf, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn(path.clone(), move || {
        // The receiver only goes away when the caller was cancelled.
        let _ = tx.send(work());
    })?;
    rx.await.map_err(|_| NetnsError::Thread {
        path,
        detail: "died before answering".into(),
    })
}

fn spawn<T, F>(path: PathBuf, work: F) -> Result<std::thread::JoinHandle<T>, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(WORKER.into())
        .spawn(work)
        .map_err(|source| NetnsError::Thread {
            path,
            detail: source.to_string(),
        })
}
