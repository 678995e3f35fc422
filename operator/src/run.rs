//! Wiring: the watch caches, the shared context and the controllers, run until shutdown
//! or until a controller's watch ends.

use std::sync::Arc;

use eni_crds::{ENIPool, PodNetwork, contract::STATEFUL_LABEL};
use futures::{StreamExt, TryStreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, Node as K8sNode, Pod};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        events::{Recorder, Reporter},
        reflector, watcher,
    },
};
use tracing::{info, warn};

use crate::{
    cloud::CloudProvider,
    context::{Config, Context, MANAGER, Stores},
    controllers::{gc, nodes, podnetworks, pods, pools, trunk},
    metrics::Metrics,
    pod_record::PodRecorder,
};

fn trim_meta<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    obj.meta_mut().annotations = None;
}

/// Runs the operator until `shutdown` resolves or a loop fails.
pub async fn run(
    client: Client,
    cloud: Arc<dyn CloudProvider>,
    config: Config,
    metrics: Metrics,
    shutdown: BoxFuture<'static, ()>,
) {
    let (pools, pools_w) = reflector::store();
    let (pods, pods_w) = reflector::store();
    let (podnetworks, pn_w) = reflector::store();
    let (namespaces, ns_w) = reflector::store();
    let (k8s_nodes, nodes_w) = reflector::store();

    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let stores = Stores {
        pools,
        pods,
        podnetworks,
        namespaces,
        nodes: k8s_nodes,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Context::new(client.clone(), cloud, config, metrics, recorder, stores);

    let wc = watcher::Config::default;
    let pool_stream = reflector::reflector(
        pools_w,
        watcher(Api::<ENIPool>::all(client.clone()), wc()).modify(trim_meta),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    let ns_stream = reflector::reflector(
        ns_w,
        watcher(Api::<Namespace>::all(client.clone()), wc()).modify(|n| {
            trim_meta(n);
            n.spec = None;
            n.status = None;
        }),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    let pn_stream = reflector::reflector(
        pn_w,
        // What the agent reports (status), the pod it belongs to (owner reference) and
        // the labels for selection by node or pool are never read here.
        watcher(Api::<PodNetwork>::all(client.clone()), wc()).modify(|pn| {
            trim_meta(pn);
            pn.metadata.owner_references = None;
            pn.status = None;
            if let Some(labels) = pn.metadata.labels.as_mut() {
                labels.retain(|k, _| k == STATEFUL_LABEL);
            }
            // An empty map still holds a node of its own.
            pn.metadata.labels.take_if(|l| l.is_empty());
        }),
    )
    .default_backoff();
    let node_stream = reflector::reflector(
        nodes_w,
        watcher(Api::<K8sNode>::all(client.clone()), wc()).modify(|n| {
            trim_meta(n);
            trunk::trim_status(n);
        }),
    )
    .default_backoff();
    // Only bound pods need a unit; a pod appears here when it is bound.
    let mut records = PodRecorder::default();
    let pod_stream = reflector::reflector(
        pods_w,
        watcher(
            Api::<Pod>::all(client.clone()),
            wc().any_semantic().fields("spec.nodeName!="),
        )
        .map_ok(move |e| records.event(e)),
    )
    .default_backoff();

    info!("operator starting");
    tokio::select! {
        _ = pool_stream => warn!("pool watch ended"),
        _ = ns_stream => warn!("namespace watch ended"),
        _ = nodes::run(ctx.clone(), node_stream) => warn!("node loop ended"),
        _ = podnetworks::run(ctx.clone(), pn_stream) => warn!("podnetwork loop ended"),
        _ = pods::run(ctx.clone(), pod_stream) => warn!("pod loop ended"),
        _ = pools::run(ctx.clone()) => warn!("pool loop ended"),
        _ = gc::run(ctx.clone()) => warn!("collector ended"),
        _ = shutdown => info!("shutting down"),
    }
}
