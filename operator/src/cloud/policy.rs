//! The gate every cloud request passes: a client-side token bucket (so the operator
//! never floods the cloud's own rate limit), then exponential backoff with jitter for
//! answers that may succeed later, plus metrics for every attempt. Describes have a
//! bucket of their own, as EC2 and ECS keep one per class of action: polling an
//! attaching ENI never takes a mutation's token. Optionally each mutating action also
//! has a bucket of its own, as the clouds throttle each action separately: without it a
//! run of one action (creates, early in a burst) can pass the operator's budget and
//! still be turned away by the cloud.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::CloudError;
use super::metrics::CloudMetrics;

/// Token bucket settings: sustained requests per second and how many may go at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub qps: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    /// Below EC2's documented mutating-action bucket refill rate for one account, leaving
    /// room for other tools in the same account.
    fn default() -> Self {
        Self {
            qps: const { non_zero(10) },
            burst: const { non_zero(20) },
        }
    }
}

const fn non_zero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("zero rate"),
    }
}

/// Retry settings for `Throttled` and `Transient` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry; doubles on each further retry.
    pub min_delay: Duration,
    /// Cap of a single delay (before jitter).
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Cap of the summed delays of one call; past it the last error is returned.
    pub max_total_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_retries: 10,
            max_total_delay: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    fn builder(&self) -> ExponentialBuilder {
        // Jitter adds up to one more delay at random, so that callers throttled together
        // do not come back together.
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_total_delay(Some(self.max_total_delay))
            .with_jitter()
    }
}

/// Which failed attempts may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and mutations that are idempotent (client token, explicit target): retry
    /// `Throttled` and `Transient`.
    Safe,
    /// Mutations that could apply twice: retry only `Throttled`, where the cloud refused
    /// the request before doing anything. After a timeout the outcome is unknown, and the
    /// caller reconciles by reading state instead.
    ThrottledOnly,
}

impl Retry {
    fn allows(self, error: &CloudError) -> bool {
        match self {
            Self::Safe => error.is_retryable(),
            Self::ThrottledOnly => matches!(error, CloudError::Throttled { .. }),
        }
    }
}

/// Rate limiters, backoff and metrics, shared by all calls of one provider.
#[derive(Debug)]
pub struct CallPolicy {
    /// Every action but describes.
    limiter: DefaultDirectRateLimiter,
    describe_limiter: DefaultDirectRateLimiter,
    /// Per mutating action, when set: a call passes it and then `limiter`.
    action_limiter: Option<DefaultKeyedRateLimiter<&'static str>>,
    backoff: Backoff,
    metrics: CloudMetrics,
}

fn quota(rate: RateLimit) -> Quota {
    Quota::per_second(rate.qps).allow_burst(rate.burst)
}

fn bucket(rate: RateLimit) -> DefaultDirectRateLimiter {
    RateLimiter::direct(quota(rate))
}

impl CallPolicy {
    /// `rate` for mutations, `describe_rate` for `Describe*` actions.
    pub fn new(
        rate: RateLimit,
        describe_rate: RateLimit,
        backoff: Backoff,
        metrics: CloudMetrics,
    ) -> Self {
        Self {
            limiter: bucket(rate),
            describe_limiter: bucket(describe_rate),
            action_limiter: None,
            backoff,
            metrics,
        }
    }

    /// Gives each mutating action a bucket of `rate` too (the cloud's per-action limit).
    pub fn with_action_rate(mut self, rate: Option<RateLimit>) -> Self {
        self.action_limiter = rate.map(|r| RateLimiter::keyed(quota(r)));
        self
    }

    pub fn metrics(&self) -> &CloudMetrics {
        &self.metrics
    }

