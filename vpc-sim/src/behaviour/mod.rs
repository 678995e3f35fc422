//! How the cloud behaves around the state machine: latency, throttling, faults,
//! eventual consistency. All of it configurable at start and through the admin API.

mod config;
mod throttle;

pub use config::{BucketSpec, ClassLatency, ClassRates, FaultConfig, LatencySpec, SimConfig};
pub use throttle::{Throttle, TokenBucket};

use std::time::Duration;

use rand::Rng;

use crate::error::ErrorCode;

/// EC2 throttles non-mutating (Describe*) and mutating calls with different buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    Describe,
    Mutate,
}

impl CallClass {
    pub fn of(action: &str) -> Self {
        if action.starts_with("Describe") {
            Self::Describe
        } else {
            Self::Mutate
        }
    }
}

/// What fault injection decided for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Fail before doing anything, with a transient server error.
    Error(ErrorCode),
    /// Do the call, then hold the answer back for this long (the client times out
    /// although the effect happened).
    Timeout(Duration),
}

impl FaultConfig {
    pub fn decide(&self, action: &str, rng: &mut impl Rng) -> Fault {
        if !self.actions.is_empty() && !self.actions.iter().any(|a| a == action) {
            return Fault::None;
        }
        let roll: f64 = rng.random();
        if roll < self.error_probability {
            let code = if rng.random_bool(0.5) {
                ErrorCode::InternalError
            } else {
                ErrorCode::ServiceUnavailable
            };
            Fault::Error(code)
        } else if roll < self.error_probability + self.timeout_probability {
            Fault::Timeout(Duration::from_millis(self.timeout_hang_ms))
        } else {
            Fault::None
        }
    }
}

impl LatencySpec {
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let jitter = if self.jitter_ms == 0 {
            0
        } else {
            rng.random_range(0..=self.jitter_ms)
        };
        Duration::from_millis(self.base_ms + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn fault_rates_follow_the_configured_probabilities() {
        let cfg = FaultConfig {
            error_probability: 0.2,
            timeout_probability: 0.1,
            timeout_hang_ms: 5,
            actions: vec![],
        };
        let mut rng = StdRng::seed_from_u64(3);
        let (mut errors, mut timeouts) = (0, 0);
        for _ in 0..10_000 {
            match cfg.decide("AttachNetworkInterface", &mut rng) {
                Fault::Error(_) => errors += 1,
                Fault::Timeout(_) => timeouts += 1,
                Fault::None => {}
            }
        }
        assert!((1800..2200).contains(&errors), "{errors}");
        assert!((850..1150).contains(&timeouts), "{timeouts}");
    }

    #[test]
    fn faults_can_be_limited_to_some_actions() {
        let cfg = FaultConfig {
            error_probability: 1.0,
            timeout_probability: 0.0,
            timeout_hang_ms: 0,
            actions: vec!["CreateNetworkInterface".into()],
        };
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(cfg.decide("DescribeSubnets", &mut rng), Fault::None);
        assert!(matches!(
            cfg.decide("CreateNetworkInterface", &mut rng),
            Fault::Error(_)
        ));
    }

    #[test]
    fn classes() {
        assert_eq!(
            CallClass::of("DescribeNetworkInterfaces"),
            CallClass::Describe
        );
        assert_eq!(CallClass::of("AssignPrivateIpAddresses"), CallClass::Mutate);
    }
}
