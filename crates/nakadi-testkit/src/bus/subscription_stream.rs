//! Subscription streams, as Nakadi runs them: a stream holds the partitions no
//! other stream of the subscription holds (none free: 409), sends every event
//! there is (it knows no end a client may have in mind), pauses while
//! `max_uncommitted_events` events it sent wait for their commit, and ends
//! when `commit_timeout` passes without a commit while events wait.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::streaming::{Sender, Sent, StreamQuery, StreamSettings, batch_line, stream_response};
use super::{Bus, Chunk, lock, new_id, problem, token_for, unknown_subscription};
use crate::faults::Request;
use crate::log::{PartitionLog, SubscriptionState, offset_of};

/// A partition of a subscription: (event type, partition).
pub(super) type Key = (String, String);

/// A stream connection of a subscription.
pub(super) struct Session {
    pub(super) subscription: String,
    pub(super) alive: bool,
    pub(super) closed_at: Option<Instant>,
    pub(super) commit_timeout: Duration,
    /// The partitions the stream holds, each with the next event number to send.
    pub(super) sent_next: BTreeMap<Key, u64>,
}

impl Session {
    fn holds(&self, subscription: &str, key: &Key) -> bool {
        self.alive && self.subscription == subscription && self.sent_next.contains_key(key)
    }

    /// Whether a commit may name this stream: open, or closed within its
    /// commit timeout.
    pub(super) fn accepts_commits(&self) -> bool {
        self.alive
            || self
                .closed_at
                .is_some_and(|at| at.elapsed() < self.commit_timeout)
    }
}

/// The open stream of subscription `id` that holds `key`, if any.
pub(super) fn holder<'a>(
    sessions: &'a HashMap<String, Session>,
    id: &str,
    key: &Key,
) -> Option<&'a str> {
    sessions
        .iter()
        .find(|(_, s)| s.holds(id, key))
        .map(|(stream_id, _)| stream_id.as_str())
}

/// The partitions of `sub` no open stream holds, at their committed positions.
fn free_partitions(
    sessions: &HashMap<String, Session>,
    sub: &SubscriptionState,
) -> BTreeMap<Key, u64> {
    sub.committed
        .iter()
        .filter(|(key, _)| holder(sessions, &sub.id, key).is_none())
        .map(|(key, next)| (key.clone(), *next))
        .collect()
}

pub(super) async fn stream_subscription(
    State(bus): State<Arc<Bus>>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
) -> Response {
    if let Some(refused) = bus.refusal(Request::SubscriptionEvents) {
        return refused;
    }
    let settings = match query.settings() {
        Ok(s) => s,
        Err(r) => return r,
    };
    let commit_timeout = match query.commit_timeout {
        Some(s) if s > 0.0 => Duration::from_secs_f64(s.min(60.0)),
        _ => Duration::from_secs(60),
    };
    let Some(sub) = lock(&bus.subscriptions).get(&id).cloned() else {
        return unknown_subscription(&id);
    };
    let stream_id = new_id();
    {
        let mut sessions = lock(&bus.sessions);
        let free = free_partitions(&sessions, &sub);
        if free.is_empty() {
            bus.busy_refused.fetch_add(1, Ordering::Relaxed);
            return problem(
                StatusCode::CONFLICT,
                "No free slots for streaming available. Try to connect later.",
            );
        }
        sessions.insert(
            stream_id.clone(),
            Session {
                subscription: id.clone(),
                alive: true,
                closed_at: None,
                commit_timeout,
                sent_next: free,
            },
        );
    }
    let window = bus.window(query.max_uncommitted_events.unwrap_or(10).max(1));
    bus.streams_opened.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    let mut sender = Sender::new(tx, &bus);
    let mut stream = SubscriptionStream {
        bus: bus.clone(),
        subscription: id,
        stream_id: stream_id.clone(),
        settings,
        window,
        clock: CommitClock::new(commit_timeout),
        sent_total: 0,
    };
    tokio::spawn(async move {
        stream.produce(&mut sender).await;
        // Free the partitions before the client sees the end of the stream.
        stream.close();
        drop(sender);
    });
    stream_response(rx, Some(("X-Nakadi-StreamId", stream_id)))
}

/// Where a stream stands in each partition it holds.
struct Positions {
    /// Per partition: the next event to send, and the next event after the
    /// committed cursor.
    partitions: BTreeMap<Key, (u64, u64)>,
}

impl Positions {
    /// Events the stream sent that wait for their commit.
    fn uncommitted(&self) -> u64 {
        self.partitions
            .values()
            .map(|(sent, committed)| sent.saturating_sub(*committed))
            .sum()
    }

    /// Grows with every commit to the stream's partitions.
    fn committed(&self) -> u64 {
        self.partitions
            .values()
            .map(|(_, committed)| committed)
            .sum()
    }
}

/// Nakadi's commit timeout on one stream: it runs while events the stream
/// sent wait for their commit, and starts again with every commit.
struct CommitClock {
    timeout: Duration,
    since: Option<Instant>,
    committed: Option<u64>,
}

impl CommitClock {
    fn new(timeout: Duration) -> CommitClock {
        CommitClock {
            timeout,
            since: None,
            committed: None,
        }
    }

    /// Takes in the stream's positions: a commit starts the clock again,
    /// nothing left to commit stops it.
    fn observe(&mut self, positions: &Positions) {
        let committed = positions.committed();
        if positions.uncommitted() == 0 {
            self.since = None;
        } else if self.committed.is_some_and(|before| before != committed) {
            self.since = Some(Instant::now());
        }
        self.committed = Some(committed);
    }

