use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;
use prometheus_client::{encoding::text::encode, registry::Registry};

use super::*;

#[derive(Debug)]
struct Boom;

impl Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl Failure for Boom {
    fn label(&self) -> &'static str {
        "boom"
    }
}

type Log = Arc<Mutex<Vec<String>>>;

fn runner(limit: Duration) -> (Keyed<String, Boom>, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    (Keyed::new("test", limit, metrics), registry)
}

fn log_of(log: &Log) -> Vec<String> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

/// A job that logs its start and end around `took`.
fn job(
    log: &Log,
    name: &str,
    took: Duration,
) -> impl FnOnce() -> BoxFuture<'static, Result<(), Boom>> + Send + 'static {
    let (log, name) = (log.clone(), name.to_owned());
    move || {
        async move {
            log.lock().expect("log").push(format!("start {name}"));
            tokio::time::sleep(took).await;
            log.lock().expect("log").push(format!("end {name}"));
            Ok(())
        }
        .boxed()
    }
}

async fn idle(k: &Keyed<String, Boom>, key: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while k.is_busy(&key.to_owned()) {
        assert!(
            Instant::now() < deadline,
            "{key} still busy after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn reconciles(registry: &Registry, result: &str) -> bool {
    let mut out = String::new();
    encode(&mut out, registry).expect("encode");
    out.lines().any(|l| {
        l.starts_with("eni_operator_reconciles_total")
            && l.contains(&format!("result=\"{result}\""))
            && l.contains("controller=\"test\"")
    })
}

#[tokio::test]
async fn one_job_per_key_at_a_time_and_waiting_jobs_coalesce() {
    let (k, _r) = runner(Duration::from_secs(5));
    let log: Log = Arc::default();
    let key = "a".to_owned();
    k.schedule(key.clone(), job(&log, "1", Duration::from_millis(100)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    k.schedule(key.clone(), job(&log, "2", Duration::ZERO));
    k.schedule(key.clone(), job(&log, "3", Duration::ZERO));
    idle(&k, "a", Duration::from_secs(2)).await;
    assert_eq!(log_of(&log), ["start 1", "end 1", "start 3", "end 3"]);
}

#[tokio::test]
async fn keys_run_in_parallel() {
    let (k, _r) = runner(Duration::from_secs(5));
    let log: Log = Arc::default();
    k.schedule("a".to_owned(), job(&log, "a", Duration::from_millis(100)));
    k.schedule("b".to_owned(), job(&log, "b", Duration::from_millis(100)));
    idle(&k, "a", Duration::from_secs(2)).await;
    idle(&k, "b", Duration::from_secs(2)).await;
    let l = log_of(&log);
    assert_eq!(&l[..2], ["start a", "start b"], "{l:?}");
}

#[tokio::test]
async fn a_panic_frees_the_key_and_is_counted() {
    let (k, registry) = runner(Duration::from_secs(5));
    let log: Log = Arc::default();
    let key = "a".to_owned();
    k.schedule(key.clone(), || async { panic!("job bug") }.boxed());
    tokio::time::sleep(Duration::from_millis(50)).await;
    k.schedule(key.clone(), job(&log, "after", Duration::ZERO));
    idle(&k, "a", Duration::from_secs(5)).await;
    assert_eq!(log_of(&log), ["start after", "end after"]);
    assert!(reconciles(&registry, "panic"));
    assert!(reconciles(&registry, "ok"));
}

#[tokio::test]
async fn a_job_past_the_limit_is_stopped() {
    let (k, registry) = runner(Duration::from_millis(50));
    let log: Log = Arc::default();
    k.schedule("a".to_owned(), job(&log, "slow", Duration::from_secs(10)));
    idle(&k, "a", Duration::from_secs(3)).await;
    assert_eq!(log_of(&log), ["start slow"]);
    assert!(reconciles(&registry, "timeout"));
}

#[tokio::test]
async fn failures_back_off_and_a_success_resets() {
    let (k, registry) = runner(Duration::from_secs(5));
    let runs = Arc::new(AtomicU32::new(0));
    let key = "a".to_owned();
    let failing = |runs: &Arc<AtomicU32>| {
        let runs = runs.clone();
        move || {
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Err(Boom)
            }
            .boxed()
        }
    };
    let started = Instant::now();
    k.schedule(key.clone(), failing(&runs));
    tokio::time::sleep(Duration::from_millis(50)).await;
    k.schedule(key.clone(), failing(&runs));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the retry waits out the backoff"
    );
    idle(&k, "a", Duration::from_secs(5)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= FIRST_BACKOFF);
    assert!(reconciles(&registry, "boom"));
    assert_eq!(backoff(0), Duration::ZERO);
    assert_eq!(backoff(3), Duration::from_secs(2));
    assert_eq!(backoff(40), MAX_BACKOFF);
}

#[tokio::test]
async fn delayed_jobs_move_and_can_be_brought_forward() {
    let (k, _r) = runner(Duration::from_secs(5));
    let log: Log = Arc::default();
    let key = "a".to_owned();
    k.schedule_at(
        key.clone(),
        Instant::now() + Duration::from_millis(50),
        job(&log, "early", Duration::ZERO),
    );
    k.schedule_at(
        key.clone(),
        Instant::now() + Duration::from_secs(30),
        job(&log, "late", Duration::ZERO),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(log_of(&log).is_empty(), "the moved deadline holds");
    k.run_now(&key);
    idle(&k, "a", Duration::from_secs(2)).await;
    assert_eq!(log_of(&log), ["start late", "end late"]);
}
