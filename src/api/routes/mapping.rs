//! Saving a topic's mapping from the console (only with
//! `serve --allow-mapping-edits`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use tracing::info;

use materializer_core::config::{Topic, save_mapping};

use crate::api::auth::Caller;
use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::routes::topics::topic_detail;
use crate::api::state::AppState;

/// Checks a mapping as a reload would, then writes it to
/// `sql/<topic>/mapping.sql` (the text it replaces is kept in
/// `mapping.sql.previous`) and serves the topic with it.
#[utoipa::path(
    put,
    path = "/topics/{topic}/mapping",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = MappingRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Saved; the topic as served now", body = TopicDetail),
        (status = 403, description = "The token is not accepted, or this server does not save mappings (`serve --allow-mapping-edits`)", body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "The mapping is not valid (errors with line and column); nothing was written", body = Problem),
        (status = 401, body = Problem)
    )
)]
pub(crate) async fn put_mapping(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<MappingRequest>, JsonRejection>,
) -> Result<Json<TopicDetail>, ApiError> {
    if !app.settings.allow_mapping_edits {
        return Err(ApiError::new(
            ProblemKind::Forbidden,
            "this server does not save mappings; start it with `serve --allow-mapping-edits` \
             (or allow_mapping_edits = true in its --config file)",
        )
        .titled("Mapping edits are not allowed"));
    }
    let topic = app.topic(&name)?;
    let Json(request) = body?;
    // One save at a time: the check and the write see the same files.
    let _edit = app.edits.lock().await;
    let checked = Topic::load_with_mapping(
        topic.dir(),
        &app.env.engine,
        app.nakadi.as_deref(),
        &request.mapping,
    )
    .await
    .map_err(|e| ApiError::from(e).titled("The mapping is not valid"))?;
    let saved = save_mapping(topic.dir(), &request.mapping)
        .map_err(|e| ApiError::from(e).titled("The mapping could not be saved"))?;
    let served = app.install(checked);
    info!(
        topic = %name,
        by = %caller,
        file = %saved.path.display(),
        previous = saved.previous.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "mapping saved"
    );
    Ok(Json(topic_detail(&app, &served)))
}
