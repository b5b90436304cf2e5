//! Runs: trigger, watch (also as a stream of events), list, stop, and the
//! files of committed ones.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};

use materializer_core::commit::{Ledger, Manifest};
use materializer_core::config::Topic;

use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::registry::{self};
use crate::api::routes::preview::parse_optional_json;
use crate::api::sources::requested_source;
use crate::api::state::AppState;

/// Starts a run of a topic (queued when the concurrency limit is reached).
#[utoipa::path(
    post,
    path = "/topics/{topic}/runs",
    tag = "runs",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = Option<RunRequestBody>,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Run accepted", body = Triggered, headers(("Location" = String, description = "The run's status URL"))),
        (status = 404, body = Problem),
        (status = 409, description = "The topic is already queued or running", body = Problem),
        (status = 422, description = "The topic does not load, it has no source (the problem says what gives one), or the source named is not under the recordings folder", body = Problem),
        (status = 503, description = "The server is shutting down", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn trigger_run(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(
            ApiError::new(ProblemKind::Unavailable, "the server is shutting down")
                .titled("Shutting down"),
        );
    }
    let topic = app.topic(&name)?;
    let request: RunRequestBody = parse_optional_json(&body)?;
    let source = requested_source(&app.env.recordings, request.source.as_deref())?;
    // A run without a source is refused now, with what would give it one,
    // rather than queued to fail.
    app.env.source(&topic, source.as_deref())?;
    let id = registry::start_from(&app, topic, source)?;
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
    find_run(&app, &id).await.map(Json)
}

/// A run of this server, or a committed one named `<topic>@<sequence>`.
pub(crate) async fn find_run(app: &AppState, id: &str) -> Result<RunView, ApiError> {
    if let Some(view) = app.runs.view(id) {
        return Ok(view);
    }
    if let Some((topic, seq)) = id.rsplit_once('@')
        && let Ok(seq) = seq.parse::<u64>()
        && let Ok(topic) = app.topic(topic)
        && let Some(manifest) = manifest(app, &topic, seq).await?
    {
        return Ok(RunView::from_manifest(&manifest));
    }
    Err(ApiError::new(ProblemKind::NotFound, format!("no run {id:?}")).titled("Unknown run"))
}

async fn manifest(app: &AppState, topic: &Topic, seq: u64) -> Result<Option<Manifest>, ApiError> {
    let output = app.env.output(topic)?;
    Ok(Ledger::new(output, topic.name()).manifest(seq).await?)
}

/// How often a watched run's counters are sent.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The run as it goes, as server-sent events: `event: progress` with the
/// run (as `GET /runs/{id}` answers it) about every 250 ms while it is
/// queued or running, then one `event: end` with the run as it ended, and
/// the stream closes. A run that has ended already gets the `end` at once.
#[utoipa::path(
    get,
    path = "/runs/{id}/events",
    tag = "runs",
    params(("id" = String, Path, description = "Run id (as a trigger answers it, or <topic>@<sequence> for committed runs)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A text/event-stream of `progress` events, then one `end` event; the `data` of each is a RunView (JSON)", content_type = "text/event-stream", body = RunEvent),
        (status = 404, body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn run_events(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let first = find_run(&app, &id).await?;
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        app,
        id,
        last: first,
        ticks,
        ended: false,
    };
    let events = futures::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((event, watch))
    });
    // Proxies that buffer would hold the events back until the run ends.
    Ok((
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(events),
    )
        .into_response())
}

/// A run being watched for its event stream.
struct Watch {
    app: Arc<AppState>,
    id: String,
    last: RunView,
    ticks: tokio::time::Interval,
    ended: bool,
}

impl Watch {
    /// The next event, at the next tick; `None` after the `end`.
    async fn next(&mut self) -> Option<Result<Event, axum::Error>> {
        if self.ended {
            return None;
        }
        self.ticks.tick().await;
        // A run no longer kept in memory (or a committed one read back from
        // its manifest) stays as last seen.
        if let Some(view) = self.app.runs.view(&self.id) {
            self.last = view;
        }
        self.ended = !self.last.is_active();
        let name = if self.ended { "end" } else { "progress" };
        Some(Event::default().event(name).json_data(&self.last))
    }
}

/// The files of a committed run, from its manifest.
#[utoipa::path(
    get,
    path = "/runs/{id}/files",
    tag = "runs",
    params(("id" = String, Path, description = "Run id (as a trigger answers it, or <topic>@<sequence> for committed runs)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<RunFileView>),
        (status = 404, description = "No such run, or it committed nothing (yet)", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn run_files(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RunFileView>>, ApiError> {
    let run = find_run(&app, &id).await?;
    let not_committed = || {
        ApiError::new(
            ProblemKind::NotFound,
            format!(
                "run {id} has no committed files ({}{})",
                run.state,
                run.outcome
                    .as_deref()
                    .map(|o| format!(", {o}"))
                    .unwrap_or_default()
            ),
        )
        .titled("No files")
    };
    let (Some(seq), Some("committed")) = (run.sequence, run.outcome.as_deref()) else {
        return Err(not_committed());
    };
    let topic = app.topic(&run.topic)?;
    let manifest = manifest(&app, &topic, seq)
        .await?
        .ok_or_else(not_committed)?;
    Ok(Json(manifest.files.iter().map(RunFileView::from).collect()))
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
