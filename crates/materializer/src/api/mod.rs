//! The HTTP API: schedulers trigger, watch and stop runs; analysts list topics
//! and preview mappings. Runs go through the same [`run::execute`] as the CLI.
//!
//! Every route but `/healthz`, `/metrics` and `/openapi.json` needs a bearer
//! token. Errors are problem documents (`application/problem+json`) carrying
//! the messages the CLI prints. The OpenAPI document is generated from the
//! handlers below, so it lists exactly the routes that are served.

pub mod auth;
pub mod metrics;
pub mod runs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::auth::Tokens;
use self::metrics::Metrics;
use self::runs::{RunRegistry, RunView};
use materializer_core::config::{Catalog, Topic};
use materializer_core::mapping::{Engine, MappingError};
use materializer_core::source::{NakadiClient, NakadiSource, PartitionRange, Source};
use materializer_core::preview::{PreviewError, PreviewRejected, PreviewTable, preview};
use materializer_core::run::{Ledger, RunCounts, RunEnvironment};

/// How the API serves.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub tokens: Tokens,
    /// Runs executing at once; more wait in a queue.
    pub max_concurrent_runs: usize,
    /// How long a shutdown waits for running runs before it stops them.
    pub shutdown_deadline: Duration,
    /// Longest time one preview may take.
    pub preview_timeout: Duration,
    /// Most sample events a preview reads from the topic's source.
    pub preview_max_events: usize,
}

/// A topic's configuration as served: the last good one, and why the newest
/// files do not load, if they do not.
#[derive(Default)]
pub struct TopicsView {
    pub topics: BTreeMap<String, Arc<Topic>>,
    /// Topics whose files do not load now, with the reason; when they loaded
    /// before, `topics` still holds their last good configuration.
    pub broken: BTreeMap<String, String>,
}

/// Everything the handlers share.
pub struct AppState {
    pub env: RunEnvironment,
    /// A separate, smaller engine for previews: a runaway draft cannot take the runs' memory.
    pub preview_engine: Engine,
    pub sql_dir: PathBuf,
    pub nakadi: Option<Arc<NakadiClient>>,
    pub settings: ApiSettings,
    pub topics: RwLock<TopicsView>,
    pub runs: RunRegistry,
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: no new runs are accepted.
    pub shutdown: CancellationToken,
    /// This API's OpenAPI document, built with the routes.
    pub openapi: std::sync::OnceLock<utoipa::openapi::OpenApi>,
}

impl AppState {
    pub async fn new(
        env: RunEnvironment,
        preview_engine: Engine,
        sql_dir: PathBuf,
        nakadi: Option<Arc<NakadiClient>>,
        settings: ApiSettings,
    ) -> Result<Arc<AppState>, String> {
        let state = Arc::new(AppState {
            runs: RunRegistry::new(settings.max_concurrent_runs),
            env,
            preview_engine,
            sql_dir,
            nakadi,
            settings,
            topics: RwLock::new(TopicsView::default()),
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            openapi: std::sync::OnceLock::new(),
        });
        state.reload().await?;
        Ok(state)
    }

    /// Re-reads the topic folders. A topic that no longer loads keeps its last
    /// good configuration and the reason is reported.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let catalog = Catalog::load(&self.sql_dir, &self.env.engine, self.nakadi.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let mut view = self.topics.write().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::new();
        let mut topics = catalog.topics;
        for name in catalog.broken.keys() {
            if let Some(last_good) = view.topics.get(name) {
                topics.insert(name.clone(), last_good.clone());
                kept.push(name.clone());
            }
        }
        for (name, reason) in &catalog.broken {
            warn!(topic = %name, reason, "topic does not load");
        }
        *view = TopicsView {
            topics,
            broken: catalog.broken.clone(),
        };
        Ok(ReloadReport {
            topics: view.topics.keys().cloned().collect(),
            broken: catalog.broken,
            kept_last_good: kept,
        })
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, ApiError> {
        let view = self.topics.read().unwrap_or_else(|e| e.into_inner());
        view.topics
            .get(name)
            .cloned()
            .ok_or_else(|| match view.broken.get(name) {
                Some(reason) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Topic does not load",
                    reason.clone(),
                ),
                None => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "Unknown topic",
                    format!(
                        "unknown topic {name:?}; topics: {}",
                        view.topics.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
            })
    }
}

/// A problem document (RFC 9457).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Errors in SQL, with their position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SqlError>,
}

