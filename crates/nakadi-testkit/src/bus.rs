//! A Nakadi-compatible server for development and tests, built from Nakadi's
//! published API (`nakadi-event-bus-api.yaml`): event types, partitions,
//! publishing, the low-level stream, subscriptions with their streams, cursor
//! commits and stats, offsets in Nakadi's `001-0001-...` format, bearer-token
//! checks, and faults injected on request (`/_admin/faults`).
//!
//! It keeps everything in memory. The `nakadi-server` binary starts one
//! preloaded with the recordings under `fixtures/recorded`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::info;

use crate::faults::{FaultPlan, Injected, StreamFaults};
use crate::log::{EventTypeLog, PartitionLog, SubscriptionState, offset_of};
use crate::recording;

mod subscription_stream;

use subscription_stream::{Session, holder, stream_subscription};

type Chunk = Result<Bytes, std::io::Error>;

/// The server's state.
pub struct Bus {
    event_types: RwLock<BTreeMap<String, Arc<EventTypeLog>>>,
    subscriptions: Mutex<BTreeMap<String, SubscriptionState>>,
    sessions: Mutex<HashMap<String, Session>>,
    faults: Mutex<(FaultPlan, Injected)>,
    token: Option<String>,
    /// Woken when events are published or cursors committed.
    changed: tokio::sync::Notify,
    round_robin: AtomicU64,
    pub streams_opened: AtomicU64,
    pub default_partitions: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Problem JSON answer, as Nakadi gives them.
fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": format!("https://httpstatus.es/{}", status.as_u16()),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

impl Bus {
    /// An empty server; `token` makes every Nakadi request need `Authorization: Bearer <token>`.
    pub fn new(token: Option<String>, default_partitions: usize) -> Arc<Bus> {
        Arc::new(Bus {
            event_types: RwLock::new(BTreeMap::new()),
            subscriptions: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(HashMap::new()),
            faults: Mutex::new((FaultPlan::default(), Injected::default())),
            token,
            changed: tokio::sync::Notify::new(),
            round_robin: AtomicU64::new(0),
            streams_opened: AtomicU64::new(0),
            default_partitions: default_partitions.max(1),
        })
    }

    fn event_type(&self, name: &str) -> Option<Arc<EventTypeLog>> {
        self.event_types
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

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

    /// Drops the events of a partition before event number `before`.
    pub fn expire(&self, event_type: &str, partition: &str, before: u64) -> Result<(), String> {
        let log = self
            .event_type(event_type)
            .ok_or_else(|| format!("no event type {event_type}"))?;
        let index = log
            .index_of(partition)
            .ok_or_else(|| format!("no partition {partition}"))?;
        lock(&log.partitions[index]).expire_before(before);
        Ok(())
    }

    pub fn set_faults(&self, plan: FaultPlan) {
        lock(&self.faults).0 = plan;
    }

    pub fn injected(&self) -> Injected {
        lock(&self.faults).1.clone()
    }

    /// The committed cursors of a subscription, by partition.
    pub fn committed(&self, subscription: &str) -> Option<BTreeMap<String, String>> {
        let subs = lock(&self.subscriptions);
        let sub = subs.get(subscription)?;
        Some(
            sub.committed
                .iter()
                .map(|((_, p), next)| (p.clone(), PartitionLog::cursor_before(*next)))
                .collect(),
        )
    }

    fn refusal(&self) -> Option<Response> {
        let mut guard = lock(&self.faults);
        let (plan, injected) = &mut *guard;
        let (status, retry_after) = plan.take_refusal(injected)?;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = problem(status, "injected fault");
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        Some(response)
    }

    fn stream_faults(&self) -> StreamFaults {
        lock(&self.faults).0.take_stream_faults()
    }

    /// The window (max_uncommitted_events) of a new subscription stream that
    /// asked for `asked`.
    fn window(&self, asked: u64) -> u64 {
        let mut guard = lock(&self.faults);
        let (plan, injected) = &mut *guard;
        plan.take_window(asked, injected)
    }

    fn count(&self, what: impl FnOnce(&mut Injected)) {
        what(&mut lock(&self.faults).1);
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        let nakadi = Router::new()
            .route(
                "/event-types",
                get(list_event_types).post(create_event_type),
            )
            .route("/event-types/{name}", get(get_event_type))
            .route("/event-types/{name}/partitions", get(get_partitions))
            .route(
                "/event-types/{name}/partitions/{partition}",
                get(get_partition),
            )
            .route(
                "/event-types/{name}/events",
                get(stream_events).post(publish),
            )
            .route("/subscriptions", post(create_subscription))
            .route(
                "/subscriptions/{id}",
                get(get_subscription).delete(delete_subscription),
            )
            .route(
                "/subscriptions/{id}/cursors",
                get(get_cursors).post(commit_cursors),
            )
            .route("/subscriptions/{id}/events", get(stream_subscription))
            .route("/subscriptions/{id}/stats", get(get_stats))
            .layer(middleware::from_fn_with_state(self.clone(), check_token));
        let admin = Router::new()
            .route("/_admin/faults", get(get_faults).post(set_faults))
            .route("/_admin/expire", post(expire));
        nakadi.merge(admin).with_state(self.clone())
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let router = self.router();
        axum::serve(listener, router).await
    }

    /// Binds `addr` and serves in the background; returns the bound address.
    pub async fn start(
        self: &Arc<Self>,
        addr: &str,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let bus = self.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = bus.serve(listener).await {
                tracing::error!(error = %e, "Nakadi-compatible server stopped");
            }
        });
        info!(address = %local, "Nakadi-compatible server listening");
        Ok((local, handle))
    }
}

