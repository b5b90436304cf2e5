//! Classification by key bucket: what a compacting run decides about every
//! event (MAIN, CORRECTION, OLDER or superseded) and the key state it leaves,
//! computed one bucket of keys at a time so that memory does not grow with
//! the run.
//!
//! Classifying an event needs every version of its key in the run, from
//! whichever Nakadi partition each came (a key's versions may be on any:
//! Nakadi's default partition strategy is `random`), and the version the key
//! state committed, and nothing about other keys. So, while the partitions
//! are read, each decoder sends its events' key columns (with the event's
//! partition and position) to the spool of the key's bucket, the key state's
//! buckets ([`KeySpools`]); a spool holds a share of the memory budget and
//! spills the rest. Then the buckets are decided `parallelism` at a time
//! (`decide`): a bucket's keys are read back, their committed versions
//! looked up in that bucket's segments only, its keys decided over all
//! partitions at once ([`classify`](classify::classes) has the rules), and
//! the bucket's new segment written from its MAIN versions. A bucket of more
//! than `PASS_ROWS` key rows is decided in passes, each taking the keys of
//! one slice of the key hash (every version of a key in the same pass), so
//! that a decision holds a bounded number of rows however large the run;
//! each pass's MAIN versions, sorted, wait for the bucket's segment in a
//! spool. What stays per event until its partition is mapped is its class
//! ([`Classes`]): one byte in memory, or on disk for a run of more events
//! than a sixteenth of the memory budget holds. A key's MAIN row goes to the
//! files of the partition its winning version came from.

mod apart;
mod class;
mod classes;
mod classify;
mod keys;
mod partition;
mod pass;
mod spools;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::{StreamExt, TryStreamExt};

pub(crate) use apart::{ApartContext, decide_bucket, decision_of};
pub use apart::{
    BucketDecided, DecidedShare, KeyRows, PartitionKeys, SHARE_CLASS, SHARE_DELETED, SHARE_EVENT,
    Shares, share_events_schema,
};
pub(crate) use class::{Class, of_class, of_streamed_class, split_by_class};
pub(crate) use classes::Classes;
pub use classify::classify;
pub(crate) use keys::topic_keys_schema;
pub(crate) use partition::{Decision, Decisions};
pub(crate) use spools::KeySpools;

use super::attempt::Attempt;
use super::error::RunFailure;
use crate::decode::{Spool, SpoolCap};
use crate::source::partition_cmp;
use crate::state::{CommittedState, KeyStateError, SortedInput, StateIndex, StateStore};
use classes::ClassesBuilder;
use partition::PartitionDecided;
use pass::{BucketContext, Pass};
use spools::{SPILL_BUFFER, passes_for};

