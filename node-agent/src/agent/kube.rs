//! Everything the agent says to the API server: the label-selected PodNetwork watch that
//! feeds the cache, and status writes by server-side apply. Given a `kube::Client`, so
//! tests can drive it against any API server.

use std::future::Future;

use eni_crds::contract::NODE_LABEL;
use eni_crds::{PodNetwork, PodNetworkStatus};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde_json::json;
use std::sync::Arc;

use super::cache::CacheWriter;
use super::metrics::Metrics;

/// Field manager of the agent's status writes.
pub const FIELD_MANAGER: &str = "eni-agent";

/// The label selector an agent on `node` watches with: custom resources support no
/// field selectors on spec fields, so the operator's node label is how an agent watches
/// only its own node's PodNetworks.
pub fn node_selector(node: &str) -> String {
    format!("{NODE_LABEL}={node}")
}

/// Writes a PodNetwork's status.
pub trait StatusWriter: Send + Sync + 'static {
    fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodNetworkStatus,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// Status writes through the API server.
#[derive(Clone)]
pub struct KubeStatusWriter {
    client: Client,
}

impl KubeStatusWriter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl StatusWriter for KubeStatusWriter {
    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodNetworkStatus,
    ) -> Result<(), kube::Error> {
        let api: Api<PodNetwork> = Api::namespaced(self.client.clone(), namespace);
        // Apply only the status: the agent owns these fields, the operator the spec.
        let patch = json!({
            "apiVersion": PodNetwork::api_version(&()),
            "kind": PodNetwork::kind(&()),
            "status": status,
        });
        // force: the agent is the only writer of these status fields; a conflict would
        // only come from a manual edit, which the agent's observation should override.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(name, &params, &Patch::Apply(&patch))
            .await
            .map(|_| ())
    }
}

/// Watches this node's PodNetworks into the cache until the process ends. Errors are
/// logged and retried with backoff; the cache keeps its last state meanwhile.
pub async fn run_watch(
    client: Client,
    node: String,
    mut writer: CacheWriter,
    metrics: Arc<Metrics>,
) {
    let api: Api<PodNetwork> = Api::all(client);
    let config = watcher::Config::default().labels(&node_selector(&node));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if matches!(event, watcher::Event::InitDone) {
                    tracing::info!(node, "PodNetwork cache synced");
                }
                writer.apply(&event);
            }
            Err(error) => {
                metrics.watch_errors.inc();
                tracing::warn!(%error, "PodNetwork watch failed; retrying");
            }
        }
    }
}
