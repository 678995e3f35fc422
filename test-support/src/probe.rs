//! Probes run from inside a network namespace: ping, a TCP echo and an HTTP GET.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use eni_netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Netns(#[from] NetnsError),
    #[error("listening on port {port} in namespace {ns}: {source}")]
    Listen {
        ns: String,
        port: u16,
        source: std::io::Error,
    },
}

impl ProbeError {
    /// Short, stable name of the failure, for reports.
    pub fn label(&self) -> &'static str {
        match self {
            ProbeError::Netns(e) => e.label(),
            ProbeError::Listen { .. } => "listen",
        }
    }
}

/// One ICMP echo from namespace `ns` to `to`, waiting at most a second: true when
/// answered.
pub fn ping(ns: &str, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-q"])
        .arg(to.to_string())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A TCP echo server listening on `port` inside a namespace, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &str, port: u16) -> Result<Self, ProbeError> {
        Self::serve(ns, port, echo)
    }

    /// A server that answers each connection with the address it came from (what
    /// NAT on the way left of it) and a newline, then closes it.
    pub fn start_peer(ns: &str, port: u16) -> Result<Self, ProbeError> {
        Self::serve(ns, port, tell_peer)
    }

    fn serve(ns: &str, port: u16, handle: fn(TcpStream)) -> Result<Self, ProbeError> {
        // The listening socket stays in the namespace it was created in.
        let listener =
            eni_netns::run_in_blocking(&eni_netns::path(ns), move || -> std::io::Result<_> {
                let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })?
            .map_err(|source| ProbeError::Listen {
                ns: ns.to_owned(),
                port,
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || handle(conn));
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

fn tell_peer(mut conn: TcpStream) {
    if let Ok(peer) = conn.peer_addr() {
        let _ = conn.set_nonblocking(false);
        let _ = writeln!(conn, "{}", peer.ip());
    }
}

/// Connects from namespace `ns` to `to` and reads one line within 2 s (what
/// [`EchoServer::start_peer`] says).
pub fn read_line(ns: &str, to: SocketAddr) -> Option<String> {
    let conn = eni_netns::run_in_blocking(&eni_netns::path(ns), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    });
    let Ok(Ok(mut conn)) = conn else {
        return None;
    };
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut got = String::new();
    conn.read_to_string(&mut got).ok()?;
    Some(got.trim().to_owned())
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
    let conn = eni_netns::run_in_blocking(&eni_netns::path(ns), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    });
    let Ok(Ok(mut conn)) = conn else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn.write_all(sent.as_bytes()).is_err() {
        return false;
    }
    let mut got = vec![0u8; sent.len()];
    conn.read_exact(&mut got).is_ok() && got == sent.as_bytes()
}

/// One HTTP/1.0 GET of `path` from namespace `ns` to `to`, within 3 s: the response
/// body when the status was 200.
pub fn http_get(ns: &str, to: SocketAddr, path: &str) -> Option<String> {
    let conn = eni_netns::run_in_blocking(&eni_netns::path(ns), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(3))
    });
    let Ok(Ok(mut conn)) = conn else {
        return None;
    };
    conn.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    // CGI answers end their header lines with a bare newline.
    let response = response.replace("\r\n", "\n");
    let (head, body) = response.split_once("\n\n")?;
    head.starts_with("HTTP/1.")
        .then_some(())
        .filter(|()| head.split_whitespace().nth(1) == Some("200"))?;
    Some(body.trim().to_owned())
}
