//! A Nakadi-compatible server for development and tests, built from Nakadi's
//! published API (`nakadi-event-bus-api.yaml`): event types, partitions,
//! publishing, the low-level stream, subscriptions with their streams, cursor
//! commits and stats, offsets in Nakadi's `001-0001-...` format, bearer-token
//! checks, and faults injected on request (`/_admin/faults`).
//!
//! It keeps everything in memory. The `nakadi-server` binary starts one
//! preloaded with the recordings under `fixtures/recorded`.
//!
//! The parts: [`event_types`] (event types, partitions, appending events),
//! [`publishing`], [`streaming`] (what both kinds of stream share),
//! [`low_level`] (the low-level stream), [`subscriptions`] and their streams
//! ([`subscription_stream`]), and [`admin`] (faults and expiry). This file
//! holds the state, the routes and the answers the handlers share.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use tracing::info;

use crate::faults::{FaultPlan, Injected};
use crate::log::{EventTypeLog, SubscriptionState};

mod admin;
mod event_types;
mod low_level;
mod publishing;
mod streaming;
mod subscription_stream;
mod subscriptions;

use admin::{expire, get_faults, set_faults};
use event_types::{
    create_event_type, get_event_type, get_partition, get_partitions, list_event_types,
};
use low_level::stream_events;
use publishing::publish;
use subscription_stream::{Session, stream_subscription};
use subscriptions::{
    commit_cursors, create_subscription, delete_subscription, get_cursors, get_stats,
    get_subscription,
};

type Chunk = Result<Bytes, std::io::Error>;

/// The server's state.
pub struct Bus {
    event_types: RwLock<BTreeMap<String, Arc<EventTypeLog>>>,
    subscriptions: Mutex<BTreeMap<String, SubscriptionState>>,
    sessions: Mutex<HashMap<String, Session>>,
    faults: Mutex<(FaultPlan, Injected)>,
    /// The last refused request's kind and moment, until the next request of
    /// that kind (its retry) comes.
    refused: Mutex<Option<(crate::faults::Request, Instant)>>,
    /// For each refused request, how long its retry waited.
    retry_waits: Mutex<Vec<Duration>>,
    token: Option<String>,
    /// Woken when events are published or cursors committed.
    changed: tokio::sync::Notify,
    /// Chooses the partition of events published under the `random` strategy.
    partition_rng: Mutex<StdRng>,
    pub streams_opened: AtomicU64,
    /// Subscription streams refused because another stream holds every
    /// partition (409).
    pub busy_refused: AtomicU64,
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

fn unknown_event_type(name: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("EventType \"{name}\" does not exist."),
    )
}

fn unknown_subscription(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("Subscription with id \"{id}\" does not exist"),
    )
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

fn token_for(next: u64) -> String {
    format!("token-{next:x}")
}

impl Bus {
    /// An empty server; `token` makes every Nakadi request need `Authorization: Bearer <token>`.
    pub fn new(token: Option<String>, default_partitions: usize) -> Arc<Bus> {
        Arc::new(Bus {
            event_types: RwLock::new(BTreeMap::new()),
            subscriptions: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(HashMap::new()),
            faults: Mutex::new((FaultPlan::default(), Injected::default())),
            refused: Mutex::new(None),
            retry_waits: Mutex::new(Vec::new()),
            token,
            changed: tokio::sync::Notify::new(),
            partition_rng: Mutex::new(StdRng::from_os_rng()),
            streams_opened: AtomicU64::new(0),
            busy_refused: AtomicU64::new(0),
            default_partitions: default_partitions.max(1),
        })
    }

    /// Makes the `random` partition strategy repeat itself: the same events
    /// published in the same order land in the same partitions.
    pub fn seed_partitions(&self, seed: u64) {
        *lock(&self.partition_rng) = StdRng::seed_from_u64(seed);
    }

    fn event_type(&self, name: &str) -> Option<Arc<EventTypeLog>> {
        self.event_types
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
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
