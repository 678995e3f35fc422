//! The admin API (JSON under /admin/): register instances, tune behaviour, read
//! counters, dump and reset state, read the dataplane view.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::cloud::requests::RegisterInstance;
use crate::error::CloudError;
use crate::sim::Sim;

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/admin/healthz", get(|| async { "ok" }))
        .route("/admin/instances", post(register))
        .route("/admin/instances/{id}", delete(terminate))
        .route("/admin/config", get(config).put(update_config))
        .route("/admin/counters", get(counters))
        .route("/admin/state", get(state))
        .route("/admin/reset", post(reset))
        .route("/admin/dataplane", get(dataplane))
}

fn cloud_error(e: CloudError) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"code": e.code.as_str(), "message": e.message})),
    )
        .into_response()
}

async fn register(State(sim): State<Arc<Sim>>, Json(req): Json<RegisterInstance>) -> Response {
    match sim.register_instance(&req) {
        Ok(out) => (StatusCode::CREATED, Json(out)).into_response(),
        Err(e) => cloud_error(e),
    }
}

async fn terminate(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    match sim.terminate_instance(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => cloud_error(e),
    }
}

async fn config(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.config()).into_response()
}

async fn update_config(
    State(sim): State<Arc<Sim>>,
    Json(patch): Json<serde_json::Value>,
) -> Response {
    match sim.update_config(&patch) {
        Ok(cfg) => Json(cfg).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": "InvalidParameterValue", "message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn counters(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.counters()).into_response()
}

async fn state(State(sim): State<Arc<Sim>>) -> Response {
    sim.with_state(|dump| Json(dump).into_response())
}

async fn reset(State(sim): State<Arc<Sim>>) -> Response {
    sim.reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn dataplane(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.dataplane_view()).into_response()
}
