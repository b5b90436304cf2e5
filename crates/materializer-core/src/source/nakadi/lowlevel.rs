//! Reading partitions with the low-level API: one connection per partition,
//! each resumed from the last offset it delivered after any fault.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::client::{NakadiClient, NakadiError, StreamParams};
use crate::source::framing::{self, Batch};
use crate::source::lines::{Line, LineReader};
use crate::source::{Cursor, Offset, PartitionRange, SourceError};

/// Batches of all `ranges`, read concurrently.
pub fn stream(
    client: Arc<NakadiClient>,
    event_type: String,
    ranges: &[PartitionRange],
) -> BoxStream<'static, Result<Batch, SourceError>> {
    let (tx, rx) = mpsc::channel::<Result<Batch, SourceError>>(16 * ranges.len().max(1));
    for range in ranges.iter().filter(|r| !r.is_empty()) {
        let range = range.clone();
        let (client, event_type, tx) = (client.clone(), event_type.clone(), tx.clone());
        tokio::spawn(async move {
            if let Err(e) = read_partition(&client, &event_type, &range, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
    }
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Why a connection ended before the partition's end offset.
enum Interruption {
    /// Worth resuming (dropped, cut, silent, or a temporary refusal).
    Resume {
        reason: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The consumer is gone: stop quietly.
    Closed,
}

async fn read_partition(
    client: &NakadiClient,
    event_type: &str,
    range: &PartitionRange,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> Result<(), SourceError> {
    let settings = &client.settings;
    let mut position = range.start.clone();
    let mut failures = 0u32;
    while range.end.is_after(&position) {
        let remaining = position.distance_to(&range.end).unwrap_or(0);
        let params = StreamParams {
            batch_limit: settings.batch_limit,
            batch_flush_timeout: settings.batch_flush_timeout,
            stream_timeout: settings.stream_timeout,
            stream_limit: remaining,
            ..Default::default()
        };
        let cursors = [Cursor {
            partition: range.partition.clone(),
            offset: position.clone(),
        }];
        let before = position.clone();
        let interruption = match client.open_events(event_type, &cursors, &params).await {
            Ok(response) => match deliver(client, response, range, &mut position, tx).await {
                Ok(()) => return Ok(()),
                Err(i) => i,
            },
            Err(refused) if refused.error.is_retryable() => Interruption::Resume {
                reason: crate::error::report(&refused.error),
                retry_after: refused.retry_after,
            },
            Err(refused) => return Err(source_error(&range.partition, refused.error)),
        };
        let (reason, retry_after) = match interruption {
            Interruption::Closed => return Ok(()),
            Interruption::Resume {
                reason,
                retry_after,
            } => (reason, retry_after),
        };
        if position != before {
            failures = 0; // progress since the last connection
        }
        failures += 1;
        if failures > settings.max_retries {
            return Err(source_error(
                &range.partition,
                NakadiError::GaveUp {
                    what: format!("stream of partition {} of {event_type}", range.partition),
                    attempts: failures,
                    last: reason,
                },
            ));
        }
        client.retries.fetch_add(1, Ordering::Relaxed);
        let pause = if failures == 1 && retry_after.is_none() {
            std::time::Duration::ZERO // resume a dropped stream at once, back off if it repeats
        } else {
            client.backoff(failures, retry_after)
        };
        warn!(
            event_type,
            partition = %range.partition,
            position = %position,
            attempt = failures,
            pause_ms = pause.as_millis() as u64,
            reason,
            "stream interrupted; resuming from the last delivered offset"
        );
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// Hands the batches of one connection on until the partition's end offset.
async fn deliver(
    client: &NakadiClient,
    response: reqwest::Response,
    range: &PartitionRange,
    position: &mut Offset,
    tx: &mpsc::Sender<Result<Batch, SourceError>>,
) -> Result<(), Interruption> {
    let mut lines = LineReader::new(Box::pin(response.bytes_stream()));
    let silence = client.settings.silence_timeout;
    loop {
        let line = match tokio::time::timeout(silence, lines.next_line()).await {
            Err(_) => {
                return Err(Interruption::Resume {
                    reason: format!("no data or keep-alive for {} s", silence.as_secs()),
                    retry_after: None,
                });
            }
            Ok(Err(e)) => {
                return Err(Interruption::Resume {
                    reason: format!(
                        "connection dropped: {}",
                        super::client::describe_transport(&e)
                    ),
                    retry_after: None,
                });
            }
            Ok(Ok(Line::End)) => {
                return Err(Interruption::Resume {
                    reason: "the server ended the stream".into(),
                    retry_after: None,
                });
            }
            Ok(Ok(Line::Truncated(_))) => {
                return Err(Interruption::Resume {
                    reason: "the stream ended in the middle of a batch".into(),
                    retry_after: None,
                });
            }
            Ok(Ok(Line::Complete(line))) => line,
        };
        let batch = match framing::parse_head(line) {
            Ok(batch) => batch,
            Err(e) => {
                return Err(Interruption::Resume {
                    reason: format!("a malformed batch line ({e})"),
                    retry_after: None,
                });
            }
        };
        if *batch.partition != *range.partition {
            continue;
        }
        if batch.is_keep_alive() {
            debug!(partition = %range.partition, "keep-alive");
            continue;
        }
        if !batch.offset.is_after(position) {
            continue; // already delivered
        }
        *position = batch.offset.clone();
        if tx.send(Ok(batch)).await.is_err() {
            return Err(Interruption::Closed);
        }
        if !range.end.is_after(position) {
            return Ok(());
        }
    }
}

fn source_error(partition: &str, error: NakadiError) -> SourceError {
    SourceError::NakadiPartition {
        partition: partition.to_string(),
        source: error,
    }
}
