//! PodNetwork status writes off the CNI request's path: ADD answers the runtime as soon
//! as the pod is wired, and the status (an observation for humans and the operator,
//! rewritten by the next ADD) follows through one task that writes in request order,
//! so an ADD's `Ready` never lands after a later request's status.

use std::sync::Arc;

use eni_crds::PodNetworkStatus;
use tokio::sync::mpsc;

use super::kube::StatusWriter;
use super::metrics::Metrics;

struct Write {
    namespace: String,
    name: String,
    status: PodNetworkStatus,
}

/// A [`StatusWriter`] that queues; the writes happen on a task of their own.
pub struct QueuedStatusWriter {
    queue: mpsc::UnboundedSender<Write>,
    metrics: Arc<Metrics>,
}

impl QueuedStatusWriter {
    /// Starts the task that writes through `inner` (on the current runtime).
    pub fn start<S: StatusWriter>(inner: S, metrics: Arc<Metrics>) -> Self {
        let (queue, mut writes) = mpsc::unbounded_channel::<Write>();
        let task_metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(w) = writes.recv().await {
                if let Err(error) = inner.write_status(&w.namespace, &w.name, &w.status).await {
                    task_metrics.status_write_errors.inc();
                    tracing::warn!(%error, namespace = w.namespace, name = w.name, "writing PodNetwork status failed");
                }
            }
        });
        Self { queue, metrics }
    }
}

impl StatusWriter for QueuedStatusWriter {
    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodNetworkStatus,
    ) -> Result<(), kube::Error> {
        let queued = self.queue.send(Write {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            status: status.clone(),
        });
        if queued.is_err() {
            // Only when the runtime is shutting down: the next ADD writes it again.
            self.metrics.status_write_errors.inc();
            tracing::warn!(
                namespace,
                name,
                "status writer stopped; PodNetwork status not written"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use eni_crds::PodNetworkPhase;

    use super::*;

    /// Takes 50 ms per write and remembers the order.
    struct Slow(Arc<Mutex<Vec<String>>>);

    impl StatusWriter for Slow {
        async fn write_status(
            &self,
            _namespace: &str,
            name: &str,
            status: &PodNetworkStatus,
        ) -> Result<(), kube::Error> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.0
                .lock()
                .unwrap()
                .push(format!("{name} {:?}", status.phase));
            Ok(())
        }
    }

    #[tokio::test]
    async fn writes_return_at_once_and_land_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let writer = QueuedStatusWriter::start(Slow(seen.clone()), Arc::new(Metrics::new()));
        let started = std::time::Instant::now();
        for (name, phase) in [
            ("a", PodNetworkPhase::Ready),
            ("a", PodNetworkPhase::Failed),
            ("b", PodNetworkPhase::Ready),
        ] {
            let status = PodNetworkStatus {
                phase: Some(phase),
                ..PodNetworkStatus::default()
            };
            writer.write_status("default", name, &status).await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "a write waited for the API server"
        );
        for _ in 0..100 {
            if seen.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *seen.lock().unwrap(),
            ["a Some(Ready)", "a Some(Failed)", "b Some(Ready)"]
        );
    }
}
