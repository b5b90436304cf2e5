//! Topics: the list, one topic's configuration, and reloading them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use crate::api::error::{ApiError, Problem};
use crate::api::models::*;
use crate::api::state::AppState;

/// All topics and their state.
#[utoipa::path(
    get,
    path = "/topics",
    tag = "topics",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<TopicSummary>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn list_topics(State(app): State<Arc<AppState>>) -> Json<Vec<TopicSummary>> {
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
                    event_type: topic.map(|t| t.event_type().to_string()),
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
    let error = app
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .broken
        .get(&name)
        .cloned();
    Ok(Json(TopicDetail {
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
        output_view: topic.mapping().output_view().to_string(),
        output_columns: columns(topic.output_schema()),
        generated_sql: topic.explain(),
        error,
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
