//! Previews: a mapping applied to sample events, nothing written.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use futures::StreamExt;

use materializer_core::config::Topic;
use materializer_core::preview::{PreviewError, preview};
use materializer_core::source::{NakadiSource, PartitionRange, Source};

use crate::api::error::{ApiError, Problem};
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
pub(crate) async fn sample_events(
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
    let ranges: Vec<PartitionRange> =
        materializer_core::source::plan_ranges(&partitions, &BTreeMap::new())
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
