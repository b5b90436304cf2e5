//! Health, metrics and the OpenAPI description (no token needed).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::models::*;
use crate::api::state::AppState;

/// Liveness and load.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub(crate) async fn healthz(State(app): State<Arc<AppState>>) -> Json<Health> {
    let (active, queued) = app.runs.load();
    Json(Health {
        status: if app.shutdown.is_cancelled() {
            "shutting down"
        } else {
            "ok"
        }
        .into(),
        runs_active: active,
        runs_queued: queued,
    })
}

/// Prometheus metrics: runs by state, events, rows, bytes, retries, durations.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub(crate) async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    let (active, queued) = app.runs.load();
    let text = app.metrics.render(active, queued, &app.runs.live_events());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The OpenAPI 3 description of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object))
)]
pub(crate) async fn openapi_json(
    State(app): State<Arc<AppState>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(app.openapi.get().cloned().unwrap_or_default())
}
