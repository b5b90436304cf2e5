//! One pass over a bucket's keys: their committed versions looked up, the
//! keys decided over all partitions at once (each partition's share in
//! arrival order, the partitions in partition order), the MAIN versions
//! sorted for the bucket's new segment; and the segment written once the
//! bucket's last pass is in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::class::{Class, of_class};
use super::classify::classes;
use super::keys::KeysSchema;
use super::partition::Share;
use super::spools::{BucketSpool, EVENT, HASH, PARTITION, pass_of};
use crate::config::Topic;
use crate::decode::DELETED_COLUMN;
use crate::run::error::RunFailure;
use crate::state::{CommittedState, KeyStateError, Segment, SortedInput, StateStore};

/// One pass over a bucket's keys, decided: its partitions' shares and the
/// MAIN versions that go to the bucket's segment, sorted by key.
pub(super) struct DecidedPass {
    pub(super) bucket: u32,
    /// Whether it is the bucket's only pass.
    pub(super) only: bool,
    /// Whether it is the bucket's last pass: the bucket's segment follows.
    pub(super) last: bool,
    pub(super) shares: Vec<Share>,
    pub(super) delta: Option<RecordBatch>,
    pub(super) key_state_seconds: f64,
}

/// A pass to decide: a bucket's keys (`None`: it has none), and the slice
/// of them this pass takes.
pub(super) struct Pass {
    pub(super) bucket: u32,
    pub(super) keys: Option<Arc<BucketSpool>>,
    pub(super) pass: u32,
    pub(super) passes: u32,
}

/// What deciding a bucket needs besides its keys.
pub(super) struct BucketContext<'a> {
    pub(super) topic: &'a Topic,
    /// Per partition (by the index its keys were sent with), its place in
    /// partition order: the order in which a key's partitions are read.
    pub(super) partition_order: &'a [u32],
    pub(super) store: &'a StateStore<'a>,
    pub(super) committed: &'a CommittedState,
    pub(super) sequence: u64,
    pub(super) attempt: &'a str,
}

impl BucketContext<'_> {
    /// Looks the keys of a pass up and decides them over all partitions.
    pub(super) async fn decide_pass(
        &self,
        pass: Pass,
        buckets: u32,
    ) -> Result<DecidedPass, RunFailure> {
        let mut key_state_seconds = 0.0;
        let last = pass.pass + 1 == pass.passes;
        let mut by_partition = match pass.keys {
            Some(keys) => {
                let slice = (pass.passes > 1).then_some((buckets, pass.passes, pass.pass));
                tokio::task::spawn_blocking(move || by_partition(&keys, slice))
                    .await
                    .map_err(RunFailure::Internal)??
            }
            None => Vec::new(),
        };
        let order = |partition: u32| self.partition_order.get(partition as usize).copied();
        by_partition.sort_by_key(|(partition, _)| order(*partition));
        let started = Instant::now();
        let key_columns: Vec<&[ArrayRef]> = by_partition
            .iter()
            .flat_map(|(_, batches)| batches.iter().map(RecordBatch::columns))
            .collect();
        let state = if key_columns.is_empty() {
            self.store.empty()
        } else {
            self.store.lookup(self.committed, &key_columns).await?
        };
        drop(key_columns);
        key_state_seconds += started.elapsed().as_secs_f64();

        let compaction = self.topic.compaction().clone();
        let keep_history = self.topic.keeps_history();
        let state_schema = self.store.schema().clone();
        let (key_names, ordering_name) = self.topic.warehouse().key_names(&compaction);
        let classified = tokio::task::spawn_blocking(move || {
            // Every partition's share at once: a key's versions may be on any.
            let ends: Vec<usize> = by_partition
                .iter()
                .scan(0, |events, (_, batches)| {
                    *events += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
                    Some(*events)
                })
                .collect();
            let columns: Vec<Vec<ArrayRef>> = by_partition
                .iter()
                .flat_map(|(_, batches)| batches.iter().map(|b| b.columns().to_vec()))
                .collect();
            let all = if columns.is_empty() {
                Vec::new()
            } else {
                classes(&compaction, &columns, &ends, &state, keep_history)?
            };
            drop(columns);
            let mut keys_schema = KeysSchema::new(key_names, ordering_name);
            let mut shares = Vec::with_capacity(by_partition.len());
            let mut versions = Vec::new();
            let mut start = 0;
            for ((partition, batches), &end) in by_partition.into_iter().zip(&ends) {
                let classes = all[start..end].to_vec();
                start = end;
                versions.extend(main_versions(&batches, &classes, &state_schema)?);
                shares.push(Share {
                    partition,
                    events: events_of(&batches)?,
                    deleted: deleted_of(&batches)?,
                    keys: keys_schema.rows(&batches, &classes)?,
                    classes,
                });
            }
            Ok::<_, ArrowError>((shares, versions))
        })
        .await
        .map_err(RunFailure::Internal)?
        .map_err(|e| RunFailure::KeyState(e.into()))?;
        let (shares, versions) = classified;
        let started = Instant::now();
        let delta = self
            .store
            .sorted_delta(self.committed, pass.bucket, &versions)?;
        key_state_seconds += started.elapsed().as_secs_f64();
        Ok(DecidedPass {
            bucket: pass.bucket,
            only: pass.passes == 1,
            last,
            shares,
            delta,
            key_state_seconds,
        })
    }

    /// Writes the bucket's segment from the sorted deltas of all its passes
    /// (and their number of keys); gives the bucket's segments after the run
    /// and the seconds it took.
    pub(super) async fn commit_bucket(
        &self,
        bucket: u32,
        deltas: (Vec<SortedInput>, u64),
    ) -> Result<(Vec<Segment>, f64), RunFailure> {
        let started = Instant::now();
        let segments = self
            .store
            .commit_bucket(self.committed, bucket, deltas, self.sequence, self.attempt)
            .await?;
        Ok((segments, started.elapsed().as_secs_f64()))
    }
}

