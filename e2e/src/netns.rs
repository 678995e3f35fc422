//! Named network namespaces of the test bed (made with iproute2, so `ip netns exec` works
//! for debugging), and the probes that run inside them: ping and a TCP echo.

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("entering namespace {ns}: {source}")]
    Enter { ns: String, source: std::io::Error },
    #[error("in namespace {ns}: {source}")]
    Socket { ns: String, source: std::io::Error },
}

pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `ip <args>` and returns its stdout.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run(Command::new("ip").args(args))
}

/// Runs a command and returns its stdout, or its stderr as the error.
pub fn run(cmd: &mut Command) -> Result<String, NetnsError> {
    let text = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        cmd: text.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            cmd: text,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates a namespace with its loopback up (a pod sandbox, a host outside the cluster).
pub fn add(name: &str) -> Result<(), NetnsError> {
    if !exists(name) {
        ip(&["netns", "add", name])?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a namespace; one that is already gone is fine.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    if exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// Namespaces whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// `program` run inside namespace `ns` (the way a node's processes see the network).
pub fn command_in(ns: &str, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// One ICMP echo from `ns` to `to`, waiting at most a second: true when answered.
pub fn ping(ns: &str, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-q"])
        .arg(to.to_string())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets it creates stay in
/// that namespace wherever they are used afterwards.
fn inside<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, NetnsError> {
    let file = File::open(path(ns)).map_err(|source| NetnsError::Enter {
        ns: ns.to_owned(),
        source,
    })?;
    let name = ns.to_owned();
    let joined = std::thread::spawn(move || -> Result<T, NetnsError> {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
            ns: name.clone(),
            source: e.into(),
        })?;
        f().map_err(|source| NetnsError::Socket { ns: name, source })
    })
    .join();
    joined.unwrap_or_else(|_| {
        Err(NetnsError::Enter {
            ns: ns.to_owned(),
            source: std::io::Error::other("namespace thread panicked"),
        })
    })
}

/// A TCP echo server listening on `port` inside a namespace, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &str, port: u16) -> Result<Self, NetnsError> {
        let listener = inside(ns, move || {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || echo(conn));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(EchoServer {
            stop,
            thread: Some(thread),
        })
    }
}

fn echo(mut conn: TcpStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 1024];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from namespace `ns` to `to`, sends a line and expects it echoed within 2 s:
/// true when the echo came back.
pub fn tcp_echo(ns: &str, to: SocketAddr) -> bool {
    let sent = format!("hello from {ns}\n");
    let conn = inside(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    });
    let Ok(mut conn) = conn else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn.write_all(sent.as_bytes()).is_err() {
        return false;
    }
    let mut got = vec![0u8; sent.len()];
    conn.read_exact(&mut got).is_ok() && got == sent.as_bytes()
}
