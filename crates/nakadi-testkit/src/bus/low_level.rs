//! The low-level stream (`GET /event-types/{name}/events`): from the cursors
//! the client names (or the ends) through every partition, in batches, with
//! keep-alives, limits and the connection's faults.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::streaming::{Sender, Sent, StreamQuery, StreamSettings, batch_line, stream_response};
use super::{Bus, Chunk, lock, problem, unknown_event_type};
use crate::faults::Request;
use crate::log::{EventTypeLog, PartitionLog, offset_of};

#[derive(Deserialize)]
struct RequestCursor {
    partition: String,
    offset: String,
}

pub(super) async fn stream_events(
    State(bus): State<Arc<Bus>>,
    Path(name): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = bus.refusal(Request::Events) {
        return refused;
    }
    let Some(log) = bus.event_type(&name) else {
        return unknown_event_type(&name);
    };
    let settings = match query.settings() {
        Ok(s) => s,
        Err(r) => return r,
    };
    let cursors: Vec<RequestCursor> = match headers.get("X-Nakadi-Cursors") {
        Some(value) => match serde_json::from_slice(value.as_bytes()) {
            Ok(c) => c,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("incorrect syntax of X-nakadi-cursors header: {e}"),
                );
            }
        },
        None => log
            .partition_names
            .iter()
            .zip(&log.partitions)
            .map(|(p, l)| {
                let end = lock(l).end();
                RequestCursor {
                    partition: p.clone(),
                    offset: PartitionLog::cursor_before(end),
                }
            })
            .collect(),
    };
    let mut positions = Vec::new();
    for cursor in cursors {
        let Some(index) = log.index_of(&cursor.partition) else {
            return problem(
                StatusCode::PRECONDITION_FAILED,
                format!("partition {} does not exist", cursor.partition),
            );
        };
        match lock(&log.partitions[index]).start_after(&cursor.offset) {
            Ok(next) => positions.push((index, next)),
            Err(e) => return problem(StatusCode::PRECONDITION_FAILED, e),
        }
    }
    bus.streams_opened.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    let sender = Sender::new(tx, &bus);
    tokio::spawn(produce_low_level(
        bus.clone(),
        log,
        positions,
        settings,
        sender,
    ));
    stream_response(rx, None)
}

async fn produce_low_level(
    bus: Arc<Bus>,
    log: Arc<EventTypeLog>,
    mut positions: Vec<(usize, u64)>,
    settings: StreamSettings,
    mut sender: Sender,
) {
    if let Sent::Closed = sender.silence_fault().await {
        return;
    }
    let mut sent = 0u64;
    let mut keep_alives = 0u64;
    loop {
        if sender.started.elapsed() >= settings.lifetime {
            return;
        }
        let notified = bus.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut any = false;
        if !sender.keepalive_only() {
            for (index, next) in positions.iter_mut() {
                let mut limit = settings.batch_limit;
                if settings.stream_limit > 0 {
                    limit = limit.min((settings.stream_limit - sent) as usize);
                }
                let events = lock(&log.partitions[*index]).read(*next, limit);
                if events.is_empty() {
                    continue;
                }
                any = true;
                *next += events.len() as u64;
                sent += events.len() as u64;
                let line = batch_line(
                    &log.partition_names[*index],
                    &offset_of(*next - 1),
                    &events,
                    None,
                );
                if let Sent::Closed = sender.batch(line).await {
                    return;
                }
                if settings.stream_limit > 0 && sent >= settings.stream_limit {
                    return;
                }
            }
        } else {
            bus.count(|i| i.keepalive_only += 1);
        }
        if any {
            keep_alives = 0;
            continue;
        }
        tokio::select! {
            woken = tokio::time::timeout(settings.flush, notified) => {
                if woken.is_ok() && !sender.keepalive_only() {
                    continue; // something changed: look again
                }
            }
            _ = sender.tx.closed() => return, // the client went away
        }
        for (index, next) in &positions {
            let line = batch_line(
                &log.partition_names[*index],
                &PartitionLog::cursor_before(*next),
                &[],
                None,
            );
            if let Sent::Closed = sender.keep_alive(line).await {
                return;
            }
        }
        keep_alives += 1;
        if settings.keep_alive_limit > 0 && keep_alives >= settings.keep_alive_limit {
            return;
        }
    }
}
