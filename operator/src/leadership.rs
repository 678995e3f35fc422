//! Leading under a Lease without ever overlapping another replica. The election follows
//! client-go's protocol (`k8s-controller`): a standby takes over only once it has seen
//! the lease unchanged for a whole lease duration, and the leader gives up once it could
//! not renew for the renew deadline (two thirds of it), so it stops first. Stopping must
//! stop everything: the work runs on a runtime of its own, so the tasks it spawned (node
//! loops, keyed jobs) end with it, not only the future that started them. A leader that
//! lost its lease exits the process at once; one asked to stop ends its work before it
//! hands the lease back, so the standby that takes it at once has nobody beside it.

use std::{future::Future, sync::Mutex, time::Duration};

use futures::future::BoxFuture;
use k8s_controller::LeaderElection;
use tracing::{error, info, warn};

/// The renew deadline and the retry period of a lease duration: client-go's defaults
/// (15 s, 10 s, 2 s) in proportion.
pub fn timings(lease: Duration) -> (Duration, Duration) {
    (lease.mul_f64(2.0 / 3.0), lease.mul_f64(2.0 / 15.0))
}

/// How the lead ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop: the work ended, then the lease was handed back.
    Stopped,
    /// The work returned on its own (a watch ended); it was ended and the lease handed back.
    WorkReturned,
}

/// The exit status of a replica that lost its lease.
pub const LOST_LEADERSHIP_EXIT: i32 = 3;

/// How long the work's tasks get to end, and the lease release to be answered.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for the lease, then runs `work` on its own runtime until `stop` resolves or the
/// work returns. Exits the process (status [`LOST_LEADERSHIP_EXIT`]) when the lease is
/// lost: a standby may be acting from its last third on.
pub async fn lead<W, F>(
    election: &LeaderElection,
    identity: &str,
    stop: BoxFuture<'static, ()>,
    work: W,
) -> Result<Ended, std::io::Error>
where
    W: FnOnce() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = Work::start()?;
    let led = async {
        info!(%identity, "leading");
        if runtime.run(work()).await {
            warn!(%identity, "the work returned: stopping");
        }
        runtime.stop().await;
    };
    tokio::select! {
        led = election.with_lease(led) => match led {
            Some(()) => Ok(Ended::WorkReturned),
            None => {
                error!(%identity, "lost the lease: exiting");
                std::process::exit(LOST_LEADERSHIP_EXIT);
            }
        },
        () = stop => {
            runtime.stop().await;
            match tokio::time::timeout(STOP_TIMEOUT, election.release()).await {
                // The election logs a release it could not make; this says it was tried.
                Ok(()) => info!(%identity, "released the lease"),
                Err(_) => error!("releasing the lease timed out; standbys take over when it expires"),
            }
            Ok(Ended::Stopped)
        }
    }
}

/// The runtime the work runs on; ending it drops every task the work spawned.
struct Work(Mutex<Option<tokio::runtime::Runtime>>);

impl Work {
    fn start() -> Result<Work, std::io::Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("eni-operator-work")
            .build()?;
        Ok(Work(Mutex::new(Some(rt))))
    }

    /// Runs `fut` on the work runtime; true when it returned (false: the runtime ended).
    async fn run(&self, fut: impl Future<Output = ()> + Send + 'static) -> bool {
        let spawned = self.slot().as_ref().map(|rt| rt.spawn(fut));
        match spawned {
            Some(task) => task.await.is_ok(),
            None => false,
        }
    }

    /// Ends the runtime and waits until its tasks are dropped (a blocking wait, so on a
    /// blocking thread).
    async fn stop(&self) {
        let Some(rt) = self.slot().take() else {
            return;
        };
        if let Err(e) = tokio::task::spawn_blocking(move || rt.shutdown_timeout(STOP_TIMEOUT)).await
        {
            error!(error = %e, "ending the work runtime");
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<tokio::runtime::Runtime>> {
        // Only take() and spawn() run under it: a poisoned slot is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // Dropping a runtime from async code would block: end it in the background.
        if let Some(rt) = self.slot().take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_gives_up_before_a_standby_may_take_over() {
        for secs in [1, 4, 15, 60] {
            let lease = Duration::from_secs(secs);
            let (deadline, retry) = timings(lease);
            assert!(retry < deadline && deadline < lease, "{secs}");
        }
        assert_eq!(
            timings(Duration::from_secs(15)),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
    }

    #[tokio::test]
    async fn stopping_the_work_drops_the_tasks_it_spawned() {
        let work = Work::start().expect("runtime");
        let (alive, mut gone) = tokio::sync::mpsc::channel::<()>(1);
        let returned = {
            let run = work.run(async move {
                // A task of the work's own, as a node loop is: it holds `alive` until it
                // is dropped.
                tokio::spawn(async move {
                    let _alive = alive;
                    futures::future::pending::<()>().await;
                });
            });
            run.await
        };
        assert!(returned);
        work.stop().await;
        assert_eq!(
            gone.recv().await,
            None,
            "the spawned task outlived the work"
        );
        assert!(!work.run(async {}).await, "a stopped work runs nothing");
    }
}
