//! Health, metrics and the OpenAPI description (no token needed), and what
//! this server allows (with a token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::{ApiError, Problem, ProblemKind};
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

/// Prometheus metrics: runs by state, events, rows, bytes, retries, durations,
/// previews running and waiting.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub(crate) async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    let (active, queued) = app.runs.load();
    let text = app
        .metrics
        .render(active, queued, app.previews.load(), &app.runs.live_events());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// What this server is and allows: its version, whether mappings may be
/// saved, and the limits of previews.
#[utoipa::path(
    get,
    path = "/info",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = InfoView), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn info(State(app): State<Arc<AppState>>) -> Json<InfoView> {
    materializer_core::failpoint::panic_point("info");
    Json(InfoView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        mapping_edits: app.settings.allow_mapping_edits,
        preview_timeout_seconds: app.settings.preview_timeout.as_secs_f64(),
        preview_max_events: app.settings.preview_max_events,
    })
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

/// A kind of problem the API answers (the `type` of its problem documents).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProblemDescription {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status answers of this kind usually have.
    pub status: u16,
    pub description: String,
    /// For failures of runs: the exit code of `materializer run` for the same failure.
    pub exit_code: Option<u8>,
    /// Whether trying again without changing anything may succeed.
    pub retryable: Option<bool>,
}

/// What a problem `type` means and what to do about it.
#[utoipa::path(
    get,
    path = "/problems/{kind}",
    tag = "operations",
    params(("kind" = String, Path, description = "The last part of a problem's `type`, e.g. `source-unavailable`")),
    responses((status = 200, body = ProblemDescription), (status = 404, body = Problem))
)]
pub(crate) async fn describe_problem(
    Path(kind): Path<String>,
) -> Result<Json<ProblemDescription>, ApiError> {
    let kind = ProblemKind::from_slug(&kind)
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, format!("no problem type {kind:?}")))?;
    let class = match kind {
        ProblemKind::Engine(class) => Some(class),
        _ => None,
    };
    Ok(Json(ProblemDescription {
        kind: kind.uri(),
        title: kind.title().to_string(),
        status: kind.status().as_u16(),
        description: kind.description().to_string(),
        exit_code: class.map(|c| c.exit_code()),
        retryable: class.map(|c| c.retryable()),
    }))
}
