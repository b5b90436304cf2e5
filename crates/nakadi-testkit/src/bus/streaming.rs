//! What both kinds of stream share: the query and the settings it makes,
//! batch lines, the streamed response, and the sender that writes a
//! connection's lines and applies its faults. The low-level stream and the
//! subscription streams use it; it uses neither.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Bus, Chunk, problem};
use crate::faults::StreamFaults;

#[derive(Deserialize, Default)]
pub(super) struct StreamQuery {
    batch_limit: Option<u64>,
    stream_limit: Option<u64>,
    batch_flush_timeout: Option<f64>,
    stream_timeout: Option<f64>,
    stream_keep_alive_limit: Option<u64>,
    pub(super) max_uncommitted_events: Option<u64>,
    pub(super) commit_timeout: Option<f64>,
}

/// Stream settings after Nakadi's defaults and checks.
#[derive(Clone, Debug)]
pub(super) struct StreamSettings {
    pub(super) batch_limit: usize,
    pub(super) stream_limit: u64,
    pub(super) flush: Duration,
    pub(super) lifetime: Duration,
    pub(super) keep_alive_limit: u64,
}

impl StreamQuery {
    pub(super) fn settings(&self) -> Result<StreamSettings, Response> {
        let batch_limit = self.batch_limit.unwrap_or(1);
        if batch_limit < 1 {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch_limit can't be lower than 1",
            ));
        }
        let stream_limit = self.stream_limit.unwrap_or(0);
        if stream_limit != 0 && stream_limit < batch_limit {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "stream_limit can't be lower than batch_limit",
            ));
        }
        let flush = match self.batch_flush_timeout {
            Some(s) if s > 0.0 => Duration::from_secs_f64(s),
            _ => Duration::from_secs(30),
        };
        let lifetime = match self.stream_timeout {
            Some(s) if s > 0.0 && s <= 4200.0 => Duration::from_secs_f64(s),
            _ => Duration::from_secs(3600),
        };
        if lifetime < flush {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "stream_timeout can't be lower than batch_flush_timeout",
            ));
        }
        Ok(StreamSettings {
            batch_limit: batch_limit.min(100_000) as usize,
            stream_limit,
            flush,
            lifetime,
            keep_alive_limit: self.stream_keep_alive_limit.unwrap_or(0),
        })
    }
}

/// One batch line: the cursor of its last event and the events as they are.
pub(super) fn batch_line(
    partition: &str,
    offset: &str,
    events: &[Bytes],
    subscription: Option<(&str, &str)>,
) -> Bytes {
    let size = 96 + events.iter().map(|e| e.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"cursor\":{\"partition\":\"");
    out.extend_from_slice(partition.as_bytes());
    out.extend_from_slice(b"\",\"offset\":\"");
    out.extend_from_slice(offset.as_bytes());
    out.push(b'"');
    if let Some((event_type, token)) = subscription {
        out.extend_from_slice(b",\"event_type\":\"");
        out.extend_from_slice(event_type.as_bytes());
        out.extend_from_slice(b"\",\"cursor_token\":\"");
        out.extend_from_slice(token.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    if !events.is_empty() {
        out.extend_from_slice(b",\"events\":[");
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(event);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

pub(super) fn stream_response(
    rx: mpsc::Receiver<Chunk>,
    extra: Option<(&'static str, String)>,
) -> Response {
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-json-stream"),
    );
    if let Some((name, value)) = extra
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Sends lines of one connection and applies its faults.
pub(super) struct Sender {
    pub(super) tx: mpsc::Sender<Chunk>,
    faults: StreamFaults,
    pub(super) started: Instant,
    batches: u32,
    bus: Arc<Bus>,
}

pub(super) enum Sent {
    Ok,
    /// The client is gone or a fault ended the connection.
    Closed,
}

impl Sender {
    /// The sender of a new connection, with the faults it is to carry.
    pub(super) fn new(tx: mpsc::Sender<Chunk>, bus: &Arc<Bus>) -> Sender {
        Sender {
            tx,
            faults: bus.stream_faults(),
            started: Instant::now(),
            batches: 0,
            bus: bus.clone(),
        }
    }

    /// Sends nothing for as long as the connection's silence fault says;
    /// `Closed` when the client left meanwhile.
    pub(super) async fn silence_fault(&mut self) -> Sent {
        if let Some(silence) = self.faults.silence {
            self.bus.count(|i| i.silent += 1);
            tokio::select! {
                _ = tokio::time::sleep(silence) => {}
                _ = self.tx.closed() => return Sent::Closed,
            }
        }
        Sent::Ok
    }

    pub(super) fn keepalive_only(&self) -> bool {
        self.faults
            .keepalive_only
            .is_some_and(|d| self.started.elapsed() < d)
    }

    pub(super) async fn keep_alive(&mut self, line: Bytes) -> Sent {
        match self.tx.send(Ok(line)).await {
            Ok(()) => Sent::Ok,
            Err(_) => Sent::Closed,
        }
    }

    pub(super) async fn batch(&mut self, line: Bytes) -> Sent {
        self.batches += 1;
        if self.faults.cut_after == Some(self.batches - 1) {
            self.bus.count(|i| i.cut += 1);
            let _ = self.tx.send(Ok(line.slice(..line.len() / 2))).await;
            let _ = self
                .tx
                .send(Err(std::io::Error::other("injected: line cut")))
                .await;
            return Sent::Closed;
        }
        if self.tx.send(Ok(line)).await.is_err() {
            return Sent::Closed;
        }
        if self.faults.drop_after == Some(self.batches) {
            self.bus.count(|i| i.dropped += 1);
            let _ = self
                .tx
                .send(Err(std::io::Error::other("injected: connection dropped")))
                .await;
            return Sent::Closed;
        }
        Sent::Ok
    }
}
