//! Reading through a subscription, the API Nakadi recommends.
//!
//! The run's own manifests stay the source of truth for positions; the
//! subscription's cursors follow them: they are committed only after the run's
//! manifest, to exactly the run's end cursors. Because Nakadi closes a stream
//! whose sent events stay uncommitted past the commit timeout (60 s at most), a
//! run that takes longer commits through a new stream: the new stream re-sends
//! the uncommitted events, which are skipped, until it has passed the end cursors.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::client::{
    CommitOutcome, NakadiClient, NakadiError, Refused, StreamParams, Subscription,
    SubscriptionCursor,
};
use crate::source::framing::{self, Batch};
use crate::source::lines::{Line, LineReader};
use crate::source::{Offset, PartitionRange, SourceError};

/// Where a new subscription starts when the topic has no committed run yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    #[default]
    Begin,
    End,
}

/// The subscription a topic reads through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    pub owning_application: String,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    #[serde(default)]
    pub read_from: ReadFrom,
}

fn default_group() -> String {
    "materializer".into()
}

/// The stream a run read through, kept for the commit.
struct Session {
    stream_id: String,
    alive: Arc<AtomicBool>,
    /// Ends the connection (after the commit, or when the reader goes away).
    stop: CancellationToken,
    /// Per partition: the newest offset the stream sent and its cursor token.
    tokens: HashMap<String, (Offset, String)>,
}

pub struct SubscriptionReader {
    client: Arc<NakadiClient>,
    event_type: String,
    settings: SubscriptionSettings,
    id: tokio::sync::Mutex<Option<String>>,
    session: Arc<Mutex<Option<Session>>>,
    /// Cancelled when the reader is dropped: its streams close with it.
    gone: CancellationToken,
}

