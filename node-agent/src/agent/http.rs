//! Health and metrics endpoints.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::cache::PodNetworkCache;
use super::metrics::Metrics;

#[derive(Clone)]
struct Shared {
    cache: PodNetworkCache,
    metrics: Arc<Metrics>,
}

/// `/healthz` (process alive), `/readyz` (PodNetwork cache synced), `/metrics`.
pub fn router(cache: PodNetworkCache, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { cache, metrics })
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.cache.is_synced() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "PodNetwork cache not synced",
        )
    }
}

async fn metrics_text(State(shared): State<Shared>) -> impl IntoResponse {
    // Read at scrape time, so that the gauge and /readyz cannot disagree.
    shared.metrics.set_cache_synced(shared.cache.is_synced());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}
