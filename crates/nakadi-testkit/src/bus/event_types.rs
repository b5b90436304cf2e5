//! Event types and their partitions: adding them and appending events to
//! them (what tests and the binary call), and the routes that list, create
//! and show them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Bus, lock, problem, unknown_event_type};
use crate::faults::Request;
use crate::log::EventTypeLog;
use crate::recording;

impl Bus {
    /// Adds an event type (a document as Nakadi serves it) with `partitions` partitions.
    pub fn add_event_type(&self, document: Value, partitions: usize) -> Result<(), String> {
        let log = EventTypeLog::new(document, partitions)?;
        let mut types = self.event_types.write().unwrap_or_else(|e| e.into_inner());
        if types.contains_key(&log.name) {
            return Err(format!("event type {} exists", log.name));
        }
        types.insert(log.name.clone(), Arc::new(log));
        Ok(())
    }

    /// Appends events (raw JSON, taken as they are) to a partition.
    pub fn append(
        &self,
        event_type: &str,
        partition: &str,
        events: Vec<Bytes>,
    ) -> Result<(), String> {
        let log = self
            .event_type(event_type)
            .ok_or_else(|| format!("no event type {event_type}"))?;
        let index = log
            .index_of(partition)
            .ok_or_else(|| format!("no partition {partition}"))?;
        lock(&log.partitions[index]).events.extend(events);
        self.changed.notify_waiters();
        Ok(())
    }

    /// The events a partition holds (those retention kept), as stored.
    pub fn events_in(&self, event_type: &str, partition: &str) -> Result<Vec<Value>, String> {
        let log = self
            .event_type(event_type)
            .ok_or_else(|| format!("no event type {event_type}"))?;
        let index = log
            .index_of(partition)
            .ok_or_else(|| format!("no partition {partition}"))?;
        let partition = lock(&log.partitions[index]);
        partition
            .events
            .iter()
            .map(|event| serde_json::from_slice(event).map_err(|e| e.to_string()))
            .collect()
    }

    /// Loads recorded stream lines: every event goes to the partition its
    /// batch names, in order.
    pub fn append_recording(&self, event_type: &str, text: &[u8]) -> Result<usize, String> {
        let mut count = 0;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let batch = recording::split_line(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            let events: Vec<Bytes> = batch
                .events
                .iter()
                .map(|event| Bytes::copy_from_slice(event))
                .collect();
            count += events.len();
            self.append(event_type, &batch.partition, events)?;
        }
        Ok(count)
    }
}

pub(super) async fn list_event_types(State(bus): State<Arc<Bus>>) -> Response {
    let types: Vec<Value> = bus
        .event_types
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|t| t.document.clone())
        .collect();
    Json(types).into_response()
}

pub(super) async fn create_event_type(
    State(bus): State<Arc<Bus>>,
    Json(document): Json<Value>,
) -> Response {
    let partitions = document
        .pointer("/default_statistic/read_parallelism")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .unwrap_or(bus.default_partitions);
    match bus.add_event_type(document, partitions) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) if e.ends_with("exists") => problem(StatusCode::CONFLICT, e),
        Err(e) => problem(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

pub(super) async fn get_event_type(
    State(bus): State<Arc<Bus>>,
    Path(name): Path<String>,
) -> Response {
    match bus.event_type(&name) {
        Some(t) => Json(t.document.clone()).into_response(),
        None => unknown_event_type(&name),
    }
}

pub(super) async fn get_partitions(
    State(bus): State<Arc<Bus>>,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = bus.refusal(Request::Partitions) {
        return refused;
    }
    match bus.event_type(&name) {
        Some(t) => Json(t.infos()).into_response(),
        None => unknown_event_type(&name),
    }
}

pub(super) async fn get_partition(
    State(bus): State<Arc<Bus>>,
    Path((name, partition)): Path<(String, String)>,
) -> Response {
    let Some(t) = bus.event_type(&name) else {
        return unknown_event_type(&name);
    };
    match t.infos().into_iter().find(|p| p.partition == partition) {
        Some(info) => Json(info).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("partition {partition} not found"),
        ),
    }
}
