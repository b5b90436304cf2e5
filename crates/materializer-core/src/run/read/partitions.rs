//! The source's batches, trimmed to each partition's range, handed to one
//! decoder per partition.
//!
//! A plan with end cursors (Nakadi) names its partitions: their decoders start
//! before the first batch. A plan of a recording names the files and their
//! sizes instead, so that the recording is read once: a partition's decoder
//! starts with the partition's first new batch, and the newest offset read
//! of each partition becomes its end cursor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::decode::{
    DecodeError, DecodedPartition, PartitionDecoder, RequiredKeys, Spool, SpoolCap,
};
use crate::mapping::deletes::CompiledDeletes;
use crate::sink::OPEN_FILE_BYTES;
use crate::source::framing::overlap_message;
use crate::source::{Batch, Offset, PartitionRange, RecordingExtent, Source, SourceError};

use crate::failpoint::failpoint;
use crate::run::attempt::Attempt;
use crate::run::decide::KeySpools;
use crate::run::error::RunFailure;
use crate::run::map::MainWriters;
use crate::run::progress::Progress;

/// What a run reads.
pub(crate) enum Reading<'p> {
    /// Each partition from its start cursor up to its end cursor.
    Ranges(&'p [PartitionRange]),
    /// A recording's files up to their planned sizes; each partition from
    /// its cursor in `starts` (from its oldest event when it has none there)
    /// to the newest offset the files hold.
    Recording {
        starts: HashMap<String, Offset>,
        extent: &'p RecordingExtent,
    },
}

/// Why the first new batch of a partition cannot follow the committed
/// cursor `start`: its first event is not the one after it, so the events in
/// between are not in the recording.
fn gap_after(batch: &Batch, start: &Offset) -> Option<String> {
    if start.is_begin() {
        return None;
    }
    let first = batch.event_offset(0)?;
    let before_first = first.minus(1)?;
    before_first.is_after(start).then(|| {
        format!(
            "{}: the recording goes on at offset {first}, but the last committed run ended at \
             {start}: the events in between are not in the recording",
            batch.origin_or_unknown()
        )
    })
}

/// What the read found.
pub(crate) struct ReadPartitions {
    /// Per partition, its decoded events.
    pub decoded: BTreeMap<String, DecodedPartition>,
    /// The partitions in the order their decoders started: the index their
    /// key columns carry in the key spools.
    pub order: Vec<String>,
    /// The newest offset read of each partition that had new events and
    /// is not finished at its end cursor (each of a recording's).
    pub reached: BTreeMap<String, Offset>,
}

/// A partition being read.
struct Open {
    position: Offset,
    /// `None`: up to the end of the recording.
    end: Option<Offset>,
    /// Whether a batch of this range went to the decoder yet.
    started: bool,
    /// Its decoder, once a batch of the range reached it.
    sender: Option<mpsc::Sender<Batch>>,
}

type DecoderTask = JoinHandle<Result<DecodedPartition, DecodeError>>;

/// Starts the decoders of a read.
struct Decoders<'r, 'a> {
    attempt: &'r Attempt<'a>,
    /// Decoded events of all partitions may hold a quarter of the memory
    /// budget; the rest is for classification and the mapping's operators.
    spool_cap: SpoolCap,
    deletes: Option<CompiledDeletes>,
    keys: Option<&'r Arc<KeySpools>>,
    /// Whether the decoded rows are kept (or only the keys).
    keep_rows: bool,
    /// Partitions whose rows go to a MAIN writer as they are decoded.
    passing: usize,
    started: Vec<(String, DecoderTask)>,
}

