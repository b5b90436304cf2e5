//! A committed run's full record: its manifest, and each of its files, the
//! first rows of one or the whole file. Only files the run's manifest lists
//! are served, found by their path exactly as listed: a path is never
//! joined onto anything a request says.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use datafusion::object_store::ObjectStoreExt;

use materializer_core::commit::{Ledger, Manifest, ManifestFile};
use materializer_core::config::Topic;
use materializer_core::sink::OutputLocation;

use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::files::{FileForm, head};
use crate::api::models::*;
use crate::api::routes::runs::find_run;
use crate::api::state::AppState;

/// Largest file served whole (it is streamed, never held in memory).
pub(crate) const DOWNLOAD_BYTES: u64 = 1 << 30;

/// A committed run: its topic, manifest and output location.
struct Committed {
    topic: Arc<Topic>,
    manifest: Manifest,
    output: OutputLocation,
}

async fn committed(app: &AppState, id: &str) -> Result<Committed, ApiError> {
    let run = find_run(app, id).await?;
    let not_committed = || {
        ApiError::new(
            ProblemKind::NotFound,
            format!(
                "run {id} committed nothing ({}{}): it has no manifest or files",
                run.state,
                run.outcome
                    .as_deref()
                    .map(|o| format!(", {o}"))
                    .unwrap_or_default()
            ),
        )
        .titled("Nothing committed")
    };
    let (Some(seq), Some("committed")) = (run.sequence, run.outcome.as_deref()) else {
        return Err(not_committed());
    };
    let topic = app.topic(&run.topic)?;
    let output = app.env.output(&topic)?;
    let manifest = Ledger::new(output.clone(), topic.name())
        .manifest(seq)
        .await?
        .ok_or_else(not_committed)?;
    Ok(Committed {
        topic,
        manifest,
        output,
    })
}

impl Committed {
    /// The file the manifest lists at `path`.
    fn file(&self, path: &str) -> Result<&ManifestFile, ApiError> {
        self.manifest
            .files
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| {
                ApiError::new(
                    ProblemKind::NotFound,
                    format!(
                        "run {}@{} has no file {path:?}; its files are listed by GET /runs/{{id}}/files",
                        self.manifest.topic, self.manifest.sequence
                    ),
                )
                .titled("No such file")
            })
    }

    fn location(&self, file: &ManifestFile) -> datafusion::object_store::path::Path {
        Ledger::new(self.output.clone(), self.topic.name())
            .layout()
            .resolve(&file.path)
    }

    /// How the run wrote its files: its recorded shape, else the topic now.
    fn form(&self, file: &ManifestFile) -> FileForm {
        let output = match &self.manifest.shape {
            Some(shape) => &shape.output,
            None => self.topic.output(),
        };
        FileForm::of(file.kind, &file.path, output)
    }
}

/// The manifest of a committed run as it was written: its cursors, every
/// file with rows, bytes and SHA-256, the counts and the key state.
#[utoipa::path(
    get,
    path = "/runs/{id}/manifest",
    tag = "runs",
    params(("id" = String, Path, description = "Run id (as a trigger answers it, or <topic>@<sequence> for committed runs)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The manifest (JSON)", body = Object),
        (status = 404, description = "No such run, or it committed nothing", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn run_manifest(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let run = committed(&app, &id).await?;
    let value = serde_json::to_value(&run.manifest).map_err(|e| {
        ApiError::class(
            materializer_core::ErrorClass::Internal,
            format!("the manifest cannot be shown: {e}"),
        )
    })?;
    Ok(Json(value))
}

/// The first rows of a file of a committed run (at most 200), read back as
/// the run wrote it: CSV in the topic's dialect, Parquet, or the NDJSON of
/// rejected events. Text files are read up to their first 4 MiB, Parquet
/// files of up to 64 MiB.
#[utoipa::path(
    get,
    path = "/runs/{id}/files/preview",
    tag = "runs",
    params(("id" = String, Path, description = "Run id (as a trigger answers it, or <topic>@<sequence> for committed runs)"), FileQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = FilePreview),
        (status = 404, description = "No such run or file, or the run committed nothing", body = Problem),
        (status = 413, description = "The file is too large to preview here", body = Problem),
        (status = 502, description = "The output location could not be read", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn preview_file(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Result<Json<FilePreview>, ApiError> {
    let rows = match query.rows {
        None => 20,
        Some(n @ 1..=200) => n as usize,
        Some(n) => {
            return Err(ApiError::new(
                ProblemKind::BadRequest,
                format!("rows {n} is out of range: 1 to 200"),
            ));
        }
    };
    let run = committed(&app, &id).await?;
    let file = run.file(&query.path)?;
    let form = run.form(file);
    let shown = head(
        &run.output,
        &run.location(file),
        &file.path,
        file.bytes,
        &form,
        rows,
    )
    .await?;
    Ok(Json(FilePreview {
        path: file.path.clone(),
        kind: file.kind.as_str().to_string(),
        format: form.name().to_string(),
        columns: shown.columns,
        rows: shown.rows,
        truncated: shown.more,
        total_rows: file.rows,
    }))
}

/// A file of a committed run, whole, as an attachment (up to 1 GiB; it is
/// streamed from the output location).
#[utoipa::path(
    get,
    path = "/runs/{id}/files/content",
    tag = "runs",
    params(("id" = String, Path, description = "Run id (as a trigger answers it, or <topic>@<sequence> for committed runs)"), FileQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such run or file, or the run committed nothing", body = Problem),
        (status = 413, description = "The file is larger than the server sends", body = Problem),
        (status = 502, description = "The output location could not be read", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn download_file(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let run = committed(&app, &id).await?;
    let file = run.file(&query.path)?;
    if file.bytes > DOWNLOAD_BYTES {
        return Err(ApiError::new(
            ProblemKind::TooLarge,
            format!(
                "{} has {} bytes; the server sends files of up to {DOWNLOAD_BYTES} bytes: read it from the output location",
                file.path, file.bytes
            ),
        )
        .titled("Too large to download"));
    }
    let got = run
        .output
        .store
        .get(&run.location(file))
        .await
        .map_err(|e| {
            ApiError::class(
                materializer_core::ErrorClass::SinkUnavailable,
                format!("cannot read {} from the output location: {e}", file.path),
            )
        })?;
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    // Only characters that need no quoting in a header's quoted string.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut response = Body::from_stream(got.into_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.bytes));
    Ok(response)
}
