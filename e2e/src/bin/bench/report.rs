//! What every benchmark reports: latency samples as p50/p99, the ratio of two p50s, and
//! the JSON document written to `bench/results/<name>.json` with the machine it ran on.

use std::{io, path::Path};

use serde_json::{Value, json};

/// Latencies in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (nearest rank), NaN without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    pub fn p50(&self) -> f64 {
        self.quantile(0.5)
    }

    pub fn json(&self) -> Value {
        json!({
            "samples": self.0.len(),
            "p50_ms": round(self.p50(), 3),
            "p99_ms": round(self.quantile(0.99), 3),
            "max_ms": round(self.quantile(1.0), 3),
        })
    }
}

/// `a`'s p50 over `b`'s.
pub fn p50_ratio(a: &Samples, b: &Samples) -> f64 {
    round(a.p50() / b.p50(), 3)
}

pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The build profile and the machine, recorded beside every result.
pub fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = read("/proc/cpuinfo")
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    json!({
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "cpus": cpus,
        "cpu_model": model,
        "memory_gib": round(mem_kib as f64 / 1024.0 / 1024.0, 1),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

/// Resident and peak memory of a process, in KiB, from /proc.
pub fn memory_kib(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user and system) a process has used so far, in milliseconds, from /proc.
pub fn cpu_ms(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat)
        .ok_or_else(|| io::Error::other(format!("no CPU times in /proc/{pid}/stat")))?;
    Ok(ticks as f64 * 1000.0 / clock_ticks_per_s() as f64)
}

/// utime + stime of a /proc/<pid>/stat line (fields 14 and 15), counted after the
/// command name, which may hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, fields) = stat.rsplit_once(')')?;
    // The first field after the name is field 3 (state).
    let mut times = fields.split_whitespace().skip(14 - 3);
    let user: u64 = times.next()?.parse().ok()?;
    let system: u64 = times.next()?.parse().ok()?;
    Some(user + system)
}

/// The clock ticks per second /proc counts CPU time in (100 on Linux when unknown).
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf reads a system constant; it takes no pointer.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(100)
}

/// Writes `doc` (pretty JSON) to `path`, creating its directory.
pub fn write(path: &Path, doc: &Value) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(doc).map_err(io::Error::other)?;
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut s = Samples::default();
        for v in [5.0, 1.0, 4.0, 2.0, 3.0] {
            s.push(v);
        }
        assert_eq!(s.p50(), 3.0);
        assert_eq!(s.quantile(0.99), 5.0);
        assert_eq!(s.quantile(0.0), 1.0);
        assert!(Samples::default().p50().is_nan());
        let mut half = Samples::default();
        for v in [1.0, 1.5, 2.0] {
            half.push(v);
        }
        assert_eq!(p50_ratio(&s, &half), 2.0);
    }

    #[test]
    fn cpu_times_after_the_command_name() {
        // The name may hold spaces and parentheses; utime 1234 and stime 56 follow.
        let stat = "4242 (eni (op) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(1290));
        assert_eq!(cpu_ticks("4242 (truncated"), None);
        assert_eq!(cpu_ticks("4242 (x) S 1 2"), None);
        assert!(cpu_ms(std::process::id()).is_ok_and(|ms| ms >= 0.0));
        assert!(clock_ticks_per_s() > 0);
    }
}
