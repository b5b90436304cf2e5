//! Publishing (`POST /event-types/{name}/events`): each event goes to the
//! partition it names, or the one its partition key hashes to, or round
//! robin; business and data events are enriched as Nakadi enriches them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Bus, lock, problem, unknown_event_type};

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
    let mut per_partition: BTreeMap<usize, Vec<Bytes>> = BTreeMap::new();
    for mut event in events {
        let given = event
            .pointer("/metadata/partition")
            .and_then(Value::as_str)
            .and_then(|p| log.index_of(p));
        let index = given.unwrap_or_else(|| {
            if log.partition_key_fields.is_empty() {
                (bus.round_robin.fetch_add(1, Ordering::Relaxed) % log.partitions.len() as u64)
                    as usize
            } else {
                let base = if log.category() == "data" {
                    "/data"
                } else {
                    ""
                };
                let key: Vec<String> = log
                    .partition_key_fields
                    .iter()
                    .map(|f| {
                        let pointer = format!("{base}/{}", f.replace('.', "/"));
                        event
                            .pointer(&pointer)
                            .map(|v| v.to_string())
                            .unwrap_or_default()
                    })
                    .collect();
                (key_hash(&key.join("\u{1}")) % log.partitions.len() as u64) as usize
            }
        });
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
