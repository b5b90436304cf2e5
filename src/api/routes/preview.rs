//! Previews: a mapping applied to sample events, nothing written.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;

use materializer_core::ErrorClass;
use materializer_core::config::Topic;
use materializer_core::preview::{Draft, PreviewError, PreviewLimits, preview_bounded};
use materializer_core::source::framing;

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
        (status = 422, description = "The mapping is not valid (errors with line and column), the query failed, sample events were given both as events and as raw_events, or the source named is not under the recordings folder", body = Problem),
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
    let served = app.topic(&name);
    let request: PreviewRequest = parse_optional_json(&body)?;
    let deadline = tokio::time::Instant::now() + app.settings.preview_timeout;
    let (topic, draft) = match served {
        Ok(topic) => (topic, request.mapping.clone().map(Draft::text)),
        // A topic whose files do not load may load with the draft: that is
        // how it gets fixed, so the draft is checked as a save would check it.
        Err(refused) => (
            with_draft(&app, &name, request.mapping.as_deref(), deadline, refused).await?,
            None,
        ),
    };
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
    let sample = match (request.events, request.raw_events) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ProblemKind::Engine(ErrorClass::Data),
                "give the sample events as events or as raw_events, not both",
            ));
        }
        (Some(events), None) => {
            Sample::whole(events.iter().map(|e| Bytes::from(e.to_string())).collect())
        }
        (None, Some(raw)) => Sample::framed(raw),
        (None, None) => {
            let limit = request.limit.unwrap_or(20);
            let source = requested_source(&app.env.recordings, request.source.as_deref())?;
            Sample::whole(sample_events(&app, &topic, limit, source.as_deref()).await?)
        }
    };
    if sample.len() > app.settings.preview_max_events {
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
    let timed_out = || timed_out(&app);
    let _turn = tokio::time::timeout_at(deadline, app.previews.take())
        .await
        .map_err(|_| timed_out())?
        .map_err(|_| timed_out())?;
    materializer_core::failpoint::hold("preview-turn").await;
    let limits = PreviewLimits {
        timeout: deadline.saturating_duration_since(tokio::time::Instant::now()),
        ..PreviewLimits::default()
    };
    let Sample {
        events,
        positions,
        unframed,
    } = sample;
    let mut outcome = preview_bounded(app.preview_engine.clone(), topic, draft, events, limits)
        .await
        .map_err(|e| match e {
            PreviewError::Timeout { .. } => timed_out(),
            other => other.into(),
        })?;
    // Positions in the request, and the events that could not be framed
    // counted among the rejected ones, as read.
    let mut rejected: Vec<RejectedView> = outcome
        .rejected
        .into_iter()
        .map(|r| RejectedView {
            index: positions.get(r.index).copied().unwrap_or(r.index),
            reason: r.reason,
        })
        .collect();
    outcome.counts.events_read += unframed.len() as u64;
    outcome.counts.events_rejected += unframed.len() as u64;
    rejected.extend(unframed);
    rejected.sort_by_key(|r| r.index);
    Ok(Json(PreviewResponse {
        compaction_rate: outcome.counts.compaction_rate(),
        counts: CountsView::from(&outcome.counts),
        main: outcome.main.into(),
        correction: outcome.correction.into(),
        rejected,
    }))
}

fn timed_out(app: &AppState) -> ApiError {
    ApiError::new(
        ProblemKind::Timeout,
        format!(
            "the preview took longer than {} s",
            app.settings.preview_timeout.as_secs_f64()
        ),
    )
    .titled("Preview timed out")
}

/// The topic `name`, whose files do not load, loaded with `draft` as its
/// mapping: the draft's own errors are answered with their places, as a
/// save would answer them.
async fn with_draft(
    app: &AppState,
    name: &str,
    draft: Option<&str>,
    deadline: tokio::time::Instant,
    refused: ApiError,
) -> Result<Arc<Topic>, ApiError> {
    let files = app.topic_files(name)?;
    let (None, Some(draft)) = (&files.served, draft) else {
        return Err(refused);
    };
    let loaded = tokio::time::timeout_at(
        deadline,
        Topic::load_with_mapping(
            &files.dir,
            &app.preview_engine,
            app.nakadi.as_deref(),
            draft,
        ),
    )
    .await
    .map_err(|_| timed_out(app))?
    .map_err(|e| ApiError::from(e).titled("The topic does not load with this mapping"))?;
    Ok(Arc::new(loaded))
}

/// Sample events as the preview takes them: each one framed on its own.
struct Sample {
    events: Vec<Bytes>,
    /// The position in the request of each of `events`.
    positions: Vec<usize>,
    /// Events that cannot be read as one event at all, rejected as they are.
    unframed: Vec<RejectedView>,
}

impl Sample {
    fn whole(events: Vec<Bytes>) -> Sample {
        Sample {
            positions: (0..events.len()).collect(),
            events,
            unframed: Vec::new(),
        }
    }

    /// Events as text. One that is not JSON but still reads as one event
    /// (its brackets balance) goes to the decoder, which rejects it as a
    /// run would; one that does not is rejected here with the same words.
    fn framed(raw: Vec<String>) -> Sample {
        let mut sample = Sample::whole(Vec::new());
        for (i, text) in raw.into_iter().enumerate() {
            if frames_as_one(&text) {
                sample.events.push(Bytes::from(text.trim().to_string()));
                sample.positions.push(i);
            } else {
                let reason = match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                    Err(e) => format!("not valid JSON: {e}"),
                    Ok(_) => "not one JSON event".to_string(),
                };
                sample.unframed.push(RejectedView { index: i, reason });
            }
        }
        sample
    }

    fn len(&self) -> usize {
        self.events.len() + self.unframed.len()
    }
}

/// Whether `text` reads as exactly one event of a batch, all of it (a text
/// that closes the batch's array and opens another would not be one event).
fn frames_as_one(text: &str) -> bool {
    let text = text.trim();
    if text.is_empty() {
        return false;
    }
    let line = format!(r#"{{"cursor":{{"partition":"0","offset":"0"}},"events":[{text}]}}"#);
    match framing::parse_line(Bytes::from(line)) {
        Ok(batch) => batch.events.len() == 1 && batch.event_bytes(0) == text.as_bytes(),
        Err(_) => false,
    }
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