async fn check_token(State(bus): State<Arc<Bus>>, request: Request, next: Next) -> Response {
    if let Some(token) = &bus.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return problem(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        }
    }
    next.run(request).await
}

async fn list_event_types(State(bus): State<Arc<Bus>>) -> Response {
    let types: Vec<Value> = bus
        .event_types
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|t| t.document.clone())
        .collect();
    Json(types).into_response()
}

async fn create_event_type(State(bus): State<Arc<Bus>>, Json(document): Json<Value>) -> Response {
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

fn unknown_event_type(name: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("EventType \"{name}\" does not exist."),
    )
}

async fn get_event_type(State(bus): State<Arc<Bus>>, Path(name): Path<String>) -> Response {
    match bus.event_type(&name) {
        Some(t) => Json(t.document.clone()).into_response(),
        None => unknown_event_type(&name),
    }
}

async fn get_partitions(State(bus): State<Arc<Bus>>, Path(name): Path<String>) -> Response {
    if let Some(refused) = bus.refusal() {
        return refused;
    }
    match bus.event_type(&name) {
        Some(t) => Json(t.infos()).into_response(),
        None => unknown_event_type(&name),
    }
}

async fn get_partition(
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

/// A stable hash (FNV-1a) of the partition key values.
fn key_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

async fn publish(State(bus): State<Arc<Bus>>, Path(name): Path<String>, body: Bytes) -> Response {
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

#[derive(Deserialize, Default)]
struct StreamQuery {
    batch_limit: Option<u64>,
    stream_limit: Option<u64>,
    batch_flush_timeout: Option<f64>,
    stream_timeout: Option<f64>,
    stream_keep_alive_limit: Option<u64>,
    max_uncommitted_events: Option<u64>,
    commit_timeout: Option<f64>,
}

/// Stream settings after Nakadi's defaults and checks.
#[derive(Clone, Debug)]
struct StreamSettings {
    batch_limit: usize,
    stream_limit: u64,
    flush: Duration,
    lifetime: Duration,
    keep_alive_limit: u64,
}

impl StreamQuery {
    fn settings(&self) -> Result<StreamSettings, Response> {
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

#[derive(Deserialize)]
struct RequestCursor {
    partition: String,
    offset: String,
}

/// One batch line: the cursor of its last event and the events as they are.
fn batch_line(
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

fn stream_response(rx: mpsc::Receiver<Chunk>, extra: Option<(&'static str, String)>) -> Response {
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
struct Sender {
    tx: mpsc::Sender<Chunk>,
    faults: StreamFaults,
    started: Instant,
    batches: u32,
    bus: Arc<Bus>,
}

enum Sent {
    Ok,
    /// The client is gone or a fault ended the connection.
    Closed,
}

impl Sender {
    /// The sender of a new connection, with the faults it is to carry.
    fn new(tx: mpsc::Sender<Chunk>, bus: &Arc<Bus>) -> Sender {
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
    async fn silence_fault(&mut self) -> Sent {
        if let Some(silence) = self.faults.silence {
            self.bus.count(|i| i.silent += 1);
            tokio::select! {
                _ = tokio::time::sleep(silence) => {}
                _ = self.tx.closed() => return Sent::Closed,
            }
        }
        Sent::Ok
    }

    fn keepalive_only(&self) -> bool {
        self.faults
            .keepalive_only
            .is_some_and(|d| self.started.elapsed() < d)
    }

    async fn keep_alive(&mut self, line: Bytes) -> Sent {
        match self.tx.send(Ok(line)).await {
            Ok(()) => Sent::Ok,
            Err(_) => Sent::Closed,
        }
    }

    async fn batch(&mut self, line: Bytes) -> Sent {
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

async fn stream_events(
    State(bus): State<Arc<Bus>>,
    Path(name): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = bus.refusal() {
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

#[derive(Deserialize)]
struct NewSubscription {
    owning_application: String,
    event_types: Vec<String>,
    #[serde(default = "default_group")]
    consumer_group: String,
    #[serde(default)]
    read_from: Option<String>,
    #[serde(default)]
    initial_cursors: Option<Vec<Value>>,
}

fn default_group() -> String {
    "default".into()
}

fn new_id() -> String {
    let a: u128 = rand::random();
    let hex = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

async fn create_subscription(
    State(bus): State<Arc<Bus>>,
    Json(wanted): Json<NewSubscription>,
) -> Response {
    if wanted.owning_application.is_empty() || wanted.event_types.is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "owning_application and event_types are required",
        );
    }
    let mut event_types = wanted.event_types.clone();
    event_types.sort();
    let mut subs = lock(&bus.subscriptions);
    if let Some(existing) = subs.values().find(|s| {
        let mut theirs = s.event_types.clone();
        theirs.sort();
        s.owning_application == wanted.owning_application
            && s.consumer_group == wanted.consumer_group
            && theirs == event_types
    }) {
        return (StatusCode::OK, Json(existing.document())).into_response();
    }
    let mut committed = BTreeMap::new();
    for name in &event_types {
        let Some(log) = bus.event_type(name) else {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("EventType \"{name}\" does not exist."),
            );
        };
        for (p, partition) in log.partition_names.iter().zip(&log.partitions) {
            let partition = lock(partition);
            let next = match wanted.read_from.as_deref().unwrap_or("end") {
                "begin" => partition.first,
                "end" => partition.end(),
                "cursors" => {
                    let given = wanted.initial_cursors.iter().flatten().find(|c| {
                        c.get("event_type").and_then(Value::as_str) == Some(name.as_str())
                            && c.get("partition").and_then(Value::as_str) == Some(p.as_str())
                    });
                    match given.and_then(|c| c.get("offset")).and_then(Value::as_str) {
                        Some(offset) => match partition.start_after(offset) {
                            Ok(next) => next,
                            Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e),
                        },
                        None => {
                            return problem(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                format!("initial_cursors miss partition {p} of {name}"),
                            );
                        }
                    }
                }
                other => {
                    return problem(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("read_from {other:?} is not supported"),
                    );
                }
            };
            committed.insert((name.clone(), p.clone()), next);
        }
    }
    let state = SubscriptionState {
        id: new_id(),
        owning_application: wanted.owning_application,
        event_types,
        consumer_group: wanted.consumer_group,
        created_at: chrono::Utc::now().to_rfc3339(),
        committed,
    };
    let document = state.document();
    subs.insert(state.id.clone(), state);
    (StatusCode::CREATED, Json(document)).into_response()
}

fn unknown_subscription(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("Subscription with id \"{id}\" does not exist"),
    )
}

async fn get_subscription(State(bus): State<Arc<Bus>>, Path(id): Path<String>) -> Response {
    match lock(&bus.subscriptions).get(&id) {
        Some(s) => Json(s.document()).into_response(),
        None => unknown_subscription(&id),
    }
}

async fn delete_subscription(State(bus): State<Arc<Bus>>, Path(id): Path<String>) -> Response {
    match lock(&bus.subscriptions).remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => unknown_subscription(&id),
    }
}

fn token_for(next: u64) -> String {
    format!("token-{next:x}")
}

async fn get_cursors(State(bus): State<Arc<Bus>>, Path(id): Path<String>) -> Response {
    let subs = lock(&bus.subscriptions);
    let Some(sub) = subs.get(&id) else {
        return unknown_subscription(&id);
    };
    let items: Vec<Value> = sub
        .committed
        .iter()
        .map(|((et, p), next)| {
            json!({"partition": p, "offset": PartitionLog::cursor_before(*next), "event_type": et, "cursor_token": token_for(*next)})
        })
        .collect();
    Json(json!({ "items": items })).into_response()
}

#[derive(Deserialize)]
struct CommitBody {
    items: Vec<CommitCursor>,
}

#[derive(Deserialize)]
struct CommitCursor {
    partition: String,
    offset: String,
    event_type: String,
    #[serde(default)]
    cursor_token: Option<String>,
}

async fn commit_cursors(
    State(bus): State<Arc<Bus>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CommitBody>,
) -> Response {
    let Some(stream_id) = headers
        .get("X-Nakadi-StreamId")
        .and_then(|v| v.to_str().ok())
    else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "X-Nakadi-StreamId header is missing",
        );
    };
    let sent_next = {
        let sessions = lock(&bus.sessions);
        let usable = sessions.get(stream_id).filter(|s| {
            s.subscription == id
                && (s.alive
                    || s.closed_at
                        .is_some_and(|at| at.elapsed() < s.commit_timeout))
        });
        match usable {
            Some(s) => s.sent_next.clone(),
            None => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Session with stream id {stream_id} not found"),
                );
            }
        }
    };
    let mut subs = lock(&bus.subscriptions);
    let Some(sub) = subs.get_mut(&id) else {
        return unknown_subscription(&id);
    };
    let mut results = Vec::new();
    let mut all_committed = true;
    for cursor in body.items {
        if cursor.cursor_token.as_deref().unwrap_or("").is_empty() {
            return problem(StatusCode::UNPROCESSABLE_ENTITY, "cursor_token is required");
        }
        let key = (cursor.event_type.clone(), cursor.partition.clone());
        let Some(&committed) = sub.committed.get(&key) else {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "partition {} of {} is not part of this subscription",
                    cursor.partition, cursor.event_type
                ),
            );
        };
        let next = match crate::log::number_of(&cursor.offset) {
            Ok(Some(n)) => n + 1,
            Ok(None) => 0,
            Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e),
        };
        if next > sent_next.get(&key).copied().unwrap_or(0) {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "cursor {} of partition {} was not sent to stream {stream_id}",
                    cursor.offset, cursor.partition
                ),
            );
        }
        let result = if next > committed {
            sub.committed.insert(key, next);
            "committed"
        } else {
            all_committed = false;
            "outdated"
        };
        results.push(json!({
            "cursor": {"partition": cursor.partition, "offset": cursor.offset, "event_type": cursor.event_type, "cursor_token": cursor.cursor_token},
            "result": result,
        }));
    }
    drop(subs);
    bus.changed.notify_waiters();
    if all_committed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::OK, Json(json!({ "items": results }))).into_response()
    }
}

