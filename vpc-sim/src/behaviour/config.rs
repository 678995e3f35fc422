//! Behaviour settings, with defaults near real EC2.

use serde::{Deserialize, Serialize};

use super::CallClass;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub latency: ClassLatency,
    pub rate_limits: ClassRates,
    pub faults: FaultConfig,
    /// Time an ENI spends `attaching` before it is `in-use`.
    pub attach_delay_ms: u64,
    /// Time an ENI spends `detaching` before it is `available`.
    pub detach_delay_ms: u64,
    /// Describe calls see the state as it was this long ago (eventual consistency).
    pub describe_lag_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: ClassLatency::default(),
            rate_limits: ClassRates::default(),
            faults: FaultConfig::default(),
            attach_delay_ms: 2000,
            detach_delay_ms: 1000,
            describe_lag_ms: 0,
        }
    }
}

impl SimConfig {
    /// No latency, no attach time, no throttling, no faults: for tests that only care
    /// about the state machine behind the API.
    pub fn instant() -> Self {
        let unlimited = BucketSpec {
            capacity: 1_000_000,
            refill_per_sec: 1_000_000.0,
        };
        Self {
            latency: ClassLatency {
                describe: LatencySpec::ZERO,
                mutate: LatencySpec::ZERO,
            },
            rate_limits: ClassRates {
                describe: unlimited,
                mutate: unlimited,
            },
            faults: FaultConfig::default(),
            attach_delay_ms: 0,
            detach_delay_ms: 0,
            describe_lag_ms: 0,
        }
    }

    /// Applies a partial JSON document (only the fields it names change).
    pub fn merged(&self, patch: &serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut base = serde_json::to_value(self)?;
        merge(&mut base, patch);
        serde_json::from_value(base)
    }
}

fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Fixed part plus uniform jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub base_ms: u64,
    pub jitter_ms: u64,
}

impl LatencySpec {
    pub const ZERO: Self = Self {
        base_ms: 0,
        jitter_ms: 0,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassLatency {
    pub describe: LatencySpec,
    pub mutate: LatencySpec,
}

impl Default for ClassLatency {
    /// EC2 answers describes in roughly 50-150 ms and mutations in 100-400 ms.
    fn default() -> Self {
        Self {
            describe: LatencySpec {
                base_ms: 50,
                jitter_ms: 100,
            },
            mutate: LatencySpec {
                base_ms: 100,
                jitter_ms: 300,
            },
        }
    }
}

impl ClassLatency {
    pub fn of(&self, class: CallClass) -> LatencySpec {
        match class {
            CallClass::Describe => self.describe,
            CallClass::Mutate => self.mutate,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    pub capacity: u32,
    pub refill_per_sec: f64,
}

/// Token buckets per call class. EC2 keeps one bucket per action, sized by the action's
/// class ("Request throttling for the Amazon EC2 API": non-mutating 100 tokens refilled
/// at 20/s, mutating 50 tokens refilled at 5/s); vpc-sim does the same.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassRates {
    pub describe: BucketSpec,
    pub mutate: BucketSpec,
}

impl Default for ClassRates {
    fn default() -> Self {
        Self {
            describe: BucketSpec {
                capacity: 100,
                refill_per_sec: 20.0,
            },
            mutate: BucketSpec {
                capacity: 50,
                refill_per_sec: 5.0,
            },
        }
    }
}

impl ClassRates {
    pub fn of(&self, class: CallClass) -> BucketSpec {
        match class {
            CallClass::Describe => self.describe,
            CallClass::Mutate => self.mutate,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Probability of InternalError / ServiceUnavailable before the call has any effect.
    pub error_probability: f64,
    /// Probability that the call takes effect but its answer is held back.
    pub timeout_probability: f64,
    /// How long a timed-out answer is held back.
    pub timeout_hang_ms: u64,
    /// Actions the faults apply to; all when empty.
    pub actions: Vec<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            error_probability: 0.0,
            timeout_probability: 0.0,
            timeout_hang_ms: 30_000,
            actions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_updates_keep_other_fields() {
        let c = SimConfig::default();
        let patch =
            serde_json::json!({"rate_limits": {"mutate": {"capacity": 3}}, "attach_delay_ms": 10});
        let m = c.merged(&patch).unwrap();
        assert_eq!(m.rate_limits.mutate.capacity, 3);
        assert_eq!(m.rate_limits.mutate.refill_per_sec, 5.0);
        assert_eq!(m.attach_delay_ms, 10);
        assert_eq!(m.latency, c.latency);
        assert!(c.merged(&serde_json::json!({"bogus": 1})).is_err());
    }
}