/// A bucket's key batches grouped by partition, each group in arrival order
/// (a decoder pushes its batches in order, one partition per batch). With
/// `slice` (the buckets, the passes, this pass), only the rows of the keys
/// that pass decides.
fn by_partition(
    spool: &BucketSpool,
    slice: Option<(u32, u32, u32)>,
) -> Result<Vec<(u32, Vec<RecordBatch>)>, RunFailure> {
    let mut groups: Vec<(u32, Vec<RecordBatch>)> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    for batch in spool.keys.batches() {
        let mut batch = batch.map_err(KeyStateError::Spool)?;
        let Some(partition) = partition_of(&batch) else {
            continue;
        };
        if let Some((buckets, passes, pass)) = slice {
            let hashes = batch
                .column_by_name(HASH)
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
                .ok_or_else(|| RunFailure::invariant("a key batch has no key hashes"))?;
            let in_pass: BooleanArray = hashes
                .values()
                .iter()
                .map(|&hash| Some(pass_of(hash, buckets, passes) == pass))
                .collect();
            batch = filter_record_batch(&batch, &in_pass)
                .map_err(|e| RunFailure::KeyState(e.into()))?;
            if batch.num_rows() == 0 {
                continue;
            }
        }
        let slot = *index.entry(partition).or_insert_with(|| {
            groups.push((partition, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(batch);
    }
    Ok(groups)
}

fn partition_of(batch: &RecordBatch) -> Option<u32> {
    let column = batch.column_by_name(PARTITION)?;
    let column = column.as_any().downcast_ref::<UInt32Array>()?;
    (!column.is_empty()).then(|| column.value(0))
}

/// The events' positions in their partition.
fn events_of(batches: &[RecordBatch]) -> Result<Vec<u64>, ArrowError> {
    let mut events = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(EVENT)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .ok_or_else(|| ArrowError::SchemaError("a key batch has no event positions".into()))?;
        events.extend(column.values().iter().copied());
    }
    Ok(events)
}

/// Per event, whether it deletes its key (none when the topic has no deletes).
fn deleted_of(batches: &[RecordBatch]) -> Result<Vec<bool>, ArrowError> {
    let mut flags = Vec::new();
    for batch in batches {
        let Some(column) = batch.column_by_name(DELETED_COLUMN) else {
            return Ok(Vec::new());
        };
        let column = column
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| ArrowError::SchemaError("the delete flag is not boolean".into()))?;
        flags.extend(column.iter().map(|f| f.unwrap_or(false)));
    }
    Ok(flags)
}

/// The key parts and ordering keys of the MAIN events, as the key state keeps them.
fn main_versions(
    batches: &[RecordBatch],
    classes: &[Class],
    state_schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let width = state_schema.fields().len();
    of_class(batches.iter().cloned().map(Ok), classes, Class::Main)
        .map(|batch| {
            batch.and_then(|b| {
                RecordBatch::try_new(state_schema.clone(), b.columns()[..width].to_vec())
            })
        })
        .collect()
}