async fn get_stats(State(bus): State<Arc<Bus>>, Path(id): Path<String>) -> Response {
    let Some(sub) = lock(&bus.subscriptions).get(&id).cloned() else {
        return unknown_subscription(&id);
    };
    let sessions = lock(&bus.sessions);
    let mut per_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, next) in &sub.committed {
        let (event_type, partition) = key;
        let active = holder(&sessions, &id, key);
        let end = bus
            .event_type(event_type)
            .and_then(|log| {
                log.index_of(partition)
                    .map(|i| lock(&log.partitions[i]).end())
            })
            .unwrap_or(0);
        let mut entry = json!({
            "partition": partition,
            "state": if active.is_some() { "assigned" } else { "unassigned" },
            "unconsumed_events": end.saturating_sub(*next),
        });
        if let Some(stream_id) = active {
            entry["stream_id"] = json!(stream_id);
            entry["assignment_type"] = json!("auto");
        }
        per_type.entry(event_type.clone()).or_default().push(entry);
    }
    let items: Vec<Value> = per_type
        .into_iter()
        .map(|(event_type, partitions)| json!({"event_type": event_type, "partitions": partitions}))
        .collect();
    Json(json!({ "items": items })).into_response()
}

async fn get_faults(State(bus): State<Arc<Bus>>) -> Response {
    let guard = lock(&bus.faults);
    Json(json!({"pending": guard.0, "injected": guard.1})).into_response()
}

async fn set_faults(State(bus): State<Arc<Bus>>, Json(plan): Json<FaultPlan>) -> Response {
    bus.set_faults(plan);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct ExpireRequest {
    event_type: String,
    partition: String,
    /// Events before this offset are deleted.
    before_offset: String,
}

async fn expire(State(bus): State<Arc<Bus>>, Json(request): Json<ExpireRequest>) -> Response {
    let before = match crate::log::number_of(&request.before_offset) {
        Ok(Some(n)) => n,
        Ok(None) => 0,
        Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    match bus.expire(&request.event_type, &request.partition, before) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e),
    }
}