/// An error at a place in SQL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SqlError {
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    title: &'static str,
    detail: String,
    errors: Vec<SqlError>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn mapping(error: &MappingError) -> ApiError {
        let sql = match error {
            MappingError::At { at, message, .. } => SqlError {
                line: Some(at.line),
                column: Some(at.column),
                message: message.clone(),
            },
            other => SqlError {
                line: None,
                column: None,
                message: other.to_string(),
            },
        };
        ApiError {
            errors: vec![sql],
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The mapping is not valid",
                error.to_string(),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("https://httpstatuses.io/{}", self.status.as_u16()),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Checks the bearer token: 401 without one, 403 with a wrong one.
async fn require_token(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if app.settings.tokens.is_empty() {
        return next.run(request).await; // loopback without tokens, announced at start
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => ApiError {
            headers: vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a bearer token is required",
            )
        }
        .into_response(),
        Some(token) if !app.settings.tokens.accepts(token.trim()) => ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the bearer token is not accepted",
        )
        .into_response(),
        Some(_) => next.run(request).await,
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub runs_active: usize,
    pub runs_queued: usize,
}

/// Liveness and load.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz(State(app): State<Arc<AppState>>) -> Json<Health> {
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
async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
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
async fn openapi_json(State(app): State<Arc<AppState>>) -> Json<utoipa::openapi::OpenApi> {
    Json(app.openapi.get().cloned().unwrap_or_default())
}

/// A topic in the list.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub event_type: Option<String>,
    /// `ok`, `stale` (its files do not load now; the last good configuration is served)
    /// or `broken` (never loaded).
    pub status: String,
    pub error: Option<String>,
    pub running: bool,
}

/// All topics and their state.
#[utoipa::path(
    get,
    path = "/topics",
    tag = "topics",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<TopicSummary>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
async fn list_topics(State(app): State<Arc<AppState>>) -> Json<Vec<TopicSummary>> {
    let view = app.topics.read().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&String> = view.topics.keys().chain(view.broken.keys()).collect();
    names.sort();
    names.dedup();
    Json(
        names
            .into_iter()
            .map(|name| {
                let topic = view.topics.get(name);
                let error = view.broken.get(name).cloned();
                TopicSummary {
                    name: name.clone(),
                    event_type: topic.map(|t| t.event_type.clone()),
                    status: match (topic, &error) {
                        (Some(_), None) => "ok",
                        (Some(_), Some(_)) => "stale",
                        (None, _) => "broken",
                    }
                    .into(),
                    error,
                    running: app.runs.active_run_of(name).is_some(),
                }
            })
            .collect(),
    )
}

/// A column.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ColumnView {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

fn columns(schema: &arrow::datatypes::Schema) -> Vec<ColumnView> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnView {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// A topic's configuration, schema and SQL.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicDetail {
    pub name: String,
    pub event_type: String,
    pub partitioning_key: Vec<String>,
    pub ordering_key: String,
    /// `[output]` of topic.toml.
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
    /// `[source]` of topic.toml.
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    pub schema_origin: String,
    /// Columns of `events`.
    pub events: Vec<ColumnView>,
    /// Parts of the JSON schema without a table form.
    pub schema_warnings: Vec<String>,
    /// The analyst's mapping.
    pub mapping_sql: String,
    pub output_view: String,
    /// Columns of the files.
    pub output_columns: Vec<ColumnView>,
    /// The whole SQL chain a run executes.
    pub generated_sql: String,
    /// Why the topic's files do not load now (the configuration shown is the last good one).
    pub error: Option<String>,
}

/// A topic: its configuration, the schema of `events`, the mapping and the generated SQL.
#[utoipa::path(
    get,
    path = "/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TopicDetail),
        (status = 404, body = Problem),
        (status = 422, description = "The topic never loaded", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
async fn get_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<TopicDetail>, ApiError> {
    let topic = app.topic(&name)?;
    let error = app
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .broken
        .get(&name)
        .cloned();
    Ok(Json(TopicDetail {
        name: topic.name.clone(),
        event_type: topic.event_type.clone(),
        partitioning_key: topic.compaction.partitioning_key.clone(),
        ordering_key: topic.compaction.ordering_key.clone(),
        output: serde_json::to_value(&topic.output).unwrap_or_default(),
        source: serde_json::to_value(&topic.source).unwrap_or_default(),
        schema_origin: topic.schema.origin.clone(),
        events: columns(&topic.schema.events),
        schema_warnings: topic.schema.warnings.clone(),
        mapping_sql: topic.mapping.text.clone(),
        output_view: topic.mapping.output_view().to_string(),
        output_columns: columns(&topic.output_schema),
        generated_sql: topic.explain(),
        error,
    }))
}

/// What a preview runs on.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Mapping SQL to try instead of the saved one (CREATE VIEW statements over `events`).
    pub mapping: Option<String>,
    /// Sample events; without them, the first `limit` events of the topic's source.
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Option<Vec<serde_json::Value>>,
    /// How many events to read from the source when no events are given (default 20).
    pub limit: Option<usize>,
}

/// Rows a mapping produces from sample events.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PreviewResponse {
    pub main: TableView,
    pub correction: TableView,
    pub rejected: Vec<RejectedView>,
    pub counts: CountsView,
}