    /// Runs `request` (which sends one request per invocation) through the limiter and
    /// retries it as `retry` allows. `request` is re-invoked for each attempt, so it must
    /// rebuild the same request, client token included.
    pub async fn call<T, F, Fut>(
        &self,
        action: &'static str,
        retry: Retry,
        request: F,
    ) -> Result<T, CloudError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let describe = action.starts_with("Describe");
        let limiter = if describe {
            &self.describe_limiter
        } else {
            &self.limiter
        };
        let per_action = self.action_limiter.as_ref().filter(|_| !describe);
        let attempt = || {
            let request = &request;
            async move {
                if let Some(l) = per_action {
                    l.until_key_ready(&action).await;
                }
                limiter.until_ready().await;
                let started = Instant::now();
                let result = request().await;
                self.metrics.observe(action, &result, started.elapsed());
                result
            }
        };
        attempt
            .retry(self.backoff.builder())
            .when(|e| retry.allows(e))
            .notify(|e, delay| {
                tracing::debug!(action, error = %e, ?delay, "cloud call failed, retrying");
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use prometheus_client::registry::Registry;

    use super::*;

    fn throttled() -> CloudError {
        CloudError::Throttled {
            code: "RequestLimitExceeded".into(),
            message: "Request limit exceeded.".into(),
        }
    }

    fn transient() -> CloudError {
        CloudError::Transient {
            code: "InternalError".into(),
            message: "boom".into(),
        }
    }

    fn policy(qps: u32, burst: u32, backoff: Backoff) -> CallPolicy {
        let rate = RateLimit {
            qps: NonZeroU32::new(qps).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        CallPolicy::new(
            rate,
            rate,
            backoff,
            CloudMetrics::register(&mut Registry::default()),
        )
    }

    fn quick_backoff(max_retries: usize) -> Backoff {
        Backoff {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_retries,
            max_total_delay: Duration::from_secs(5),
        }
    }

    /// A request that fails with the given errors in turn, then succeeds.
    async fn run_script(
        p: &CallPolicy,
        retry: Retry,
        errors: Vec<CloudError>,
    ) -> (Result<u32, CloudError>, u32) {
        let attempts = AtomicU32::new(0);
        let result = p
            .call("Test", retry, || {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                let outcome = errors.get(n as usize).cloned();
                async move {
                    match outcome {
                        Some(e) => Err(e),
                        None => Ok(n),
                    }
                }
            })
            .await;
        (result, attempts.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_throttling_and_transient_failures_until_success() {
        let p = policy(1000, 1000, quick_backoff(5));
        let (result, attempts) =
            run_script(&p, Retry::Safe, vec![throttled(), transient(), throttled()]).await;
        assert_eq!(result, Ok(3));
        assert_eq!(attempts, 4);
        assert_eq!(p.metrics().count("Test", "throttled"), 2);
        assert_eq!(p.metrics().count("Test", "transient"), 1);
        assert_eq!(p.metrics().count("Test", "ok"), 1);
    }

    #[tokio::test]
    async fn does_not_retry_final_errors() {
        let p = policy(1000, 1000, quick_backoff(5));
        let not_found = CloudError::NotFound {
            code: "InvalidNetworkInterfaceID.NotFound".into(),
            message: "gone".into(),
        };
        let (result, attempts) = run_script(&p, Retry::Safe, vec![not_found.clone()]).await;
        assert_eq!(result, Err(not_found));
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn non_idempotent_calls_retry_only_throttling() {
        let p = policy(1000, 1000, quick_backoff(5));
        let (result, attempts) =
            run_script(&p, Retry::ThrottledOnly, vec![throttled(), transient()]).await;
        assert_eq!(result, Err(transient()));
        assert_eq!(attempts, 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries() {
        let p = policy(1000, 1000, quick_backoff(2));
        let (result, attempts) = run_script(&p, Retry::Safe, vec![throttled(); 10]).await;
        assert_eq!(result, Err(throttled()));
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn gives_up_when_total_delay_is_spent() {
        let backoff = Backoff {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(20),
            max_retries: 100,
            max_total_delay: Duration::from_millis(100),
        };
        let p = policy(1000, 1000, backoff);
        let started = Instant::now();
        let (result, attempts) = run_script(&p, Retry::Safe, vec![throttled(); 100]).await;
        assert_eq!(result, Err(throttled()));
        // Each delay is 20..40 ms with jitter, so 100 ms allow 2 to 5 retries.
        assert!((3..=6).contains(&attempts), "{attempts} attempts");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn backoff_delays_grow() {
        let backoff = Backoff {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retries: 4,
            max_total_delay: Duration::from_secs(10),
        };
        use backon::BackoffBuilder;
        let delays: Vec<Duration> = backoff.builder().build().collect();
        assert_eq!(delays.len(), 4);
        // Base delays 10, 20, 40, 40 ms, each plus up to 100 % jitter.
        for (delay, base) in delays.iter().zip([10u64, 20, 40, 40]) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base && *delay <= base * 2,
                "{delay:?} vs {base:?}"
            );
        }
    }

    #[tokio::test]
    async fn token_bucket_paces_requests() {
        // Burst 2, then one request per 10 ms: 12 requests need at least 100 ms.
        let p = policy(100, 2, quick_backoff(0));
        let started = Instant::now();
        for _ in 0..12 {
            let (result, _) = run_script(&p, Retry::Safe, vec![]).await;
            assert!(result.is_ok());
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(95), "took {took:?}");
        assert_eq!(p.metrics().count("Test", "ok"), 12);
    }

    #[tokio::test]
    async fn an_action_bucket_paces_each_action_on_its_own() {
        // The budget: 100 mutations at once. Each action: 2 at once, then 1 a second.
        let rate = |qps: u32, burst: u32| RateLimit {
            qps: NonZeroU32::new(qps).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        let p = CallPolicy::new(
            rate(100, 100),
            rate(100, 100),
            quick_backoff(0),
            CloudMetrics::register(&mut Registry::default()),
        )
        .with_action_rate(Some(rate(1, 2)));
        let call = |action: &'static str| {
            let p = &p;
            async move {
                tokio::time::timeout(
                    Duration::from_millis(200),
                    p.call(action, Retry::Safe, || async { Ok::<_, CloudError>(()) }),
                )
                .await
                .is_ok()
            }
        };
        // Two creates and two attaches go at once: each action has its own two tokens.
        for action in ["CreateNetworkInterface", "AttachNetworkInterface"] {
            assert!(call(action).await && call(action).await, "{action}");
        }
        // A third create waits for its action's refill, though the budget has room;
        // describes are not paced per action.
        assert!(
            !call("CreateNetworkInterface").await,
            "a third create went at once"
        );
        for _ in 0..5 {
            assert!(call("DescribeNetworkInterfaces").await);
        }
    }

    #[tokio::test]
    async fn describes_do_not_take_the_mutations_tokens() {
        // One mutation per 10 s; describes 1000/s. Fifty polls, then a mutation: the
        // mutation finds its token, and the polls never waited for one.
        let slow = RateLimit {
            qps: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(1).unwrap(),
        };
        let p = CallPolicy::new(
            slow,
            RateLimit {
                qps: NonZeroU32::new(1000).unwrap(),
                burst: NonZeroU32::new(1000).unwrap(),
            },
            quick_backoff(0),
            CloudMetrics::register(&mut Registry::default()),
        );
        let started = Instant::now();
        for _ in 0..50 {
            p.call("DescribeNetworkInterfaces", Retry::Safe, || async {
                Ok::<_, CloudError>(())
            })
            .await
            .unwrap();
        }
        p.call("AttachNetworkInterface", Retry::Safe, || async {
            Ok::<_, CloudError>(())
        })
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        // The mutation bucket is empty now: a second mutation waits for its refill.
        let second = tokio::time::timeout(
            Duration::from_millis(200),
            p.call("CreateTags", Retry::Safe, || async {
                Ok::<_, CloudError>(())
            }),
        )
        .await;
        assert!(second.is_err(), "a second mutation went without a token");
    }
}
