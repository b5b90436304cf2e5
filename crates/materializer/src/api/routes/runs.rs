//! Runs: trigger, watch, list and stop.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use materializer_core::config::Topic;
use materializer_core::run::Ledger;

use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::registry::{self};
use crate::api::state::AppState;

/// Starts a run of a topic (queued when the concurrency limit is reached).
#[utoipa::path(
    post,
    path = "/topics/{topic}/runs",
    tag = "runs",
    params(("topic" = String, Path, description = "Topic name")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Run accepted", body = Triggered, headers(("Location" = String, description = "The run's status URL"))),
        (status = 404, body = Problem),
        (status = 409, description = "The topic is already queued or running", body = Problem),
        (status = 422, description = "The topic does not load", body = Problem),
        (status = 503, description = "The server is shutting down", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn trigger_run(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(
            ApiError::new(ProblemKind::Unavailable, "the server is shutting down")
                .titled("Shutting down"),
        );
    }
    let topic = app.topic(&name)?;
    let id = registry::start(&app, topic)?;
    let url = format!("/runs/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Triggered {
            id,
            status_url: url.clone(),
            state: "queued".into(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// A run: state, timings, live counters, the error if any.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "Run id (as a trigger answers it, or <topic>@<sequence> for committed runs)")),
    security(("bearer" = [])),
    responses((status = 200, body = RunView), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn get_run(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    if let Some(view) = app.runs.view(&id) {
        return Ok(Json(view));
    }
    if let Some((topic, seq)) = id.rsplit_once('@')
        && let Ok(seq) = seq.parse::<u64>()
        && let Ok(topic) = app.topic(topic)
        && let Some(view) = committed_run(&app, &topic, seq).await?
    {
        return Ok(Json(view));
    }
    Err(ApiError::new(ProblemKind::NotFound, format!("no run {id:?}")).titled("Unknown run"))
}

pub(crate) async fn committed_run(
    app: &AppState,
    topic: &Topic,
    seq: u64,
) -> Result<Option<RunView>, ApiError> {
    let output = app.env.output(topic)?;
    let manifest = Ledger::new(output, topic.name()).manifest(seq).await?;
    Ok(manifest.map(|m| RunView::from_manifest(&m)))
}

/// Recent runs of a topic, newest first: those of this server and the
/// committed ones read back from the manifests (also from before a restart).
#[utoipa::path(
    get,
    path = "/topics/{topic}/runs",
    tag = "runs",
    params(("topic" = String, Path, description = "Topic name"), HistoryQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<RunView>), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn list_runs(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let topic = app.topic(&name)?;
    let limit = match query.limit {
        None => 20,
        Some(n @ 1..=1000) => n as usize,
        Some(n) => {
            return Err(ApiError::new(
                ProblemKind::BadRequest,
                format!("limit {n} is out of range: 1 to 1000 runs"),
            ));
        }
    };
    let mut views = app.runs.views_of(&name);
    let known: std::collections::HashSet<u64> = views.iter().filter_map(|v| v.sequence).collect();
    let output = app.env.output(&topic)?;
    let ledger = Ledger::new(output, topic.name());
    let sequences = ledger.committed_sequences().await?;
    for seq in sequences
        .into_iter()
        .rev()
        .filter(|s| !known.contains(s))
        .take(limit)
    {
        if let Some(manifest) = ledger.manifest(seq).await? {
            views.push(RunView::from_manifest(&manifest));
        }
    }
    views.sort_by(|a, b| {
        b.queued_at
            .cmp(&a.queued_at)
            .then(b.sequence.cmp(&a.sequence))
    });
    views.truncate(limit);
    Ok(Json(views))
}

/// Stops a run: nothing of it is committed and the next run redoes it. A run
/// already writing its manifest finishes.
#[utoipa::path(
    post,
    path = "/runs/{id}/stop",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Stopping", body = RunView),
        (status = 404, body = Problem),
        (status = 409, description = "The run has finished already", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn stop_run(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = app.runs.stop(&id)?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