impl Decoders<'_, '_> {
    /// Starts the decoder of `partition` on a blocking thread. With
    /// `writers`, its rows go on to a MAIN writer as they are decoded, while
    /// the open files fit half the memory budget; otherwise they wait in a
    /// spool. With key spools, its key columns go to their buckets' spools,
    /// the partition named by the order its decoder started in.
    fn start(
        &mut self,
        partition: &str,
        writers: Option<&mut MainWriters>,
    ) -> Result<mpsc::Sender<Batch>, RunFailure> {
        let attempt = self.attempt;
        let schema = attempt.topic.schema();
        // Few lines in flight per partition: each may be megabytes.
        let (sender, receiver) = mpsc::channel::<Batch>(4);
        let mut decoder = PartitionDecoder::new(
            schema.read_payload.clone(),
            schema.read_events.clone(),
            Arc::from(partition),
            RequiredKeys::of(attempt.topic.compaction(), self.deletes.clone()),
        )
        .map_err(|source| RunFailure::Decode {
            partition: partition.to_string(),
            source,
        })?;
        let memory_limit = attempt.engine.settings().memory_limit;
        let writers = writers.filter(|_| (self.passing + 1) * OPEN_FILE_BYTES <= memory_limit / 2);
        decoder = match writers {
            Some(writers) => {
                self.passing += 1;
                decoder
                    .with_spool(Spool::passing_to(
                        schema.read_events.clone(),
                        writers.start(partition),
                    ))
                    .without_key_columns()
            }
            None if !self.keep_rows => {
                decoder.with_spool(Spool::discarding(schema.read_events.clone()))
            }
            None => decoder.with_spool(Spool::bounded(
                schema.read_events.clone(),
                attempt.engine.runtime(),
                partition,
                self.spool_cap.clone(),
            )),
        };
        if let Some(keys) = self.keys {
            decoder = decoder.with_key_sink(keys.sink(self.started.len() as u32));
        }
        let progress = attempt.progress().clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut receiver = receiver;
            while let Some(batch) = receiver.blocking_recv() {
                decoder.push(&batch)?;
                let (events, bytes) = decoder.take_seen();
                Progress::add(&progress.events_read, events);
                Progress::add(&progress.bytes_read, bytes);
            }
            decoder.finish()
        });
        self.started.push((partition.to_string(), task));
        Ok(sender)
    }
}

