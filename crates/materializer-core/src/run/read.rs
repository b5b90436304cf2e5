//! Read: the source's batches, trimmed to each partition's range, handed to
//! one decoder per partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::debug;

use crate::decode::{DecodedPartition, PartitionDecoder, RequiredKeys, Spool};
use crate::source::framing::overlap_message;
use crate::source::{Batch, Offset, PartitionRange, Source, SourceError};

use super::buckets::KeySpools;
use super::{MainWriters, Progress, Run, RunFailure, failpoint};

impl Run<'_> {
    /// Reads every range and decodes it, one decoder thread per partition.
    /// With `writers`, each partition's rows go on to a MAIN writer as they
    /// are decoded instead of waiting in a spool. With `keys`, each
    /// partition's key columns go to their buckets' spools, the partition
    /// named by its index in `ranges`.
    pub(super) async fn read(
        &self,
        ranges: &[PartitionRange],
        mut writers: Option<&mut MainWriters>,
        keys: Option<&Arc<KeySpools>>,
    ) -> Result<BTreeMap<String, DecodedPartition>, RunFailure> {
        struct Open {
            position: Offset,
            end: Offset,
            /// Whether a batch of this range went to the decoder yet.
            started: bool,
            sender: mpsc::Sender<Batch>,
        }
        let progress = &self.request.progress;
        let mut open: HashMap<String, Open> = HashMap::new();
        let mut decoders = Vec::new();
        // Decoded events may hold a quarter of the memory budget; the rest is
        // for classification and the mapping's operators.
        let spool_cap = self.engine.settings().memory_limit / 4 / ranges.len().max(1);
        // Deletes matter where keys are kept: a topic that compacts.
        let deletes = match self.topic.deletes() {
            Some(deletes) if self.topic.compaction().compact => Some(
                deletes
                    .compile(self.engine, &self.topic.schema().read_events)
                    .map_err(RunFailure::Deletes)?,
            ),
            _ => None,
        };
        for (index, range) in ranges.iter().enumerate() {
            // Few lines in flight per partition: each may be megabytes.
            let (sender, receiver) = mpsc::channel::<Batch>(4);
            let mut decoder = PartitionDecoder::new(
                self.topic.schema().read_payload.clone(),
                self.topic.schema().read_events.clone(),
                Arc::from(range.partition.as_str()),
                RequiredKeys::of(self.topic.compaction(), deletes.clone()),
            )
            .map_err(|source| RunFailure::Decode {
                partition: range.partition.clone(),
                source,
            })?;
            let events_schema = self.topic.schema().read_events.clone();
            decoder = match writers.as_deref_mut() {
                Some(writers) => decoder
                    .with_spool(Spool::passing_to(
                        events_schema,
                        writers.start(&range.partition),
                    ))
                    .without_key_columns(),
                None => decoder.with_spool(Spool::bounded(
                    events_schema,
                    self.engine.runtime(),
                    &range.partition,
                    spool_cap,
                )),
            };
            if let Some(keys) = keys {
                decoder = decoder.with_key_sink(keys.sink(index as u32));
            }
            let partition = range.partition.clone();
            decoders.push((partition, {
                let progress = progress.clone();
                tokio::task::spawn_blocking(move || {
                    let mut receiver = receiver;
                    while let Some(batch) = receiver.blocking_recv() {
                        decoder.push(&batch)?;
                        let (events, bytes) = decoder.take_seen();
                        Progress::add(&progress.events_read, events);
                        Progress::add(&progress.bytes_read, bytes);
                    }
                    decoder.finish()
                })
            }));
            open.insert(
                range.partition.clone(),
                Open {
                    position: range.start.clone(),
                    end: range.end.clone(),
                    started: false,
                    sender,
                },
            );
        }

        let recorded = matches!(*self.request.source, Source::Recorded(_));
        let mut stream = self.request.source.stream(ranges);
        while !open.is_empty() {
            let next = match writers.as_deref_mut() {
                // A writer that fails ends the run at once.
                Some(writers) => tokio::select! {
                    next = stream.next() => next,
                    failed = writers.failure() => return Err(failed),
                },
                None => stream.next().await,
            };
            let Some(batch) = next else {
                break;
            };
            let mut batch = batch?;
            let partition = batch.partition.to_string();
            let Some(state) = open.get_mut(&partition) else {
                continue; // finished already, or not part of this run
            };
            let source_error = |message: String| {
                RunFailure::Source(SourceError::Partition {
                    partition: partition.clone(),
                    message,
                })
            };
            // A batch at an edge of the range may hold events outside it: it
            // is framed here and trimmed. The others go to the decoder as
            // they are, which frames their events while it decodes them.
            let at_edge = !state.started
                || batch.offset.is_after(&state.end)
                || !batch.offset.is_after(&state.position);
            if batch.unframed.is_some() && at_edge {
                batch
                    .frame()
                    .map_err(|e| source_error(format!("{}: {e}", batch.origin_or_unknown())))?;
            }
            // A recording is a stream as it was read: a batch that repeats
            // events already read is a broken recording, not a resend to
            // skip (a subscription resends after a reconnect; a file never).
            if recorded
                && state.started
                && batch.unframed.is_none()
                && let Some(first) = batch.event_offset(0)
                && !first.is_after(&state.position)
            {
                return Err(source_error(format!(
                    "{}: {}",
                    batch.origin_or_unknown(),
                    overlap_message(&batch.offset, &partition, &first, &state.position)
                )));
            }
            let has_events = match batch.unframed {
                Some(_) => true, // inside the range: the decoder frames it
                None => {
                    batch
                        .retain_between(&state.position, &state.end)
                        .map_err(|e| source_error(e.to_string()))?;
                    !batch.events.is_empty()
                }
            };
            if has_events {
                state.position = batch.offset.clone();
                state.started = true;
                if state.sender.send(batch).await.is_err() {
                    break; // the decoder failed; its error is collected below
                }
                failpoint("reading");
                progress.retries.store(
                    self.request.source.retries(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            if !state.end.is_after(&state.position) {
                debug!(topic = %self.topic.name(), partition, "partition read to its end cursor");
                open.remove(&partition);
                Progress::add(&progress.partitions_finished, 1);
            }
        }
        drop(stream);
        let unfinished: Vec<(String, Offset, Offset)> =
            open.drain().map(|(p, s)| (p, s.position, s.end)).collect();

        let mut decoded = BTreeMap::new();
        for (partition, handle) in decoders {
            let result = handle.await.map_err(RunFailure::Internal)?;
            let part = result.map_err(|source| RunFailure::Decode {
                partition: partition.clone(),
                source,
            })?;
            Progress::add(&progress.events_rejected, part.rejected.len() as u64);
            decoded.insert(partition, part);
        }
        if let Some((partition, reached, end)) = unfinished.into_iter().next() {
            return Err(RunFailure::SourceEnded {
                partition,
                reached,
                end,
            });
        }
        Ok(decoded)
    }
}
