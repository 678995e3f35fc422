//! Traffic measured across the bed's namespaces: a continuous ping whose losses are
//! counted, a TCP connection held open, and the token buckets (`tc`) that shape bulk
//! transfers (`eni_test_support::transfer`). Every socket is made by the test process
//! inside the namespace it belongs to, so the packets take the same path as the pods'
//! own.

use std::{
    fs::File,
    io::{Read, Seek, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error(transparent)]
    Netns(#[from] eni_netns::NetnsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("ping to {to}: {detail}")]
    Ping { to: Ipv4Addr, detail: String },
    #[error("transfer to {to}: {detail}")]
    Transfer { to: SocketAddr, detail: String },
    #[error("tc: {0}")]
    Tc(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrafficError {
    let what = what.into();
    move |source| TrafficError::Io { what, source }
}

/// iputils `ping` from a namespace, one echo every `interval`, until [`Pinger::stop`].
pub struct Pinger {
    child: Child,
    output: File,
    to: Ipv4Addr,
}

/// What a [`Pinger`] saw.
#[derive(Clone, Debug)]
pub struct PingStats {
    /// Echoes sent, not counting one still in flight when ping was stopped.
    pub sent: u32,
    pub received: u32,
    /// Sequence numbers (from 1) that got no answer.
    pub lost: Vec<u32>,
}

impl std::fmt::Display for PingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} received, {} lost",
            self.sent,
            self.received,
            self.lost.len()
        )?;
        if !self.lost.is_empty() {
            write!(f, " (icmp_seq {:?})", self.lost)?;
        }
        Ok(())
    }
}

impl Pinger {
    pub fn start(ns: &str, to: Ipv4Addr, interval: Duration) -> Result<Self, TrafficError> {
        let output = tempfile::tempfile().map_err(io("ping output file"))?;
        let stdout = output.try_clone().map_err(io("ping output file"))?;
        // `ip netns exec` execs ping itself: the child's pid is ping's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-i"])
            .arg(format!("{:.3}", interval.as_secs_f64()))
            .arg(to.to_string())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::null())
            .spawn()
            .map_err(io(format!("starting ping {to} in {ns}")))?;
        Ok(Pinger { child, output, to })
    }

    /// Interrupts ping (which then prints its statistics) and counts what came back.
    pub fn stop(mut self) -> Result<PingStats, TrafficError> {
        let to = self.to;
        let fail = |detail: String| TrafficError::Ping { to, detail };
        if let Some(status) = self.child.try_wait().map_err(io("ping"))? {
            return Err(fail(format!("ping ended early ({status})")));
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT)
            .map_err(|e| fail(format!("interrupting ping: {e}")))?;
        self.child.wait().map_err(io("waiting for ping"))?;
        let mut text = String::new();
        self.output.rewind().map_err(io("ping output"))?;
        self.output
            .read_to_string(&mut text)
            .map_err(io("ping output"))?;
        parse_ping(&text).ok_or_else(|| fail(format!("no statistics in its output:\n{text}")))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sent and answered echoes from iputils ping's output (reply lines and the summary
/// `N packets transmitted, M received`).
fn parse_ping(text: &str) -> Option<PingStats> {
    let transmitted: u32 = text
        .lines()
        .find_map(|l| l.split_once(" packets transmitted"))?
        .0
        .trim()
        .parse()
        .ok()?;
    let mut answered: Vec<u32> = text
        .lines()
        .filter(|l| l.contains(" bytes from ") && !l.contains("DUP!"))
        .filter_map(|l| {
            let seq = l.split("icmp_seq=").nth(1)?;
            seq.split_whitespace().next()?.parse().ok()
        })
        .collect();
    answered.sort_unstable();
    answered.dedup();
    // The echo sent just before the interrupt may not have had time to come back.
    let sent = if transmitted > 0 && answered.binary_search(&transmitted).is_err() {
        transmitted - 1
    } else {
        transmitted
    };
    let lost = (1..=sent)
        .filter(|s| answered.binary_search(s).is_err())
        .collect();
    Some(PingStats {
        sent,
        received: answered.iter().filter(|s| **s <= sent).count() as u32,
        lost,
    })
}

/// A TCP connection from a namespace to an echo server, kept open to show that
/// established connections survive whatever happens meanwhile.
pub struct HeldConnection {
    stream: TcpStream,
    to: SocketAddr,
}

impl HeldConnection {
    /// Connects from `ns` to `to` and checks one echo.
    pub fn open(ns: &str, to: SocketAddr) -> Result<Self, TrafficError> {
        let stream = eni_netns::run_in_blocking(&eni_netns::path(ns), move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })?
        .map_err(io(format!("connecting to {to} from {ns}")))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(io("read timeout"))?;
        let mut held = HeldConnection { stream, to };
        held.echo("opened")?;
        Ok(held)
    }

    /// Sends `line` and expects it back within 2 s on the same connection.
    pub fn echo(&mut self, line: &str) -> Result<(), TrafficError> {
        let what = format!("echo over the connection to {}", self.to);
        let sent = format!("{line}\n");
        self.stream
            .write_all(sent.as_bytes())
            .map_err(io(what.clone()))?;
        let mut got = vec![0u8; sent.len()];
        self.stream.read_exact(&mut got).map_err(io(what.clone()))?;
        if got != sent.as_bytes() {
            return Err(TrafficError::Transfer {
                to: self.to,
                detail: format!("echo came back as {:?}", String::from_utf8_lossy(&got)),
            });
        }
        Ok(())
    }
}

/// A token-bucket filter (tbf) qdisc, as `tc` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tbf {
    pub dev: String,
    pub rate_bytes_per_s: u64,
    pub burst_bytes: u64,
}

/// The tbf qdiscs of namespace `ns` (`tc -json qdisc show`).
pub fn tbf_qdiscs(ns: &str) -> Result<Vec<Tbf>, TrafficError> {
    let out = crate::netns::run(
        Command::new("ip").args(["netns", "exec", ns, "tc", "-json", "qdisc", "show"]),
    )
    .map_err(|e| TrafficError::Tc(e.to_string()))?;
    let qdiscs: Vec<serde_json::Value> =
        serde_json::from_str(&out).map_err(|e| TrafficError::Tc(format!("{e}: {out}")))?;
    let number = |q: &serde_json::Value, path: &[&str]| {
        path.iter()
            .try_fold(q, |v, k| v.get(k))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_default()
    };
    Ok(qdiscs
        .iter()
        .filter(|q| q["kind"] == "tbf")
        .map(|q| Tbf {
            dev: q["dev"].as_str().unwrap_or_default().to_owned(),
            rate_bytes_per_s: number(q, &["options", "rate"]),
            burst_bytes: number(q, &["options", "burst"]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_output_counts_losses_but_not_the_echo_in_flight() {
        let out = "PING 10.0.1.5 (10.0.1.5) 56(84) bytes of data.
64 bytes from 10.0.1.5: icmp_seq=1 ttl=63 time=0.101 ms
64 bytes from 10.0.1.5: icmp_seq=2 ttl=63 time=0.090 ms
64 bytes from 10.0.1.5: icmp_seq=4 ttl=63 time=0.093 ms
64 bytes from 10.0.1.5: icmp_seq=4 ttl=63 time=0.093 ms (DUP!)

--- 10.0.1.5 ping statistics ---
5 packets transmitted, 3 received, 40% packet loss, time 801ms
";
        let stats = parse_ping(out).expect("statistics");
        assert_eq!((stats.sent, stats.received, stats.lost), (4, 3, vec![3]));
        assert!(parse_ping("ping: connect: Network is unreachable").is_none());
    }
}
