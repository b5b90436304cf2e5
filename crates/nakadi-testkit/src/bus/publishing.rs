//! Publishing (`POST /event-types/{name}/events`): each event goes to the
//! partition the event type's `partition_strategy` chooses (`random`, the
//! default: any; `hash`: the one its `partition_key_fields` hash to;
//! `user_defined`: the one its `metadata.partition` names), and business
//! and data events are enriched as Nakadi enriches them. A batch with an
//! event that cannot be placed is refused whole (`422`, one item per event).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use rand::Rng;

use super::{Bus, lock, problem, unknown_event_type};
use crate::log::{EventTypeLog, PartitionStrategy};

/// A stable hash (FNV-1a) of the partition key values.
fn key_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

pub(super) async fn publish(
    State(bus): State<Arc<Bus>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(log) = bus.event_type(&name) else {
        return unknown_event_type(&name);
    };
    let events: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(Value::Array(events)) => events,
        Ok(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON array of events",
            );
        }
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("not valid JSON: {e}")),
    };
    let enrich = matches!(log.category(), "business" | "data");
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    // A batch is published whole or not at all, as Nakadi publishes it.
    let mut placed = Vec::with_capacity(events.len());
    let mut failures = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        match partition_of(&bus, &log, &event) {
            Ok(index) => placed.push((index, event)),
            Err(detail) => failures.push((i, event, detail)),
        }
    }
    if !failures.is_empty() {
        return unpartitioned(failures, placed.len());
    }
    let mut per_partition: BTreeMap<usize, Vec<Bytes>> = BTreeMap::new();
    for (index, mut event) in placed {
        if enrich && let Some(metadata) = event.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata
                .entry("received_at")
                .or_insert_with(|| Value::String(now.clone()));
            metadata
                .entry("event_type")
                .or_insert_with(|| Value::String(name.clone()));
            metadata.insert(
                "partition".into(),
                Value::String(log.partition_names[index].clone()),
            );
        }
        per_partition
            .entry(index)
            .or_default()
            .push(Bytes::from(event.to_string()));
    }
    for (index, events) in per_partition {
        lock(&log.partitions[index]).events.extend(events);
    }
    bus.changed.notify_waiters();
    StatusCode::OK.into_response()
}

/// The partition `event` goes to, or why it has none.
fn partition_of(bus: &Bus, log: &EventTypeLog, event: &Value) -> Result<usize, String> {
    let partitions = log.partitions.len();
    match &log.strategy {
        PartitionStrategy::Random => Ok(lock(&bus.partition_rng).random_range(0..partitions)),
        PartitionStrategy::Hash(fields) => {
            let base = if log.category() == "data" {
                "/data"
            } else {
                ""
            };
            let key: Vec<String> = fields
                .iter()
                .map(|f| {
                    let pointer = format!("{base}/{}", f.replace('.', "/"));
                    event
                        .pointer(&pointer)
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect();
            Ok((key_hash(&key.join("\u{1}")) % partitions as u64) as usize)
        }
        PartitionStrategy::UserDefined => {
            let named = event
                .pointer("/metadata/partition")
                .and_then(Value::as_str)
                .ok_or(
                    "metadata.partition is required: the event type's partition_strategy is \
                        user_defined",
                )?;
            log.index_of(named).ok_or_else(|| {
                format!(
                    "metadata.partition names partition {named:?}, which does not exist \
                     (partitions {})",
                    log.partition_names.join(", ")
                )
            })
        }
    }
}

/// The answer to a batch of which some events have no partition: Nakadi's
/// `422` with one item per event, the failed ones with their reason, the
/// others aborted.
fn unpartitioned(failures: Vec<(usize, Value, String)>, placed: usize) -> Response {
    let total = failures.len() + placed;
    let mut items =
        vec![serde_json::json!({"publishing_status": "aborted", "step": "partitioning"}); total];
    for (i, event, detail) in failures {
        items[i] = serde_json::json!({
            "eid": event.pointer("/metadata/eid"),
            "publishing_status": "failed",
            "step": "partitioning",
            "detail": detail,
        });
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(serde_json::Value::Array(items)),
    )
        .into_response()
}