/// Reads the partitions and decodes them, one decoder thread per
/// partition. `writers`: where the rows of a topic mapped while it is
/// read go; `keys`: where a compacting topic's key columns go;
/// `keep_rows`: whether the decoded rows are kept.
pub(crate) async fn read(
    attempt: &Attempt<'_>,
    reading: Reading<'_>,
    mut writers: Option<&mut MainWriters>,
    keys: Option<&Arc<KeySpools>>,
    keep_rows: bool,
) -> Result<ReadPartitions, RunFailure> {
    let progress = &attempt.request.progress;
    let memory_limit = attempt.engine.settings().memory_limit;
    // Deletes matter where keys are kept: a topic that compacts.
    let deletes = match attempt.topic.deletes() {
        Some(deletes) if attempt.topic.compaction().compact => Some(
            deletes
                .compile(attempt.engine, &attempt.topic.schema().read_events)
                .map_err(RunFailure::Deletes)?,
        ),
        _ => None,
    };
    let mut decoders = Decoders {
        attempt,
        spool_cap: SpoolCap::new(memory_limit / 4),
        deletes,
        keys,
        keep_rows,
        passing: 0,
        started: Vec::new(),
    };
    let mut open: HashMap<String, Open> = HashMap::new();
    let mut recording_starts = HashMap::new();
    let (mut stream, open_ended): (BoxStream<'static, Result<Batch, SourceError>>, bool) =
        match reading {
            Reading::Ranges(ranges) => {
                for range in ranges {
                    let sender = decoders.start(&range.partition, writers.as_deref_mut())?;
                    open.insert(
                        range.partition.clone(),
                        Open {
                            position: range.start.clone(),
                            end: Some(range.end.clone()),
                            started: false,
                            sender: Some(sender),
                        },
                    );
                }
                progress
                    .partitions_total
                    .store(ranges.len() as u64, Ordering::Relaxed);
                (attempt.request.source.stream(ranges), false)
            }
            Reading::Recording { starts, extent } => {
                let Source::Recorded(recorded) = &*attempt.request.source else {
                    return Err(RunFailure::Source(SourceError::Partition {
                        partition: "(all)".into(),
                        message:
                            "the run's plan reads a recording, but the topic's source is Nakadi"
                                .into(),
                    }));
                };
                progress
                    .recording_bytes
                    .store(extent.bytes(), Ordering::Relaxed);
                let read = progress.recording_bytes_read.clone();
                recording_starts = starts.clone();
                (recorded.stream_extent(starts, extent, read), true)
            }
        };
    let recorded = matches!(*attempt.request.source, Source::Recorded(_));
    loop {
        if !open_ended && open.is_empty() {
            break;
        }
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
        if open_ended && !open.contains_key(&partition) {
            // The recording's stream sends a partition's batches from
            // after its committed cursor (BEGIN for a new partition).
            let start = recording_starts
                .get(&partition)
                .cloned()
                .unwrap_or_else(Offset::begin);
            open.insert(
                partition.clone(),
                Open {
                    position: start,
                    end: None,
                    started: false,
                    sender: None,
                },
            );
        }
        let Some(state) = open.get_mut(&partition) else {
            continue; // finished already, or not part of this run
        };
        let source_error = |message: String| {
            RunFailure::Source(SourceError::Partition {
                partition: partition.clone(),
                message,
            })
        };
        let started = state.started;
        let end = state.end.clone().unwrap_or_else(|| batch.offset.clone());
        // A batch at an edge of the range may hold events outside it: it
        // is framed here and trimmed. The others go to the decoder as
        // they are, which frames their events while it decodes them.
        let at_edge =
            !started || batch.offset.is_after(&end) || !batch.offset.is_after(&state.position);
        if batch.unframed.is_some() && at_edge {
            batch
                .frame()
                .map_err(|e| source_error(format!("{}: {e}", batch.origin_or_unknown())))?;
        }
        // A recording is a stream as it was read: a batch that repeats
        // events already read is a broken recording, not a resend to
        // skip (a subscription resends after a reconnect; a file never).
        if recorded
            && started
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
        // Nor may a recording skip events after the committed cursor.
        if open_ended
            && !started
            && let Some(message) = gap_after(&batch, &state.position)
        {
            return Err(source_error(message));
        }
        let has_events = match batch.unframed {
            Some(_) => true, // inside the range: the decoder frames it
            None => {
                batch
                    .retain_between(&state.position, &end)
                    .map_err(|e| source_error(e.to_string()))?;
                !batch.events.is_empty()
            }
        };
        if has_events {
            if state.sender.is_none() {
                state.sender = Some(decoders.start(&partition, writers.as_deref_mut())?);
                Progress::add(&progress.partitions_total, 1);
            }
            state.position = batch.offset.clone();
            state.started = true;
            if let Some(sender) = &state.sender
                && sender.send(batch).await.is_err()
            {
                break; // the decoder failed; its error is collected below
            }
            failpoint("reading");
            progress
                .retries
                .store(attempt.request.source.retries(), Ordering::Relaxed);
        }
        if let Some(end) = &state.end
            && !end.is_after(&state.position)
        {
            debug!(topic = %attempt.topic.name(), partition, "partition read to its end cursor");
            open.remove(&partition);
            Progress::add(&progress.partitions_finished, 1);
        }
    }
    drop(stream);
    // Where each partition that had new events got to.
    let reached = open
        .iter()
        .filter(|(_, state)| state.started)
        .map(|(partition, state)| (partition.clone(), state.position.clone()))
        .collect();
    let unfinished: Vec<(String, Offset, Offset)> = open
        .drain()
        .filter_map(|(p, s)| Some((p, s.position, s.end?)))
        .collect();
    if open_ended {
        Progress::add(&progress.partitions_finished, decoders.started.len() as u64);
    }

    let mut decoded = BTreeMap::new();
    let mut order = Vec::new();
    for (partition, handle) in decoders.started {
        let result = handle.await.map_err(RunFailure::Internal)?;
        let part = result.map_err(|source| RunFailure::Decode {
            partition: partition.clone(),
            source,
        })?;
        Progress::add(&progress.events_rejected, part.rejected.len() as u64);
        order.push(partition.clone());
        decoded.insert(partition, part);
    }
    if let Some((partition, reached, end)) = unfinished.into_iter().next() {
        return Err(RunFailure::SourceEnded {
            partition,
            reached,
            end,
        });
    }
    Ok(ReadPartitions {
        decoded,
        order,
        reached,
    })
}