impl Drop for SubscriptionReader {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

fn nakadi(partition: Option<&str>, source: NakadiError) -> SourceError {
    match partition {
        Some(partition) => SourceError::NakadiPartition {
            partition: partition.to_string(),
            source,
        },
        None => SourceError::Nakadi(source),
    }
}

impl SubscriptionReader {
    pub fn new(
        client: Arc<NakadiClient>,
        event_type: String,
        settings: SubscriptionSettings,
    ) -> Self {
        SubscriptionReader {
            client,
            event_type,
            settings,
            id: tokio::sync::Mutex::new(None),
            session: Arc::new(Mutex::new(None)),
            gone: CancellationToken::new(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "subscription of {} ({}/{})",
            self.event_type, self.settings.owning_application, self.settings.consumer_group
        )
    }

    /// Finds or creates the subscription. A new one starts at the committed
    /// run's end cursors when there is one.
    async fn subscription_id(
        &self,
        committed: &BTreeMap<String, Offset>,
    ) -> Result<String, SourceError> {
        let mut id = self.id.lock().await;
        if let Some(id) = id.as_ref() {
            return Ok(id.clone());
        }
        let (read_from, initial_cursors) = if committed.is_empty() {
            let from = match self.settings.read_from {
                ReadFrom::Begin => "begin",
                ReadFrom::End => "end",
            };
            (from.to_string(), None)
        } else {
            let cursors = committed
                .iter()
                .map(|(partition, offset)| SubscriptionCursor {
                    partition: partition.clone(),
                    offset: offset.clone(),
                    event_type: self.event_type.clone(),
                    cursor_token: None,
                })
                .collect();
            ("cursors".to_string(), Some(cursors))
        };
        let wanted = Subscription {
            id: None,
            owning_application: self.settings.owning_application.clone(),
            event_types: vec![self.event_type.clone()],
            consumer_group: self.settings.consumer_group.clone(),
            read_from: Some(read_from),
            initial_cursors,
        };
        let found = self
            .client
            .find_or_create_subscription(&wanted)
            .await
            .map_err(|e| nakadi(None, e))?;
        let found_id = found.id.unwrap_or_default();
        *id = Some(found_id.clone());
        Ok(found_id)
    }

    /// Brings the subscription's cursors to the committed run's end cursors
    /// (a run that died between its manifest and its cursor commit leaves them
    /// behind). Cursors ahead of the committed run are an error: the events in
    /// between were never materialized.
    pub async fn recover(&self, committed: &BTreeMap<String, Offset>) -> Result<(), SourceError> {
        let id = self.subscription_id(committed).await?;
        if committed.is_empty() {
            return Ok(());
        }
        let current: HashMap<String, Offset> = self
            .client
            .subscription_cursors(&id)
            .await
            .map_err(|e| nakadi(None, e))?
            .into_iter()
            .filter(|c| c.event_type == self.event_type)
            .map(|c| (c.partition, c.offset))
            .collect();
        let mut behind = BTreeMap::new();
        for (partition, end) in committed {
            let at = current
                .get(partition)
                .cloned()
                .unwrap_or_else(Offset::begin);
            if at.is_after(end) {
                return Err(SourceError::SubscriptionAhead {
                    subscription: id,
                    partition: partition.clone(),
                    subscription_offset: at,
                    committed_offset: end.clone(),
                });
            }
            if end.is_after(&at) {
                behind.insert(partition.clone(), end.clone());
            }
        }
        if !behind.is_empty() {
            info!(subscription = %id, partitions = behind.len(), "committing the cursors of the last committed run");
            self.commit_through_new_stream(&id, &behind).await?;
        }
        Ok(())
    }

    /// The batches of `ranges`, from one subscription stream (resumed after faults).
    pub fn stream(
        &self,
        ranges: &[PartitionRange],
    ) -> BoxStream<'static, Result<Batch, SourceError>> {
        let (tx, rx) = mpsc::channel::<Result<Batch, SourceError>>(64);
        let max_uncommitted = uncommitted_budget(ranges);
        let client = self.client.clone();
        let session = self.session.clone();
        let id_slot = self.id.try_lock().ok().and_then(|g| g.clone());
        let gone = self.gone.clone();
        tokio::spawn(async move {
            let Some(id) = id_slot else {
                let _ = tx
                    .send(Err(nakadi(
                        None,
                        NakadiError::Protocol {
                            what: "subscription".into(),
                            message: "the subscription was not resolved before streaming".into(),
                        },
                    )))
                    .await;
                return;
            };
            if let Err(e) = run_sessions(&client, &id, max_uncommitted, &session, &tx, &gone).await
            {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// Commits the run's end cursors, after its manifest.
    pub async fn commit(&self, ends: &BTreeMap<String, Offset>) -> Result<(), SourceError> {
        let id = self.subscription_id(ends).await?;
        let attempt = {
            let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            session.as_ref().and_then(|s| {
                if !s.alive.load(Ordering::Relaxed) {
                    return None;
                }
                let cursors = cursors_to_commit(&self.event_type, ends, &s.tokens)?;
                Some((s.stream_id.clone(), cursors))
            })
        };
        if let Some((stream_id, cursors)) = attempt {
            match self.client.commit(&id, &stream_id, &cursors).await {
                Ok(CommitOutcome::Committed | CommitOutcome::Outdated) => {
                    self.close_session();
                    return Ok(());
                }
                Ok(CommitOutcome::StreamGone(detail)) => {
                    info!(subscription = %id, detail, "the run's stream is gone; committing through a new stream");
                }
                Err(e) => return Err(nakadi(None, e)),
            }
        }
        self.close_session();
        self.commit_through_new_stream(&id, ends).await
    }

    fn close_session(&self) {
        if let Some(s) = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            s.alive.store(false, Ordering::Relaxed);
            s.stop.cancel();
        }
    }

    /// Opens a stream, lets it pass `ends` (skipping what it re-sends) and
    /// commits `ends` with its id.
    async fn commit_through_new_stream(
        &self,
        id: &str,
        ends: &BTreeMap<String, Offset>,
    ) -> Result<(), SourceError> {
        let settings = &self.client.settings;
        let mut failures = 0u32;
        loop {
            match self.try_commit_through_new_stream(id, ends).await {
                Ok(()) => return Ok(()),
                Err(refused) if refused.error.is_retryable() && failures < settings.max_retries => {
                    failures += 1;
                    let pause = self.client.backoff(failures, refused.retry_after);
                    self.client.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(subscription = id, attempt = failures, error = %refused.error, "cursor commit failed; retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(refused) => return Err(nakadi(None, refused.error)),
            }
        }
    }

    async fn try_commit_through_new_stream(
        &self,
        id: &str,
        ends: &BTreeMap<String, Offset>,
    ) -> Result<(), Refused> {
        let settings = &self.client.settings;
        let params = StreamParams {
            batch_limit: settings.batch_limit,
            batch_flush_timeout: settings.batch_flush_timeout,
            stream_timeout: settings.stream_timeout,
            stream_limit: 0,
            max_uncommitted_events: Some(i32::MAX as u64),
            commit_timeout: Some(settings.commit_timeout),
        };
        let (response, stream_id) = self.client.open_subscription(id, &params).await?;
        let mut lines = LineReader::new(Box::pin(response.bytes_stream()));
        let mut tokens: HashMap<String, (Offset, String)> = HashMap::new();
        let transport = |reason: String| Refused {
            error: NakadiError::Transport {
                what: format!("stream of subscription {id} (for the cursor commit)"),
                message: reason,
            },
            retry_after: None,
        };
        while cursors_to_commit(&self.event_type, ends, &tokens).is_none() {
            let line = match tokio::time::timeout(settings.silence_timeout, lines.next_line()).await
            {
                Err(_) => return Err(transport("silent".into())),
                Ok(Err(e)) => return Err(transport(super::client::describe_transport(&e))),
                Ok(Ok(Line::Complete(line))) => line,
                Ok(Ok(_)) => {
                    return Err(transport(
                        "the stream ended before it passed the run's end cursors".into(),
                    ));
                }
            };
            let batch = framing::parse_line(line).map_err(|e| transport(e.to_string()))?;
            record_token(&mut tokens, &batch);
        }
        let cursors = cursors_to_commit(&self.event_type, ends, &tokens).unwrap_or_default();
        match self.client.commit(id, &stream_id, &cursors).await? {
            CommitOutcome::Committed | CommitOutcome::Outdated => Ok(()),
            CommitOutcome::StreamGone(detail) => {
                Err(transport(format!("stream id refused at commit: {detail}")))
            }
        }
    }
}

/// The cursors that commit `ends`, once the stream has passed all of them.
fn cursors_to_commit(
    event_type: &str,
    ends: &BTreeMap<String, Offset>,
    tokens: &HashMap<String, (Offset, String)>,
) -> Option<Vec<SubscriptionCursor>> {
    ends.iter()
        .filter(|(_, end)| !end.is_begin())
        .map(|(partition, end)| {
            let (sent, token) = tokens.get(partition)?;
            if end.is_after(sent) {
                return None;
            }
            Some(SubscriptionCursor {
                partition: partition.clone(),
                offset: end.clone(),
                event_type: event_type.to_string(),
                cursor_token: Some(token.clone()),
            })
        })
        .collect()
}

fn record_token(tokens: &mut HashMap<String, (Offset, String)>, batch: &Batch) {
    if let Some(token) = &batch.cursor_token {
        let entry = tokens
            .entry(batch.partition.to_string())
            .or_insert_with(|| (batch.offset.clone(), token.clone()));
        if !entry.0.is_after(&batch.offset) {
            *entry = (batch.offset.clone(), token.clone());
        }
    }
}

/// How many uncommitted events the stream may send: enough for the run, and
/// no more when that is known, so that Nakadi pauses at the run's end.
fn uncommitted_budget(ranges: &[PartitionRange]) -> u64 {
    let mut total = 0u64;
    for range in ranges {
        match range.start.distance_to(&range.end) {
            Some(n) => total += n,
            None => return i32::MAX as u64,
        }
    }
    total.max(1)
}

/// Keeps a session going (resuming after faults) until the consumer is gone.
async fn run_sessions(
    client: &NakadiClient,
    id: &str,
    max_uncommitted: u64,
    session: &Arc<Mutex<Option<Session>>>,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
    gone: &CancellationToken,
) -> Result<(), SourceError> {
    let settings = &client.settings;
    let params = StreamParams {
        batch_limit: settings.batch_limit,
        batch_flush_timeout: settings.batch_flush_timeout,
        stream_timeout: settings.stream_timeout,
        stream_limit: 0,
        max_uncommitted_events: Some(max_uncommitted),
        commit_timeout: Some(settings.commit_timeout),
    };
    let mut failures = 0u32;
    loop {
        if gone.is_cancelled() {
            return Ok(());
        }
        let (response, stream_id) = match client.open_subscription(id, &params).await {
            Ok(opened) => opened,
            Err(refused) if refused.error.is_retryable() && failures < settings.max_retries => {
                failures += 1;
                client.retries.fetch_add(1, Ordering::Relaxed);
                let pause = client.backoff(failures, refused.retry_after);
                warn!(subscription = id, attempt = failures, error = %refused.error, "cannot open the subscription stream; retrying");
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(refused) => return Err(nakadi(None, refused.error)),
        };
        let alive = Arc::new(AtomicBool::new(true));
        let stop = gone.child_token();
        *session.lock().unwrap_or_else(|e| e.into_inner()) = Some(Session {
            stream_id: stream_id.clone(),
            alive: alive.clone(),
            stop: stop.clone(),
            tokens: HashMap::new(),
        });
        let mut lines = LineReader::new(Box::pin(response.bytes_stream()));
        let mut delivered = false;
        let reason = loop {
            if !alive.load(Ordering::Relaxed) {
                return Ok(()); // committed: the session is no longer needed
            }
            let next = tokio::select! {
                next = tokio::time::timeout(settings.silence_timeout, lines.next_line()) => next,
                _ = stop.cancelled() => return Ok(()), // committed, or the reader is gone: close the stream
            };
            let line = match next {
                Err(_) => {
                    break format!(
                        "no data or keep-alive for {} s",
                        settings.silence_timeout.as_secs()
                    );
                }
                Ok(Err(e)) => {
                    break format!(
                        "connection dropped: {}",
                        super::client::describe_transport(&e)
                    );
                }
                Ok(Ok(Line::End)) => break "the server ended the stream".to_string(),
                Ok(Ok(Line::Truncated(_))) => {
                    break "the stream ended in the middle of a batch".to_string();
                }
                Ok(Ok(Line::Complete(line))) => line,
            };
            let batch = match framing::parse_head(line) {
                Ok(batch) => batch,
                Err(e) => break format!("a malformed batch line ({e})"),
            };
            if let Some(s) = session.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                record_token(&mut s.tokens, &batch);
            }
            if batch.is_keep_alive() || tx.is_closed() {
                continue; // keep-alive, or the run has all it needs: hold the session for the commit
            }
            delivered = true;
            if tx.send(Ok(batch)).await.is_err() {
                continue;
            }
        };
        alive.store(false, Ordering::Relaxed);
        if tx.is_closed() {
            return Ok(()); // the run read everything; the commit opens its own stream
        }
        if delivered {
            failures = 0;
        }
        failures += 1;
        if failures > settings.max_retries {
            return Err(nakadi(
                None,
                NakadiError::GaveUp {
                    what: format!("stream of subscription {id}"),
                    attempts: failures,
                    last: reason,
                },
            ));
        }
        client.retries.fetch_add(1, Ordering::Relaxed);
        let pause = if failures == 1 {
            Duration::ZERO
        } else {
            client.backoff(failures, None)
        };
        warn!(
            subscription = id,
            stream_id,
            attempt = failures,
            reason,
            "subscription stream interrupted; reconnecting"
        );
        tokio::time::sleep(pause).await;
    }
}