/// Rows of one output.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TableView {
    pub columns: Vec<String>,
    /// One JSON object per row, keyed by column.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
}

impl From<PreviewTable> for TableView {
    fn from(table: PreviewTable) -> Self {
        TableView {
            columns: table.columns,
            rows: table.rows,
        }
    }
}

/// A sample event that did not decode.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RejectedView {
    /// Position of the event in the request (0-based).
    pub index: usize,
    pub reason: String,
}

impl From<PreviewRejected> for RejectedView {
    fn from(rejected: PreviewRejected) -> Self {
        RejectedView {
            index: rejected.index,
            reason: rejected.reason,
        }
    }
}

/// Counts of a run or a preview.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CountsView {
    pub events_read: u64,
    pub events_rejected: u64,
    pub main_input: u64,
    pub superseded: u64,
    pub correction_events: u64,
    pub main_rows: u64,
    pub correction_rows: u64,
}

impl From<&RunCounts> for CountsView {
    fn from(c: &RunCounts) -> Self {
        CountsView {
            events_read: c.events_read,
            events_rejected: c.events_rejected,
            main_input: c.main_input,
            superseded: c.superseded,
            correction_events: c.correction_events,
            main_rows: c.main_rows,
            correction_rows: c.correction_rows,
        }
    }
}

/// Applies the saved or a draft mapping to sample events and answers the MAIN
/// and CORRECTION rows. Nothing is written.
#[utoipa::path(
    post,
    path = "/topics/{topic}/preview",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = PreviewRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = PreviewResponse),
        (status = 404, body = Problem),
        (status = 422, description = "The mapping is not valid (errors with line and column) or the query failed", body = Problem),
        (status = 408, description = "The preview took longer than allowed", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
async fn preview_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Option<Json<PreviewRequest>>,
) -> Result<Json<PreviewResponse>, ApiError> {
    let topic = app.topic(&name)?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let events: Vec<Bytes> = match request.events {
        Some(events) => events
            .iter()
            .map(|e| Bytes::from(serde_json::to_vec(e).unwrap_or_default()))
            .collect(),
        None => {
            let limit = request
                .limit
                .unwrap_or(20)
                .min(app.settings.preview_max_events);
            sample_events(&app, &topic, limit).await?
        }
    };
    if events.len() > app.settings.preview_max_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many sample events",
            format!(
                "a preview takes at most {} events",
                app.settings.preview_max_events
            ),
        ));
    }
    let work = preview(
        &app.preview_engine,
        &topic,
        request.mapping.as_deref(),
        &events,
    );
    let outcome = match tokio::time::timeout(app.settings.preview_timeout, work).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Preview timed out",
                format!(
                    "the preview took longer than {} s",
                    app.settings.preview_timeout.as_secs_f64()
                ),
            ));
        }
        Ok(Err(PreviewError::Mapping(e))) => return Err(ApiError::mapping(&e)),
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The preview failed",
                e.to_string(),
            ));
        }
        Ok(Ok(outcome)) => outcome,
    };
    Ok(Json(PreviewResponse {
        counts: CountsView::from(&outcome.counts),
        main: outcome.main.into(),
        correction: outcome.correction.into(),
        rejected: outcome.rejected.into_iter().map(Into::into).collect(),
    }))
}

/// The first `limit` events of a topic's source (cursors mode, nothing committed).
async fn sample_events(
    app: &AppState,
    topic: &Topic,
    limit: usize,
) -> Result<Vec<Bytes>, ApiError> {
    let source = match app.env.source(topic, None) {
        Ok(Source::Nakadi(n)) => Source::Nakadi(NakadiSource {
            subscription: None,
            client: n.client.clone(),
            event_type: n.event_type.clone(),
        }),
        Ok(other) => other,
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "No sample events",
                e.to_string(),
            ));
        }
    };
    let source_error = |e: materializer_core::source::SourceError| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Cannot read sample events",
            format!("topic {}: {e}", topic.name),
        )
    };
    let partitions = source.partitions().await.map_err(source_error)?;
    let ranges: Vec<PartitionRange> = materializer_core::source::plan_ranges(&partitions, &BTreeMap::new())
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    let mut stream = source.stream(&ranges);
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + app.settings.preview_timeout;
    while events.len() < limit {
        let mut next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(batch)) => batch.map_err(source_error)?,
            Ok(None) | Err(_) => break,
        };
        next.frame().map_err(|e| {
            source_error(materializer_core::source::SourceError::Partition {
                partition: next.partition.to_string(),
                message: format!("{}: {e}", next.origin_or_unknown()),
            })
        })?;
        for i in 0..next.event_count() {
            if events.len() < limit {
                events.push(next.line.slice(next.events[i].clone()));
            }
        }
    }
    Ok(events)
}

