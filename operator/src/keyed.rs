//! The one per-key runner every controller schedules its work with.
//!
//! - Serial per key: a key's jobs never overlap; different keys run in parallel.
//! - Deduplicated: a key holds at most one waiting job; scheduling again replaces it
//!   (the newest work and due time win), so a burst of events costs one run.
//! - Delayed: a job may be due later (a release waits for its cooldown); rescheduling
//!   moves the time, [`Keyed::run_now`] brings it forward.
//! - Panic-safe: a job runs in a task of its own; a panic ends that job only, frees the
//!   key, is logged and counted (`result="panic"`).
//! - Bounded: a job that runs longer than the limit is stopped (`result="timeout"`);
//!   every job is written to be repeated.
//! - Backoff: after a failed job the key's next job waits 0.5s, 1s, 2s ... up to 10s
//!   (a resync period: work that fails keeps being retried at that pace), and runs at
//!   once again after a success.

use std::{
    collections::HashMap,
    fmt::Display,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::{sync::Notify, time::Instant};
use tracing::{error, warn};

use crate::metrics::Metrics;

/// An error a job ends with: shown in the log, counted by its label.
pub trait Failure: Display + Send + 'static {
    fn label(&self) -> &'static str;
}

type Make<E> = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), E>> + Send>;

struct Job<E> {
    due: Instant,
    make: Make<E>,
}

struct Slot<E> {
    next: Option<Job<E>>,
    wake: Arc<Notify>,
    failures: u32,
    not_before: Instant,
}

struct Inner<K, E> {
    controller: &'static str,
    limit: Duration,
    metrics: Metrics,
    slots: Mutex<HashMap<K, Slot<E>>>,
}

pub struct Keyed<K, E> {
    inner: Arc<Inner<K, E>>,
}

impl<K, E> Clone for Keyed<K, E> {
    fn clone(&self) -> Self {
        Keyed {
            inner: self.inner.clone(),
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_BACKOFF
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_BACKOFF),
    }
}

impl<K, E> Keyed<K, E>
where
    K: Clone + Eq + Hash + Display + Send + Sync + 'static,
    E: Failure,
{
    /// A runner whose jobs are counted as `controller` and stopped after `limit`.
    pub fn new(controller: &'static str, limit: Duration, metrics: Metrics) -> Self {
        Keyed {
            inner: Arc::new(Inner {
                controller,
                limit,
                metrics,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<K, Slot<E>>> {
        // Nothing user-written runs under this lock; recover it anyway.
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `make()`'s work for `key` as soon as the key is free.
    pub fn schedule<F>(&self, key: K, make: F)
    where
        F: FnOnce() -> BoxFuture<'static, Result<(), E>> + Send + 'static,
    {
        self.schedule_at(key, Instant::now(), make)
    }

    /// Runs `make()`'s work for `key` at `due` (or once the key is free after that),
    /// replacing a job of the key that has not started.
    pub fn schedule_at<F>(&self, key: K, due: Instant, make: F)
    where
        F: FnOnce() -> BoxFuture<'static, Result<(), E>> + Send + 'static,
    {
        let job = Job {
            due,
            make: Box::new(make),
        };
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&key) {
            slot.next = Some(job);
            slot.wake.notify_one();
            return;
        }
        slots.insert(
            key.clone(),
            Slot {
                next: Some(job),
                wake: Arc::new(Notify::new()),
                failures: 0,
                not_before: Instant::now(),
            },
        );
        drop(slots);
        let this = self.clone();
        tokio::spawn(async move { this.work(key).await });
    }

    /// Brings the key's waiting job forward to now (nothing if none waits).
    pub fn run_now(&self, key: &K) {
        if let Some(slot) = self.slots().get_mut(key)
            && let Some(job) = slot.next.as_mut()
        {
            job.due = Instant::now();
            slot.wake.notify_one();
        }
    }

    /// Whether a job of `key` waits or runs.
    pub fn is_busy(&self, key: &K) -> bool {
        self.slots().contains_key(key)
    }

    /// The key's worker: waits for its job's time, runs it, and goes once nothing waits
    /// and no backoff is to be kept.
    async fn work(&self, key: K) {
        loop {
            let (wait_until, wake, ready) = {
                let mut slots = self.slots();
                let Some(slot) = slots.get_mut(&key) else {
                    return;
                };
                let now = Instant::now();
                match &slot.next {
                    None if slot.not_before <= now => {
                        slots.remove(&key);
                        return;
                    }
                    None => (slot.not_before, slot.wake.clone(), None),
                    Some(job) => {
                        let at = job.due.max(slot.not_before);
                        let ready = (at <= now).then(|| slot.next.take()).flatten();
                        (at, slot.wake.clone(), ready)
                    }
                }
            };
            let Some(job) = ready else {
                tokio::select! {
                    _ = tokio::time::sleep_until(wait_until) => {}
                    _ = wake.notified() => {}
                }
                continue;
            };
            let ok = self.run(&key, job).await;
            let mut slots = self.slots();
            if let Some(slot) = slots.get_mut(&key) {
                slot.failures = if ok { 0 } else { slot.failures + 1 };
                slot.not_before = Instant::now() + backoff(slot.failures);
            }
        }
    }

    /// Runs one job in a task of its own; true when it succeeded.
    async fn run(&self, key: &K, job: Job<E>) -> bool {
        let started = std::time::Instant::now();
        let limit = self.inner.limit;
        let work = (job.make)();
        let outcome = tokio::spawn(tokio::time::timeout(limit, work)).await;
        let controller = self.inner.controller;
        let label = match outcome {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => {
                warn!(controller, %key, error = %e, "reconcile failed; retried with backoff");
                Some(e.label())
            }
            Ok(Err(_)) => {
                warn!(controller, %key, ?limit, "reconcile took too long and was stopped");
                Some("timeout")
            }
            Err(e) => {
                error!(controller, %key, error = %e, "reconcile panicked; the key is free again");
                Some("panic")
            }
        };
        self.inner
            .metrics
            .reconciled(controller, label, started.elapsed());
        label.is_none()
    }
}

#[cfg(test)]
mod tests;
