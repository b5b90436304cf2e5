//! The events of a topic's source, as it holds them: a partition from an
//! offset on, with a text filter. Read with cursors, as a preview reads its
//! sample: nothing is committed, and the read is bounded in events and time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Json;
use axum::extract::{Path, Query, State};
use futures::StreamExt;

use materializer_core::ErrorClass;
use materializer_core::source::{
    Offset, PartitionRange, Source, SourceError, partition_cmp, plan_ranges,
};

use crate::api::error::{ApiError, Problem, ProblemKind};
use crate::api::models::*;
use crate::api::routes::topics::describe;
use crate::api::state::AppState;

/// Most events one request looks at, matching the filter or not.
const MOST_SCANNED: u64 = 200_000;

/// Events of the topic's source: all partitions as they arrive, or one
/// partition from an offset on; only those whose text holds `filter`
/// (case-insensitive). Each event is given as the source holds it, with
/// its partition and offset.
#[utoipa::path(
    get,
    path = "/topics/{topic}/source-events",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name"), SourceEventsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SourceEventsView),
        (status = 400, description = "A limit out of range", body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "The topic never loaded, an offset (from) without its partition, or an offset that is not one of this source", body = Problem),
        (status = 502, description = "The topic's source could not be read", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem)
    )
)]
pub(crate) async fn source_events(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<SourceEventsQuery>,
) -> Result<Json<SourceEventsView>, ApiError> {
    let topic = app.topic(&name)?;
    let limit = match query.limit {
        None => 50,
        Some(n @ 1..=500) => n as usize,
        Some(n) => {
            return Err(ApiError::new(
                ProblemKind::BadRequest,
                format!("limit {n} is out of range: 1 to 500 events"),
            ));
        }
    };
    let partition = query.partition.filter(|p| !p.is_empty());
    let from = query
        .from
        .filter(|f| !f.trim().is_empty())
        .map(|f| Offset::new(f.trim()));
    // The cursor to read after: the offset before the first one asked for.
    let start = match (&from, &partition) {
        (None, _) => Offset::begin(),
        (Some(_), None) => {
            return Err(ApiError::new(
                ProblemKind::Engine(ErrorClass::Data),
                "an offset (from) needs its partition",
            ));
        }
        (Some(from), Some(_)) if from.is_begin() => Offset::begin(),
        (Some(from), Some(_)) => match from.minus(0) {
            None => {
                return Err(ApiError::new(
                    ProblemKind::Engine(ErrorClass::Data),
                    format!(
                        "{from} is not an offset of this source; offsets are written as the events list shows them (like 001-0001-000000000000000042)"
                    ),
                ));
            }
            Some(_) => from.minus(1).unwrap_or_else(Offset::begin),
        },
    };
    let filter = query
        .filter
        .map(|f| f.to_lowercase())
        .filter(|f| !f.is_empty());
    let source = app.env.sample_source(&topic, None)?;
    let (mut stream, mut partitions) = match &source {
        Source::Recorded(recorded) => {
            let starts: HashMap<String, Offset> = partition
                .iter()
                .map(|p| (p.clone(), start.clone()))
                .collect();
            let stream =
                recorded.stream_extent(starts, &recorded.extent()?, Arc::new(AtomicU64::new(0)));
            (stream, Vec::new())
        }
        Source::Nakadi(nakadi) => {
            let all = nakadi.partitions().await?;
            let committed: BTreeMap<String, Offset> = partition
                .iter()
                .map(|p| (p.clone(), start.clone()))
                .collect();
            let ranges: Vec<PartitionRange> = plan_ranges(&all, &committed)
                .into_iter()
                .filter(|r| !r.is_empty())
                .filter(|r| partition.as_ref().is_none_or(|p| *p == r.partition))
                .collect();
            let names = all.iter().map(|p| p.partition.clone()).collect();
            (source.stream(&ranges), names)
        }
    };
    let deadline = tokio::time::Instant::now() + app.settings.preview_timeout;
    let mut events = Vec::new();
    let (mut scanned, mut more) = (0u64, false);
    'read: loop {
        let mut batch = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(batch)) => batch?,
            Ok(None) => break,
            Err(_) => {
                more = true;
                break;
            }
        };
        batch.frame().map_err(|e| SourceError::Partition {
            partition: batch.partition.to_string(),
            message: format!("{}: {e}", batch.origin_or_unknown()),
        })?;
        if !partitions.iter().any(|p| **p == *batch.partition) {
            partitions.push(batch.partition.to_string());
        }
        if partition.as_deref().is_some_and(|p| p != &*batch.partition) {
            continue;
        }
        for i in 0..batch.event_count() {
            let Some(offset) = batch.event_offset(i) else {
                continue;
            };
            if !start.is_begin() && !offset.is_after(&start) {
                continue;
            }
            if scanned >= MOST_SCANNED {
                more = true;
                break 'read;
            }
            scanned += 1;
            let text = String::from_utf8_lossy(batch.event_bytes(i));
            if filter
                .as_ref()
                .is_some_and(|f| !text.to_lowercase().contains(f.as_str()))
            {
                continue;
            }
            if events.len() == limit {
                more = true;
                break 'read;
            }
            events.push(SourceEvent {
                partition: batch.partition.to_string(),
                offset: offset.to_string(),
                event: text.into_owned(),
            });
        }
    }
    partitions.sort_by(|a, b| partition_cmp(a, b));
    Ok(Json(SourceEventsView {
        source: describe(&source, &topic),
        partitions,
        events,
        scanned,
        more,
    }))
}
