//! Token buckets answering RequestLimitExceeded, one per action like EC2.

use std::collections::HashMap;
use std::time::Instant;

use super::CallClass;
use super::config::{BucketSpec, ClassRates};

#[derive(Clone, Debug)]
pub struct TokenBucket {
    spec: BucketSpec,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(spec: BucketSpec, now: Instant) -> Self {
        Self {
            spec,
            tokens: f64::from(spec.capacity),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens =
            (self.tokens + elapsed * self.spec.refill_per_sec).min(f64::from(self.spec.capacity));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Throttle {
    buckets: HashMap<String, TokenBucket>,
}

impl Throttle {
    pub fn admit(&mut self, action: &str, rates: &ClassRates, now: Instant) -> bool {
        let spec = rates.of(CallClass::of(action));
        self.buckets
            .entry(action.to_owned())
            .or_insert_with(|| TokenBucket::new(spec, now))
            .try_take(now)
    }

    /// New limits take effect with full buckets.
    pub fn reset(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            BucketSpec {
                capacity: 3,
                refill_per_sec: 2.0,
            },
            t0,
        );
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(400)));
        assert!(b.try_take(t0 + Duration::from_millis(600)));
    }

    #[test]
    fn buckets_are_per_action() {
        let t0 = Instant::now();
        let rates = ClassRates {
            describe: BucketSpec {
                capacity: 1,
                refill_per_sec: 0.0,
            },
            mutate: BucketSpec {
                capacity: 1,
                refill_per_sec: 0.0,
            },
        };
        let mut t = Throttle::default();
        assert!(t.admit("DescribeSubnets", &rates, t0));
        assert!(!t.admit("DescribeSubnets", &rates, t0));
        assert!(t.admit("DescribeInstances", &rates, t0));
    }
}