    /// Events went out: the clock runs, if it did not already.
    fn sent(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    fn deadline(&self) -> Option<Instant> {
        self.since.map(|at| at + self.timeout)
    }

    fn expired(&self) -> bool {
        self.deadline().is_some_and(|at| Instant::now() >= at)
    }
}

/// Sends a line, unless the deadline passes first (a client that stopped
/// reading does not hold the stream open past its commit timeout).
async fn before(deadline: Option<Instant>, sending: impl Future<Output = Sent>) -> Sent {
    match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), sending)
            .await
            .unwrap_or(Sent::Closed),
        None => sending.await,
    }
}

/// One stream of a subscription, producing its lines.
struct SubscriptionStream {
    bus: Arc<Bus>,
    subscription: String,
    stream_id: String,
    settings: StreamSettings,
    /// At most this many sent events wait for their commit (max_uncommitted_events).
    window: u64,
    clock: CommitClock,
    sent_total: u64,
}

impl SubscriptionStream {
    async fn produce(&mut self, sender: &mut Sender) {
        if let Sent::Closed = sender.silence_fault().await {
            return;
        }
        let mut keep_alives = 0u64;
        loop {
            if sender.started.elapsed() >= self.settings.lifetime {
                return;
            }
            let bus = self.bus.clone();
            let notified = bus.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(positions) = self.positions() else {
                return; // the subscription was deleted
            };
            self.clock.observe(&positions);
            if self.clock.expired() {
                info!(stream_id = %self.stream_id, "commit timeout: closing the stream");
                return;
            }
            let sent = if sender.keepalive_only() {
                self.bus.count(|i| i.keepalive_only += 1);
                0
            } else {
                match self.send_batches(&positions, sender).await {
                    Some(sent) => sent,
                    None => return,
                }
            };
            if sent > 0 {
                keep_alives = 0;
                continue;
            }
            // Nothing to send, or the window is full: wait for events or commits.
            let wait = match self.clock.deadline() {
                Some(at) => self
                    .settings
                    .flush
                    .min(at.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(10)),
                None => self.settings.flush,
            };
            tokio::select! {
                woken = tokio::time::timeout(wait, notified) => {
                    if woken.is_ok() && !sender.keepalive_only() {
                        continue;
                    }
                }
                _ = sender.tx.closed() => return, // the client went away
            }
            if self.clock.expired() {
                continue; // the check at the top closes the stream
            }
            if !self.send_keep_alives(&positions, sender).await {
                return;
            }
            keep_alives += 1;
            if self.settings.keep_alive_limit > 0 && keep_alives >= self.settings.keep_alive_limit {
                return;
            }
        }
    }

    /// The stream's positions now; `None` when the subscription or the stream is gone.
    fn positions(&self) -> Option<Positions> {
        let committed = lock(&self.bus.subscriptions)
            .get(&self.subscription)
            .map(|s| s.committed.clone())?;
        let sessions = lock(&self.bus.sessions);
        let session = sessions.get(&self.stream_id)?;
        Some(Positions {
            partitions: session
                .sent_next
                .iter()
                .map(|(key, sent)| {
                    let committed = committed.get(key).copied().unwrap_or(0);
                    (key.clone(), (*sent, committed))
                })
                .collect(),
        })
    }

    /// Sends what the window lets out, a batch per partition that has events;
    /// the number of events sent, or `None` when the stream ended.
    async fn send_batches(&mut self, positions: &Positions, sender: &mut Sender) -> Option<u64> {
        let mut budget = self.window.saturating_sub(positions.uncommitted());
        let mut sent = 0u64;
        for ((event_type, partition), (next, _)) in &positions.partitions {
            if budget == 0 {
                break;
            }
            let Some(log) = self.bus.event_type(event_type) else {
                continue;
            };
            let Some(index) = log.index_of(partition) else {
                continue;
            };
            let mut limit = (self.settings.batch_limit as u64).min(budget);
            if self.settings.stream_limit > 0 {
                limit = limit.min(self.settings.stream_limit - self.sent_total);
            }
            let events = lock(&log.partitions[index]).read(*next, limit as usize);
            if events.is_empty() {
                continue;
            }
            let count = events.len() as u64;
            let new_next = next + count;
            budget -= count;
            sent += count;
            self.sent_total += count;
            if let Some(s) = lock(&self.bus.sessions).get_mut(&self.stream_id) {
                s.sent_next
                    .insert((event_type.clone(), partition.clone()), new_next);
            }
            self.clock.sent();
            let token = token_for(new_next);
            let line = batch_line(
                partition,
                &offset_of(new_next - 1),
                &events,
                Some((event_type, &token)),
            );
            if let Sent::Closed = before(self.clock.deadline(), sender.batch(line)).await {
                return None;
            }
            if self.settings.stream_limit > 0 && self.sent_total >= self.settings.stream_limit {
                return None;
            }
        }
        Some(sent)
    }

    /// A keep-alive per partition, at the last event sent; false when the stream ended.
    async fn send_keep_alives(&self, positions: &Positions, sender: &mut Sender) -> bool {
        for ((event_type, partition), (next, _)) in &positions.partitions {
            let token = token_for(*next);
            let line: Bytes = batch_line(
                partition,
                &PartitionLog::cursor_before(*next),
                &[],
                Some((event_type, &token)),
            );
            if let Sent::Closed = before(self.clock.deadline(), sender.keep_alive(line)).await {
                return false;
            }
        }
        true
    }

    /// Frees the stream's partitions; commits with its id stay possible for
    /// the commit timeout.
    fn close(&self) {
        if let Some(s) = lock(&self.bus.sessions).get_mut(&self.stream_id) {
            s.alive = false;
            s.closed_at = Some(Instant::now());
        }
        debug!(stream_id = %self.stream_id, "subscription stream closed");
    }
}
