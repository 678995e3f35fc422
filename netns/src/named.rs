//! Named network namespaces, the way iproute2 makes them: a bind mount of the
//! namespace's nsfs file on `/run/netns/<name>`, so that `ip netns exec` works on them
//! and they outlive the thread that created them.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::NetnsError;
use crate::thread::on_thread;

const NETNS_DIR: &str = "/run/netns";

/// Path of the named namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether `name` is a live named namespace (not just a leftover empty file).
pub fn exists(name: &str) -> bool {
    statfs(&path(name)).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

/// Names of all named namespaces.
pub fn list() -> Result<Vec<String>, NetnsError> {
    let failed = |source| named("listing", Path::new(NETNS_DIR), source);
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(failed(source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry.map_err(failed)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Creates the named namespace with its loopback up; one that already exists is kept.
pub async fn create(name: &str) -> Result<(), NetnsError> {
    if exists(name) {
        return Ok(());
    }
    prepare_dir()?;
    let target = path(name);
    File::create(&target).map_err(|source| named("creating", &target, source))?;
    let mount_point = target.clone();
    on_thread(target.clone(), move || {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &mount_point,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .await?
    .map_err(|errno| named("mounting", &target, errno.into()))?;
    crate::netlink::set_loopback_up(&target).await
}

/// Removes the named namespace; absent is fine. As with `ip netns del`, processes and
/// sockets still inside keep the namespace (and its links) alive until they go.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(named("unmounting", &target, errno.into())),
    }
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(named("removing", &target, source)),
    }
}

/// Makes /run/netns a shared mount point as iproute2 does, so that namespaces mounted
/// later show up in mount namespaces created by `ip netns exec`.
fn prepare_dir() -> Result<(), NetnsError> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).map_err(|source| named("creating", dir, source))?;
    let make_shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    let mounted = match make_shared() {
        // Not a mount point yet: bind it onto itself first.
        Err(Errno::EINVAL) => mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| make_shared()),
        other => other,
    };
    mounted.map_err(|errno| named("mounting", dir, errno.into()))
}

fn named(what: &'static str, path: &Path, source: io::Error) -> NetnsError {
    NetnsError::Named {
        what,
        path: path.to_path_buf(),
        source,
    }
}