/// What a reload found.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    /// Topics served now.
    pub topics: Vec<String>,
    /// Topics whose files do not load, with the reason.
    pub broken: BTreeMap<String, String>,
    /// Broken topics still served with their last good configuration.
    pub kept_last_good: Vec<String>,
}

/// Re-reads the topic folders (as SIGHUP does).
#[utoipa::path(
    post,
    path = "/reload",
    tag = "topics",
    security(("bearer" = [])),
    responses((status = 200, body = ReloadReport), (status = 500, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem))
)]
async fn reload(State(app): State<Arc<AppState>>) -> Result<Json<ReloadReport>, ApiError> {
    app.reload()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Reload failed", e))
}

/// Answer to a trigger.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Triggered {
    pub id: String,
    pub status_url: String,
    pub state: String,
}

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
async fn trigger_run(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Shutting down",
            "the server is shutting down",
        ));
    }
    let topic = app.topic(&name)?;
    let id = runs::start(&app, topic)?;
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
async fn get_run(
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
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "Unknown run",
        format!("no run {id:?}"),
    ))
}

async fn committed_run(
    app: &AppState,
    topic: &Topic,
    seq: u64,
) -> Result<Option<RunView>, ApiError> {
    let output = app.env.output(topic).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Output not available",
            e.to_string(),
        )
    })?;
    let manifest = Ledger::new(output, &topic.name)
        .manifest(seq)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "Output not readable",
                format!("topic {}: {e}", topic.name),
            )
        })?;
    Ok(manifest.map(|m| RunView::from_manifest(&m)))
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many runs (default 20).
    pub limit: Option<usize>,
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
async fn list_runs(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let topic = app.topic(&name)?;
    let limit = query.limit.unwrap_or(20).clamp(1, 1000);
    let mut views = app.runs.views_of(&name);
    let known: std::collections::HashSet<u64> = views.iter().filter_map(|v| v.sequence).collect();
    let output = app.env.output(&topic).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Output not available",
            e.to_string(),
        )
    })?;
    let ledger = Ledger::new(output, &topic.name);
    let unreadable = |e: materializer_core::run::LedgerError| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Output not readable",
            format!("topic {}: {e}", topic.name),
        )
    };
    let sequences = ledger.committed_sequences().await.map_err(unreadable)?;
    for seq in sequences
        .into_iter()
        .rev()
        .filter(|s| !known.contains(s))
        .take(limit)
    {
        if let Some(manifest) = ledger.manifest(seq).await.map_err(unreadable)? {
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
async fn stop_run(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = app.runs.stop(&id)?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Gives every response without a description its status' reason phrase
/// (OpenAPI requires one).
fn describe_responses(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Response")
                        .to_string();
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "materializer",
        description = "Trigger, watch and stop runs that materialize Nakadi event types into warehouse files; list topics and preview mappings."
    ),
    modifiers(&SecurityAddon),
    tags(
        (name = "runs", description = "Runs of a topic"),
        (name = "topics", description = "Topics, their configuration and mapping previews"),
        (name = "operations", description = "Health, metrics and this description")
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI description.
pub fn router(app: Arc<AppState>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let protected: OpenApiRouter<Arc<AppState>> = OpenApiRouter::new()
        .routes(routes!(list_topics))
        .routes(routes!(get_topic))
        .routes(routes!(preview_topic))
        .routes(routes!(trigger_run, list_runs))
        .routes(routes!(get_run))
        .routes(routes!(stop_run))
        .routes(routes!(reload))
        .layer(middleware::from_fn_with_state(app.clone(), require_token));
    let public: OpenApiRouter<Arc<AppState>> = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected)
        .merge(public)
        .split_for_parts();
    describe_responses(&mut doc);
    let _ = app.openapi.set(doc.clone());
    (router.with_state(app), doc)
}

/// Serves until `stop` fires, then shuts down gracefully: no new runs, running
/// runs get `shutdown_deadline` to finish, then are stopped without committing.
pub async fn serve(
    app: Arc<AppState>,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (router, _) = router(app.clone());
    let shutdown = {
        let app = app.clone();
        async move {
            stop.cancelled().await;
            app.shutdown.cancel();
            let (active, queued) = app.runs.load();
            info!(
                active,
                queued,
                deadline_s = app.settings.shutdown_deadline.as_secs(),
                "shutting down"
            );
            app.runs.cancel_queued();
            let deadline = tokio::time::Instant::now() + app.settings.shutdown_deadline;
            while app.runs.load().0 > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if app.runs.load().0 > 0 {
                warn!(
                    "shutdown deadline reached: stopping the runs still going (nothing of them is committed)"
                );
                app.runs.cancel_all();
                while app.runs.load().0 > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether an address is only reachable from this machine.
pub fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}
