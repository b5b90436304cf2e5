//! Publishing (`POST /event-types/{name}/events`): each event goes to the
//! partition the event type's `partition_strategy` chooses (`random`, the
//! default: any; `hash`: the one its `partition_key_fields` hash to;
//! `user_defined`: the one its `metadata.partition` names), and business
//! and data events are validated and enriched as Nakadi validates and
//! enriches them. A batch with an event that is not valid or cannot be
//! placed is refused whole (`422`, one item per event).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use rand::Rng;

use super::{Bus, lock, problem, unknown_event_type};
use crate::log::{EventTypeLog, PartitionStrategy};

/// The bytes a publish (`POST /event-types/{name}/events`) takes at most;
/// a larger one is refused with `413`.
pub const MAX_PUBLISH_BYTES: usize = 16 << 20;

/// The bytes one event takes at most, as Nakadi's default
/// (`nakadi.event.max.bytes`); a batch with a larger one is refused (`422`).
pub const MAX_EVENT_BYTES: usize = 1_000_000;

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
    body: Body,
) -> Response {
    let Some(log) = bus.event_type(&name) else {
        return unknown_event_type(&name);
    };
    let body = match axum::body::to_bytes(body, MAX_PUBLISH_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a publish takes at most {MAX_PUBLISH_BYTES} bytes: publish the events in \
                     smaller batches"
                ),
            );
        }
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
    let category = log.category().to_string();
    let invalid: Vec<(usize, Value, String)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, event)| {
            invalid_event(&category, event).map(|detail| (i, event.clone(), detail))
        })
        .collect();
    if !invalid.is_empty() {
        return refused("validating", invalid, events.len());
    }
    let enrich = matches!(category.as_str(), "business" | "data");
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
        let total = failures.len() + placed.len();
        return refused("partitioning", failures, total);
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

/// Why `event` is not one of its category (`undefined`, `business` or
/// `data`), as Nakadi validates: an event at most [`MAX_EVENT_BYTES`] long;
/// business and data change events with `metadata.eid` (a UUID) and
/// `metadata.occurred_at` (a date-time); data change events with `data_op`
/// (`C`, `U`, `D` or `S`), `data_type` and the object `data`. The detail
/// names the field as Nakadi's do (`#/metadata/eid`).
fn invalid_event(category: &str, event: &Value) -> Option<String> {
    let size = event.to_string().len();
    if size > MAX_EVENT_BYTES {
        return Some(format!(
            "event too large: {size} bytes, at most {MAX_EVENT_BYTES}"
        ));
    }
    if !matches!(category, "business" | "data") {
        return None;
    }
    let Some(object) = event.as_object() else {
        return Some("#: expected type: JSONObject".into());
    };
    let required = |name: &str| format!("#: required key [{name}] not found");
    let Some(metadata) = object.get("metadata") else {
        return Some(required("metadata"));
    };
    let Some(metadata) = metadata.as_object() else {
        return Some("#/metadata: expected type: JSONObject".into());
    };
    match metadata.get("eid") {
        None => return Some("#/metadata: required key [eid] not found".into()),
        Some(Value::String(eid)) if is_uuid(eid) => {}
        Some(eid) => {
            return Some(format!(
                "#/metadata/eid: {eid} is not a valid UUID (8-4-4-4-12 hexadecimal digits)"
            ));
        }
    }
    match metadata.get("occurred_at") {
        None => return Some("#/metadata: required key [occurred_at] not found".into()),
        Some(Value::String(at)) if chrono::DateTime::parse_from_rfc3339(at).is_ok() => {}
        Some(at) => {
            return Some(format!(
                "#/metadata/occurred_at: {at} is not a valid date-time (RFC 3339, \
                 2024-06-03T08:00:00Z)"
            ));
        }
    }
    if category == "data" {
        match object.get("data_op") {
            None => return Some(required("data_op")),
            Some(Value::String(op)) if matches!(op.as_str(), "C" | "U" | "D" | "S") => {}
            Some(op) => {
                return Some(format!(
                    "#/data_op: {op} is not a valid enum value (C, U, D or S)"
                ));
            }
        }
        if !object.get("data_type").is_some_and(Value::is_string) {
            return Some(required("data_type"));
        }
        if !object.get("data").is_some_and(Value::is_object) {
            return Some(required("data"));
        }
    }
    None
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The answer to a batch of which some events failed at `step`
/// (`validating`, `partitioning`): Nakadi's `422` with one item per event,
/// the failed ones with their reason, the others aborted.
fn refused(step: &str, failures: Vec<(usize, Value, String)>, total: usize) -> Response {
    let mut items = vec![serde_json::json!({"publishing_status": "aborted", "step": step}); total];
    for (i, event, detail) in failures {
        items[i] = serde_json::json!({
            "eid": event.pointer("/metadata/eid"),
            "publishing_status": "failed",
            "step": step,
            "detail": detail,
        });
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(serde_json::Value::Array(items)),
    )
        .into_response()
}
