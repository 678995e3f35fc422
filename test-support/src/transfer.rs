//! Bulk TCP transfers between namespaces, timed at the receiver: how fast traffic
//! really flows through a path (token buckets, links). The sockets are made by the test
//! process inside the namespaces, so the packets take the pods' own path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Netns(#[from] eni_netns::NetnsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("transfer to {to}: {detail}")]
    Failed { to: SocketAddr, detail: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransferError {
    let what = what.into();
    move |source| TransferError::Io { what, source }
}

/// Bytes over time, as the receiver of a transfer saw them.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub bytes: u64,
    pub secs: f64,
}

impl Rate {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e6
    }
}

/// When the receiver of a transfer had how many bytes: one point per read.
#[derive(Clone, Debug)]
pub struct Timeline {
    points: Vec<(u64, Duration)>,
}

impl Timeline {
    /// The rate from the moment the receiver had `from` bytes to the moment it had
    /// `to` (each: the first read that reached it; `0` is the connection's start).
    pub fn rate(&self, from: u64, to: u64) -> Option<Rate> {
        let at = |bytes: u64| {
            if bytes == 0 {
                return Some((0, Duration::ZERO));
            }
            self.points.iter().copied().find(|(got, _)| *got >= bytes)
        };
        let ((b0, t0), (b1, t1)) = (at(from)?, at(to)?);
        (b1 > b0 && t1 > t0).then(|| Rate {
            bytes: b1 - b0,
            secs: (t1 - t0).as_secs_f64(),
        })
    }
}

/// Sends `total` bytes over one TCP connection from namespace `from_ns` to `to`, where
/// a receiver bound in namespace `to_ns` reads them and notes when each byte count
/// arrived. Fails unless every byte arrives within `timeout`.
pub fn transfer(
    from_ns: &str,
    to_ns: &str,
    to: SocketAddr,
    total: u64,
    timeout: Duration,
) -> Result<Timeline, TransferError> {
    let fail = |detail: String| TransferError::Failed { to, detail };
    let deadline = Instant::now() + timeout;
    let listener = eni_netns::run_in_blocking(&eni_netns::path(to_ns), move || {
        let listener = TcpListener::bind(to)?;
        listener.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(listener)
    })?
    .map_err(io(format!("listening on {to} in {to_ns}")))?;
    let receiver = std::thread::spawn(move || receive(listener, total, deadline));
    let sent = send(from_ns, to, total, deadline);
    let received = receiver
        .join()
        .map_err(|_| fail("the receiver panicked".into()))?;
    sent?;
    received.map_err(fail)
}

fn send(from_ns: &str, to: SocketAddr, total: u64, deadline: Instant) -> Result<(), TransferError> {
    let mut stream = eni_netns::run_in_blocking(&eni_netns::path(from_ns), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    })?
    .map_err(io(format!("connecting to {to} from {from_ns}")))?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let now = Instant::now();
        if now >= deadline {
            return Err(TransferError::Failed {
                to,
                detail: format!("{} of {total} bytes sent before the deadline", total - left),
            });
        }
        stream
            .set_write_timeout(Some(deadline - now))
            .map_err(io("write timeout"))?;
        let n = left.min(chunk.len() as u64) as usize;
        stream
            .write_all(&chunk[..n])
            .map_err(io(format!("sending to {to}")))?;
        left -= n as u64;
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(io(format!("closing the connection to {to}")))
}

fn receive(listener: TcpListener, total: u64, deadline: Instant) -> Result<Timeline, String> {
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("no connection came".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accepting: {e}")),
        }
    };
    let accepted = Instant::now();
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("blocking mode: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut points = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{got} of {total} bytes received before the deadline"
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("read timeout: {e}"))?;
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("receiving after {got} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        got += n as u64;
        points.push((got, accepted.elapsed()));
    }
    if got == total {
        Ok(Timeline { points })
    } else {
        Err(format!("{got} of {total} bytes received"))
    }
}
