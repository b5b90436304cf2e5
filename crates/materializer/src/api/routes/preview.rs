//! Previews: a mapping applied to sample events, nothing written.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;

use materializer_core::config::Topic;
use materializer_core::preview::preview;

use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::state::AppState;

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
pub(crate) async fn preview_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PreviewResponse>, ApiError> {
    let topic = app.topic(&name)?;
    let request: PreviewRequest = parse_optional_json(&body)?;
    let events: Vec<Bytes> = match request.events {
        Some(events) => events.iter().map(|e| Bytes::from(e.to_string())).collect(),
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
            ProblemKind::TooLarge,
            format!(
                "a preview takes at most {} events",
                app.settings.preview_max_events
            ),
        )
        .titled("Too many sample events"));
    }
    let work = preview(
        &app.preview_engine,
        &topic,
        request.mapping.as_deref(),
        &events,
    );
    let outcome = tokio::time::timeout(app.settings.preview_timeout, work)
        .await
        .map_err(|_| {
            ApiError::new(
                ProblemKind::Timeout,
                format!(
                    "the preview took longer than {} s",
                    app.settings.preview_timeout.as_secs_f64()
                ),
            )
            .titled("Preview timed out")
        })??;
    Ok(Json(PreviewResponse {
        counts: CountsView::from(&outcome.counts),
        main: outcome.main.into(),
        correction: outcome.correction.into(),
        rejected: outcome.rejected.into_iter().map(Into::into).collect(),
    }))
}

/// A JSON body, or the default when there is none.
fn parse_optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ProblemKind::BadRequest,
            format!("the body is not valid: {e}"),
        )
    })
}

/// The first `limit` events of a topic's source (cursors mode, nothing committed).
pub(crate) async fn sample_events(
    app: &AppState,
    topic: &Topic,
    limit: usize,
) -> Result<Vec<Bytes>, ApiError> {
    let source = app.env.sample_source(topic)?;
    Ok(
        materializer_core::preview::sample_events(&source, limit, app.settings.preview_timeout)
            .await?,
    )
}
