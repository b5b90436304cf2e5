//! A topic's mapping file: read as it is on disk (also when the topic does
//! not load, so that it can be fixed), and saved from the console (only
//! with `serve --allow-mapping-edits`), refusing to replace a file that
//! changed since the text being replaced was read.

use std::path::Path as FilePath;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use tracing::info;

use materializer_core::ErrorClass;
use materializer_core::config::{MAPPING_FILE, Topic, save_mapping};

use crate::api::auth::Caller;
use crate::api::error::{ApiError, CurrentMapping, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::routes::topics::topic_detail;
use crate::api::state::AppState;

/// The text of `dir/mapping.sql` now; a missing file is empty (the topic
/// then does not load, and says so).
fn read_mapping(dir: &FilePath) -> Result<String, ApiError> {
    let path = dir.join(MAPPING_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(
            ApiError::class(ErrorClass::Config, format!("{}: {e}", path.display()))
                .titled("The mapping cannot be read"),
        ),
    }
}

/// The topic's `mapping.sql` as it is on disk, its version, and why the
/// topic does not load (with the place in the mapping, when it is there).
/// Answered for topics that never loaded too.
#[utoipa::path(
    get,
    path = "/topics/{topic}/mapping",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = MappingFileView),
        (status = 404, body = Problem),
        (status = 422, description = "The file cannot be read", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn get_mapping(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<MappingFileView>, ApiError> {
    let files = app.topic_files(&name)?;
    let text = read_mapping(&files.dir)?;
    let error_at = files
        .broken
        .as_ref()
        .and_then(|b| b.at.as_ref())
        .map(ErrorAtView::from);
    let error = files.broken.as_ref().map(|b| b.reason.clone());
    Ok(Json(MappingFileView {
        topic: name,
        version: mapping_version(&text),
        served_version: files
            .served
            .as_ref()
            .map(|t| mapping_version(&t.mapping().text)),
        status: files.status().to_string(),
        errors: error
            .as_deref()
            .map(|e| mapping_errors(e, error_at.as_ref()))
            .unwrap_or_default(),
        error,
        error_at,
        mapping: text,
    }))
}

/// Checks a mapping as a reload would, then writes it to
/// `sql/<topic>/mapping.sql` (the text it replaces is kept in
/// `mapping.sql.previous`) and serves the topic with it. A topic whose files
/// do not load is saved the same way: once they load with this mapping, it
/// is served. With `base_version`, a file that holds another text than that
/// version is left as it is (`409`, with the file's text and version).
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
        (status = 409, description = "The file changed since `base_version` was read; nothing was written (`current` holds the file's text and version)", body = Problem),
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
    let files = app.topic_files(&name)?;
    let Json(request) = body?;
    // One save at a time: the check and the write see the same files.
    let _edit = app.edits.lock().await;
    if let Some(base) = &request.base_version {
        let now = read_mapping(&files.dir)?;
        let version = mapping_version(&now);
        if *base != version {
            return Err(ApiError::class(
                ErrorClass::Conflict,
                format!(
                    "{} changed since the text this save replaces was loaded (it is {version} now, not {base}); nothing was written: compare both, then save again with base_version {version} to replace it",
                    files.dir.join(MAPPING_FILE).display()
                ),
            )
            .titled("The mapping changed on the server")
            .with_current(CurrentMapping {
                mapping: now,
                version,
            }));
        }
    }
    let checked = Topic::load_with_mapping(
        &files.dir,
        &app.env.engine,
        app.nakadi.as_deref(),
        &request.mapping,
    )
    .await
    .map_err(|e| ApiError::from(e).titled("The mapping is not valid"))?;
    let saved = save_mapping(&files.dir, &request.mapping)
        .map_err(|e| ApiError::from(e).titled("The mapping could not be saved"))?;
    let served = app.install(checked);
    info!(
        topic = %name,
        by = %caller,
        file = %saved.path.display(),
        previous = saved.previous.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        fixed = files.broken.is_some(),
        "mapping saved"
    );
    Ok(Json(topic_detail(&app, &served)))
}