/// Decides every bucket of `spools` (`rows`: each partition's rows, by
/// the index its keys were sent with), `parallelism` buckets at a time.
pub(crate) async fn decide(
    attempt: &Attempt<'_>,
    spools: KeySpools,
    partitions: &[(String, u64)],
    store: &StateStore<'_>,
    committed: &CommittedState,
    sequence: u64,
) -> Result<Decisions, RunFailure> {
    let runtime = spools.runtime.clone();
    let keys_cap = attempt.engine.settings().memory_limit / 16 / partitions.len().max(1);
    let spooled = spools.finish().map_err(KeyStateError::Spool)?;
    let partition_order = partition_order(partitions.iter().map(|(name, _)| name.as_str()));
    let context = BucketContext {
        topic: attempt.topic,
        partition_order: &partition_order,
        store,
        committed,
        sequence,
        attempt: &attempt.id,
    };
    // The classes wait in memory, a byte per event, while they fit a
    // sixteenth of the budget; beyond it in runs on disk.
    let events: u64 = partitions.iter().map(|(_, rows)| rows).sum();
    let spill_classes = events > class_memory(attempt.engine.settings().memory_limit);
    let mut decided_partitions: Vec<PartitionDecided> = partitions
        .iter()
        .map(|(name, rows)| PartitionDecided {
            name: name.clone(),
            classes: ClassesBuilder::new(spill_classes, &runtime, name, *rows),
            main_input: 0,
            correction_events: 0,
            deletes: 0,
            keys: None,
        })
        .collect();
    let mut run = Vec::new();
    let mut segments = Vec::new();
    let mut key_state_seconds = 0.0;
    let buckets = spooled.len() as u32;
    let passes: Vec<Pass> = spooled
        .into_iter()
        .enumerate()
        .flat_map(|(bucket, keys)| {
            let keys = keys.map(Arc::new);
            let passes = keys.as_ref().map_or(1, |k| passes_for(k.rows));
            (0..passes).map(move |pass| Pass {
                bucket: bucket as u32,
                keys: keys.clone(),
                pass,
                passes,
            })
        })
        .collect();
    let parallelism = attempt.request.parallelism.max(1);
    // Passes are decided `parallelism` at a time and applied in order, so
    // that the KEYS rows come in the same order on every attempt; a
    // bucket's segment is written once its last pass is applied, while
    // the next passes are decided.
    let mut decided = futures::stream::iter(passes)
        .map(|pass| context.decide_pass(pass, buckets))
        .buffered(parallelism);
    // A bucket's sorted deltas wait for its last pass in spools that
    // share a sixteenth of the budget and spill the rest.
    let delta_cap = SpoolCap::new(attempt.engine.settings().memory_limit / 16);
    let mut deltas: HashMap<u32, (Vec<SortedInput>, u64)> = HashMap::new();
    let mut commits = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            next = decided.try_next(), if commits.len() < parallelism => {
                let Some(pass) = next? else {
                    break;
                };
                key_state_seconds += pass.key_state_seconds;
                let of_bucket = deltas.entry(pass.bucket).or_default();
                if let Some(delta) = pass.delta {
                    of_bucket.1 += delta.num_rows() as u64;
                    of_bucket.0.push(if pass.only {
                        futures::stream::iter([Ok(delta)]).boxed()
                    } else {
                        spooled_delta(delta, &runtime, pass.bucket, &delta_cap)?
                    });
                }
                if pass.last {
                    let of_bucket = deltas.remove(&pass.bucket).unwrap_or_default();
                    commits.push(context.commit_bucket(pass.bucket, of_bucket));
                }
                for share in pass.shares {
                    let part = decided_partitions
                        .get_mut(share.partition as usize)
                        .ok_or_else(|| {
                            RunFailure::invariant("a key spool names a partition the run does not read")
                        })?;
                    part.apply(share, &mut run, &runtime, keys_cap)?;
                }
            }
            Some(written) = commits.next(), if !commits.is_empty() => {
                let (written, seconds) = written?;
                segments.extend(written);
                key_state_seconds += seconds;
            }
        }
    }
    while let Some(written) = commits.next().await {
        let (written, seconds) = written?;
        segments.extend(written);
        key_state_seconds += seconds;
    }
    drop(decided);
    segments.sort_by_key(|s| s.bucket);
    let decisions = decided_partitions
        .into_iter()
        .map(|part| Ok((part.name.clone(), part.finish()?)))
        .collect::<Result<HashMap<_, _>, RunFailure>>()?;
    Ok(Decisions {
        partitions: decisions,
        state: StateIndex {
            buckets: committed.buckets(),
            segments,
        },
        key_state_seconds,
    })
}

/// Per partition (by its index), its place in partition order: a key is
/// decided over the partitions in partition order.
fn partition_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let names: Vec<&str> = names.collect();
    let mut by_name: Vec<usize> = (0..names.len()).collect();
    by_name.sort_by(|&a, &b| partition_cmp(names[a], names[b]));
    let mut order = vec![0u32; names.len()];
    for (place, &index) in by_name.iter().enumerate() {
        order[index] = place as u32;
    }
    order
}

/// Rows of a delta's slices in its spool: what a merge holds of it at once.
const DELTA_SLICE: usize = 16 << 10;

/// A pass's sorted delta in a spool that shares `cap` and spills the rest,
/// read back in slices as an input of the bucket's merge.
fn spooled_delta(
    delta: RecordBatch,
    runtime: &Arc<RuntimeEnv>,
    bucket: u32,
    cap: &SpoolCap,
) -> Result<SortedInput, RunFailure> {
    let schema = delta.schema();
    let mut spool = Spool::labelled_sharing(
        schema.clone(),
        runtime.clone(),
        &format!("key state delta of bucket {bucket}"),
        cap.clone(),
        SPILL_BUFFER,
    );
    let mut offset = 0;
    while offset < delta.num_rows() {
        let len = DELTA_SLICE.min(delta.num_rows() - offset);
        // A copy: a slice kept in memory would keep the whole delta alive.
        let slice = concat_batches(&schema, [&delta.slice(offset, len)])
            .map_err(|e| RunFailure::KeyState(e.into()))?;
        spool.push(slice).map_err(KeyStateError::Spool)?;
        offset += len;
    }
    drop(delta);
    let spooled = Arc::new(spool.finish().map_err(KeyStateError::Spool)?);
    let batches = spooled.batches();
    Ok(futures::stream::iter(batches.map(move |batch| {
        // The spool (and its file) lives as long as its batches are read.
        let _spooled = &spooled;
        batch.map_err(KeyStateError::Spool)
    }))
    .boxed())
}

/// Bytes the classes of a run's events may take in memory: a sixteenth of
/// the budget; a test build (the `failpoints` feature) takes
/// `MATERIALIZER_CLASS_BYTES` instead, so that small runs keep them on disk.
fn class_memory(memory_limit: usize) -> u64 {
    let budget = (memory_limit / 16) as u64;
    #[cfg(feature = "failpoints")]
    let budget = std::env::var("MATERIALIZER_CLASS_BYTES")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(budget);
    budget
}
