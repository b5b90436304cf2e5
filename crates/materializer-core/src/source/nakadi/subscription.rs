//! Reading through a subscription, the API Nakadi recommends.
//!
//! The run's own manifests stay the source of truth for positions; the
//! subscription's cursors follow them: they are committed only after the run's
//! manifest, to exactly the run's end cursors. Nakadi sends past those end
//! cursors and counts all it sent as uncommitted, so streams ask for the widest
//! window. Because Nakadi closes a stream whose sent events stay uncommitted
//! past the commit timeout (60 s at most), a run that reads longer goes on
//! through a new stream, which re-sends from the committed cursors: what the run
//! has is skipped, and only a stream that takes a partition further is
//! progress. A run that commits later commits through a new stream the same
//! way, once that stream has passed the end cursors.

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
    CommitOutcome, NakadiClient, NakadiError, NakadiSettings, Refused, StreamParams, Subscription,
    SubscriptionCursor,
};
use crate::source::framing::{self, Batch};
use crate::source::lines::{Line, LineReader};
use crate::source::{Offset, PartitionRange, Reached, SourceError, Unfinished};

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
        let id_slot = self.id.try_lock().ok().and_then(|g| g.clone());
        let streams = id_slot.map(|id| Streams {
            client: self.client.clone(),
            id,
            session: self.session.clone(),
            tx: tx.clone(),
            gone: self.gone.clone(),
            reach: Reach::new(ranges),
        });
        tokio::spawn(async move {
            let result = match streams {
                Some(streams) => streams.run().await,
                None => Err(nakadi(
                    None,
                    NakadiError::Protocol {
                        what: "subscription".into(),
                        message: "the subscription was not resolved before streaming".into(),
                    },
                )),
            };
            if let Err(e) = result {
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
        let params = stream_params(settings);
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

/// The window every stream asks for (`max_uncommitted_events`): the widest
/// Nakadi takes. Nakadi counts every event it sends as uncommitted until a
/// commit, those past the run's end cursors too (it knows no end), and a run
/// commits only after its manifest. A narrower window can fill before the run
/// has its events: the stream then pauses until Nakadi closes it for want of
/// commits, and the next stream fills the same way.
const WINDOW: u64 = i32::MAX as u64;

fn stream_params(settings: &NakadiSettings) -> StreamParams {
    StreamParams {
        batch_limit: settings.batch_limit,
        batch_flush_timeout: settings.batch_flush_timeout,
        stream_timeout: settings.stream_timeout,
        stream_limit: 0,
        max_uncommitted_events: Some(WINDOW),
        commit_timeout: Some(settings.commit_timeout),
    }
}

/// How far the run got in each partition of its plan, over all its streams.
/// Every new stream starts again at the subscription's committed cursors and
/// re-sends what earlier ones sent: only a batch that takes a partition
/// further within the plan is progress.
#[derive(Debug)]
struct Reach {
    partitions: Vec<Reached>,
    /// Times a partition got further.
    advances: u64,
}

impl Reach {
    fn new(ranges: &[PartitionRange]) -> Reach {
        Reach {
            partitions: ranges
                .iter()
                .map(|r| Reached {
                    partition: r.partition.clone(),
                    at: r.start.clone(),
                    end: r.end.clone(),
                })
                .collect(),
            advances: 0,
        }
    }

    /// Takes in a batch with events; true when it took its partition further.
    fn advance(&mut self, batch: &Batch) -> bool {
        let Some(reached) = self
            .partitions
            .iter_mut()
            .find(|p| *p.partition == *batch.partition)
        else {
            return false;
        };
        let to = if batch.offset.is_after(&reached.end) {
            &reached.end
        } else {
            &batch.offset
        };
        if !to.is_after(&reached.at) {
            return false;
        }
        reached.at = to.clone();
        self.advances += 1;
        true
    }

    fn unfinished(&self) -> Unfinished {
        Unfinished(
            self.partitions
                .iter()
                .filter(|p| p.end.is_after(&p.at))
                .cloned()
                .collect(),
        )
    }
}

/// How one stream ended.
enum StreamEnd {
    /// The run has its events (or is gone), or its cursors are committed.
    Done,
    /// Refused or interrupted: another stream may get further.
    Interrupted {
        error: NakadiError,
        retry_after: Option<Duration>,
    },
}

/// The streams of one run, opened one after another until it has its events.
struct Streams {
    client: Arc<NakadiClient>,
    id: String,
    session: Arc<Mutex<Option<Session>>>,
    tx: mpsc::Sender<Result<Batch, SourceError>>,
    /// Cancelled when the reader is dropped.
    gone: CancellationToken,
    reach: Reach,
}

impl Streams {
    /// Reconnects after every interruption; a reconnect after a stream that
    /// took no partition further counts toward `max_retries`, whatever ended
    /// it (Nakadi closing it for want of commits included).
    async fn run(mut self) -> Result<(), SourceError> {
        let max_retries = self.client.settings.max_retries;
        let mut stalled = 0u32;
        loop {
            if self.gone.is_cancelled() {
                return Ok(());
            }
            let advances = self.reach.advances;
            let (error, retry_after) = match self.one_stream().await? {
                StreamEnd::Done => return Ok(()),
                StreamEnd::Interrupted { error, retry_after } => (error, retry_after),
            };
            stalled = if self.reach.advances > advances {
                0
            } else {
                stalled + 1
            };
            if stalled > max_retries {
                return Err(SourceError::NoProgress {
                    subscription: self.id.clone(),
                    streams: stalled,
                    unfinished: self.reach.unfinished(),
                    last: error,
                });
            }
            self.client.retries.fetch_add(1, Ordering::Relaxed);
            // After progress, reconnect at once; back off while streams get nowhere.
            let pause = if stalled == 0 && retry_after.is_none() {
                Duration::ZERO
            } else {
                self.client.backoff(stalled.max(1), retry_after)
            };
            warn!(
                subscription = %self.id,
                attempt = stalled,
                pause_ms = pause.as_millis() as u64,
                error = %crate::error::report(&error),
                "subscription stream interrupted; reconnecting"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Opens a stream and hands its batches on until it ends.
    async fn one_stream(&mut self) -> Result<StreamEnd, SourceError> {
        let params = stream_params(&self.client.settings);
        let (response, stream_id) = match self.client.open_subscription(&self.id, &params).await {
            Ok(opened) => opened,
            Err(refused) if refused.error.is_retryable() => {
                return Ok(StreamEnd::Interrupted {
                    error: refused.error,
                    retry_after: refused.retry_after,
                });
            }
            Err(refused) => return Err(nakadi(None, refused.error)),
        };
        let alive = Arc::new(AtomicBool::new(true));
        let stop = self.gone.child_token();
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(Session {
            stream_id: stream_id.clone(),
            alive: alive.clone(),
            stop: stop.clone(),
            tokens: HashMap::new(),
        });
        let lines = LineReader::new(Box::pin(response.bytes_stream()));
        let Some(reason) = self.deliver(lines, &alive, &stop).await else {
            return Ok(StreamEnd::Done);
        };
        alive.store(false, Ordering::Relaxed);
        if self.tx.is_closed() {
            return Ok(StreamEnd::Done); // the run read everything; the commit opens its own stream
        }
        Ok(StreamEnd::Interrupted {
            error: NakadiError::Transport {
                what: format!("stream {stream_id}"),
                message: reason,
            },
            retry_after: None,
        })
    }

    /// Hands the batches of one stream on; why it ended, or `None` when it
    /// is no longer needed (committed, or the reader is gone). Once the run
    /// has its events the stream is held, for the commit with its id.
    async fn deliver<S>(
        &mut self,
        mut lines: LineReader<S>,
        alive: &AtomicBool,
        stop: &CancellationToken,
    ) -> Option<String>
    where
        S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    {
        let silence = self.client.settings.silence_timeout;
        loop {
            if !alive.load(Ordering::Relaxed) {
                return None; // committed
            }
            let next = tokio::select! {
                next = tokio::time::timeout(silence, lines.next_line()) => next,
                _ = stop.cancelled() => return None, // committed, or the reader is gone: close the stream
            };
            let line = match next {
                Err(_) => {
                    return Some(format!("no data or keep-alive for {} s", silence.as_secs()));
                }
                Ok(Err(e)) => {
                    return Some(format!(
                        "connection dropped: {}",
                        super::client::describe_transport(&e)
                    ));
                }
                Ok(Ok(Line::End)) => return Some("the server ended the stream".to_string()),
                Ok(Ok(Line::Truncated(_))) => {
                    return Some("the stream ended in the middle of a batch".to_string());
                }
                Ok(Ok(Line::Complete(line))) => line,
            };
            let batch = match framing::parse_head(line) {
                Ok(batch) => batch,
                Err(e) => return Some(format!("a malformed batch line ({e})")),
            };
            if let Some(s) = self
                .session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                record_token(&mut s.tokens, &batch);
            }
            if batch.is_keep_alive() || self.tx.is_closed() {
                continue; // keep-alive, or the run has all it needs: hold the session for the commit
            }
            self.reach.advance(&batch);
            // A run that stopped reading closes the channel: the next line finds it closed.
            let _ = self.tx.send(Ok(batch)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(partition: &str, last: u64, events: usize) -> Batch {
        let events = vec!["{}"; events].join(",");
        let line = format!(
            r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{last:018}"}},"events":[{events}]}}"#
        );
        framing::parse_head(Bytes::from(line)).unwrap()
    }

    fn offset(n: u64) -> Offset {
        Offset::new(format!("001-0001-{n:018}"))
    }

    #[test]
    fn only_batches_that_take_a_partition_further_within_the_plan_are_progress() {
        let mut reach = Reach::new(&[
            PartitionRange {
                partition: "0".into(),
                start: offset(9),
                end: offset(20),
            },
            PartitionRange {
                partition: "1".into(),
                start: Offset::begin(),
                end: offset(4),
            },
        ]);
        assert!(reach.advance(&batch("0", 14, 5)));
        // A new stream re-sends from the committed cursor.
        assert!(!reach.advance(&batch("0", 12, 3)));
        assert!(!reach.advance(&batch("0", 14, 2)));
        // A batch across the end counts up to the end; past it, nothing counts.
        assert!(reach.advance(&batch("0", 24, 10)));
        assert!(!reach.advance(&batch("0", 30, 6)));
        // A partition outside the plan is no progress.
        assert!(!reach.advance(&batch("7", 3, 4)));
        assert!(reach.advance(&batch("1", 1, 2)));
        assert_eq!(reach.advances, 3);
        assert_eq!(
            reach.unfinished().to_string(),
            "partition 1 read to 001-0001-000000000000000001, its plan ends at 001-0001-000000000000000004"
        );
    }
}
