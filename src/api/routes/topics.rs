//! Topics: the list, one topic's configuration, its sample events and
//! warehouse SQL, and reloading them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use tracing::warn;

use materializer_core::ErrorClass;
use materializer_core::commit::Ledger;
use materializer_core::config::Topic;
use materializer_core::source::Source;
use materializer_core::warehouse::{self, setup_sql};

use crate::api::columns::columns;
use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::sources::requested_source;
use crate::api::state::AppState;

/// All topics: keys, format, state (with the error's place when the files
/// do not load) and the newest committed run.
#[utoipa::path(
    get,
    path = "/topics",
    tag = "topics",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<TopicSummary>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn list_topics(State(app): State<Arc<AppState>>) -> Json<Vec<TopicSummary>> {
    let summaries: Vec<(TopicSummary, Option<Arc<Topic>>)> = {
        let view = app.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = view.topics.keys().chain(view.broken.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let topic = view.topics.get(name).cloned();
                let broken = view.broken.get(name);
                let summary = TopicSummary {
                    name: name.clone(),
                    event_type: topic.as_ref().map(|t| t.event_type().to_string()),
                    status: match (&topic, broken) {
                        (Some(_), None) => "ok",
                        (Some(_), Some(_)) => "stale",
                        (None, _) => "broken",
                    }
                    .into(),
                    error: broken.map(|b| b.reason.clone()),
                    error_at: broken.and_then(|b| b.at.as_ref()).map(ErrorAtView::from),
                    running: app.runs.active_run_of(name).is_some(),
                    partitioning_key: topic
                        .as_ref()
                        .map(|t| t.compaction().partitioning_key.clone()),
                    ordering_key: topic.as_ref().map(|t| t.compaction().ordering_key.clone()),
                    format: topic
                        .as_ref()
                        .map(|t| t.output().format.extension().to_string()),
                    last_run: None,
                };
                (summary, topic)
            })
            .collect()
    };
    let with_runs = summaries.into_iter().map(|(mut summary, topic)| {
        let app = app.clone();
        async move {
            if let Some(topic) = topic {
                summary.last_run = last_run(&app, &topic).await;
            }
            summary
        }
    });
    Json(futures::future::join_all(with_runs).await)
}

/// The newest committed run of `topic`. A list of topics is still worth
/// answering when one output location cannot be read: that one is logged
/// and shown without its last run.
async fn last_run(app: &AppState, topic: &Topic) -> Option<LastRunView> {
    let read = async {
        let output = app.env.output(topic).map_err(ApiError::from)?;
        Ledger::new(output, topic.name())
            .latest()
            .await
            .map_err(ApiError::from)
    };
    match read.await {
        Ok(manifest) => manifest.as_ref().map(LastRunView::from),
        Err(e) => {
            warn!(topic = %topic.name(), error = ?e, "cannot read the last committed run");
            None
        }
    }
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
pub(crate) async fn get_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<TopicDetail>, ApiError> {
    let topic = app.topic(&name)?;
    Ok(Json(topic_detail(&app, &topic)))
}

/// What `GET /topics/{topic}` answers for `topic`.
pub(crate) fn topic_detail(app: &AppState, topic: &Topic) -> TopicDetail {
    let error = app
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .broken
        .get(topic.name())
        .map(|b| b.reason.clone());
    TopicDetail {
        name: topic.name().to_string(),
        event_type: topic.event_type().to_string(),
        partitioning_key: topic.compaction().partitioning_key.clone(),
        ordering_key: topic.compaction().ordering_key.clone(),
        output: serde_json::to_value(topic.output()).unwrap_or_default(),
        source: serde_json::to_value(topic.source()).unwrap_or_default(),
        schema_origin: topic.schema().origin.clone(),
        events: columns(&topic.schema().events),
        schema_warnings: topic.schema().warnings.clone(),
        mapping_sql: topic.mapping().text.clone(),
        mapping_version: mapping_version(&topic.mapping().text),
        output_view: topic.mapping().output_view().to_string(),
        output_columns: columns(topic.output_schema()),
        generated_sql: warehouse::explain(topic),
        error,
    }
}

/// The first events of the topic's source, as a preview without events reads
/// them (a live Nakadi is read with cursors: nothing is committed).
#[utoipa::path(
    get,
    path = "/topics/{topic}/sample",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name"), SampleQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SampleView),
        (status = 404, body = Problem),
        (status = 422, description = "The topic never loaded, or the source named is not under the recordings folder", body = Problem),
        (status = 502, description = "The topic's source could not be read", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn topic_sample(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<SampleQuery>,
) -> Result<Json<SampleView>, ApiError> {
    let topic = app.topic(&name)?;
    let most = app.settings.preview_max_events;
    let limit = match query.limit {
        None => 20.min(most),
        Some(n) if (1..=most as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::new(
                ProblemKind::BadRequest,
                format!("limit {n} is out of range: 1 to {most} events"),
            ));
        }
    };
    let source = requested_source(&app.env.recordings, query.source.as_deref())?;
    let source = app.env.sample_source(&topic, source.as_deref())?;
    let events =
        materializer_core::preview::sample_events(&source, limit, app.settings.preview_timeout)
            .await?;
    Ok(Json(SampleView {
        events: events.iter().map(|raw| as_json(raw)).collect(),
        lines: events
            .iter()
            .map(|raw| String::from_utf8_lossy(raw).into_owned())
            .collect(),
        source: describe(&source, &topic),
    }))
}

/// An event as JSON; one that is not JSON stays its text.
fn as_json(raw: &[u8]) -> serde_json::Value {
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(raw).into_owned()))
}

pub(crate) fn describe(source: &Source, topic: &Topic) -> String {
    match source {
        Source::Recorded(recorded) => format!("the files at {}", recorded.root().display()),
        Source::Nakadi(nakadi) => format!(
            "Nakadi event type {} at {}",
            topic.event_type(),
            nakadi.client.settings.url
        ),
    }
}

/// The import SQL of the topic for a warehouse: staging tables, the view of
/// the newest rows and the merge (as `materializer warehouse-sql` prints it).
#[utoipa::path(
    get,
    path = "/topics/{topic}/warehouse-sql",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name"), WarehouseQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = WarehouseSqlView),
        (status = 404, body = Problem),
        (status = 422, description = "The topic never loaded, or its output has no form for this warehouse", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn warehouse_sql(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<WarehouseQuery>,
) -> Result<Json<WarehouseSqlView>, ApiError> {
    let topic = app.topic(&name)?;
    let dialect = match query.dialect {
        Some(dialect) => dialect,
        None => warehouse::dialect_named(DEFAULT_DIALECT)
            .map_err(|e| ApiError::class(ErrorClass::Internal, e.to_string()))?,
    };
    Ok(Json(WarehouseSqlView {
        dialect: dialect.name().to_string(),
        sql: setup_sql(&topic, dialect, 1)?,
    }))
}

/// Re-reads the topic folders (as SIGHUP does).
#[utoipa::path(
    post,
    path = "/reload",
    tag = "topics",
    security(("bearer" = [])),
    responses((status = 200, body = ReloadReport), (status = 500, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn reload(
    State(app): State<Arc<AppState>>,
) -> Result<Json<ReloadReport>, ApiError> {
    app.reload()
        .await
        .map(Json)
        .map_err(|e| ApiError::from(e).titled("Reload failed"))
}
