//! Previews: a mapping applied to sample events, nothing written.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;

use materializer_core::config::Topic;
use materializer_core::preview::{Draft, PreviewError, PreviewLimits, preview_bounded};

use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::sources::requested_source;
use crate::api::state::AppState;

/// Applies the saved or a draft mapping to sample events and answers the MAIN
/// and CORRECTION rows. Nothing is written.
#[utoipa::path(
    post,
    path = "/topics/{topic}/preview",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = Option<PreviewRequest>,
    security(("bearer" = [])),
    responses(
        (status = 200, body = PreviewResponse),
        (status = 404, body = Problem),
        (status = 422, description = "The mapping is not valid (errors with line and column), the query failed, or the source named is not under the recordings folder", body = Problem),
        (status = 408, description = "The preview took longer than allowed", body = Problem),
        (status = 413, description = "More sample events than a preview takes", body = Problem),
        (status = 502, description = "The topic's source could not be read for sample events", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn preview_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PreviewResponse>, ApiError> {
    let topic = app.topic(&name)?;
    let request: PreviewRequest = parse_optional_json(&body)?;
    if let Some(limit) = request.limit
        && !(1..=app.settings.preview_max_events).contains(&limit)
    {
        return Err(ApiError::new(
            ProblemKind::BadRequest,
            format!(
                "limit {limit} is out of range: 1 to {} events",
                app.settings.preview_max_events
            ),
        ));
    }
    let events: Vec<Bytes> = match request.events {
        Some(events) => events.iter().map(|e| Bytes::from(e.to_string())).collect(),
        None => {
            let limit = request.limit.unwrap_or(20);
            let source = requested_source(&app.env.recordings, request.source.as_deref())?;
            sample_events(&app, &topic, limit, source.as_deref()).await?
        }
    };
    if events.len() > app.settings.preview_max_events {
        return Err(ApiError::new(
            ProblemKind::TooLarge,
            format!(
                "a preview takes at most {} events",
                app.settings.preview_max_events
            ),
        )
        .titled("Too many sample events"));
    }
    // Previews wait their turn: a few run at once, so that drafts together
    // stay within the preview engine's memory. The wait counts against the
    // preview's time.
    let deadline = tokio::time::Instant::now() + app.settings.preview_timeout;
    let timed_out = || {
        ApiError::new(
            ProblemKind::Timeout,
            format!(
                "the preview took longer than {} s",
                app.settings.preview_timeout.as_secs_f64()
            ),
        )
        .titled("Preview timed out")
    };
    let _turn = tokio::time::timeout_at(deadline, app.previews.acquire())
        .await
        .map_err(|_| timed_out())?
        .map_err(|_| timed_out())?;
    let limits = PreviewLimits {
        timeout: deadline.saturating_duration_since(tokio::time::Instant::now()),
        ..PreviewLimits::default()
    };
    let outcome = preview_bounded(
        app.preview_engine.clone(),
        topic,
        request.mapping.map(Draft::text),
        events,
        limits,
    )
    .await
    .map_err(|e| match e {
        PreviewError::Timeout { .. } => timed_out(),
        other => other.into(),
    })?;
    Ok(Json(PreviewResponse {
        counts: CountsView::from(&outcome.counts),
        main: outcome.main.into(),
        correction: outcome.correction.into(),
        rejected: outcome.rejected.into_iter().map(Into::into).collect(),
    }))
}

/// A JSON body, or the default when there is none (or it is `null`).
pub(crate) fn parse_optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let invalid = |e: serde_json::Error| {
        ApiError::new(
            ProblemKind::BadRequest,
            format!("the body is not valid: {e}"),
        )
    };
    // Only an object (or null): serde would also read a struct from an array.
    match serde_json::from_slice::<serde_json::Value>(body).map_err(invalid)? {
        serde_json::Value::Null => Ok(T::default()),
        object @ serde_json::Value::Object(_) => serde_json::from_value(object).map_err(invalid),
        _ => Err(ApiError::new(
            ProblemKind::BadRequest,
            "the body is not valid: expected a JSON object",
        )),
    }
}

/// The first `limit` events of a topic's source (cursors mode, nothing committed).
pub(crate) async fn sample_events(
    app: &AppState,
    topic: &Topic,
    limit: usize,
    source: Option<&std::path::Path>,
) -> Result<Vec<Bytes>, ApiError> {
    let source = app.env.sample_source(topic, source)?;
    Ok(
        materializer_core::preview::sample_events(&source, limit, app.settings.preview_timeout)
            .await?,
    )
}
