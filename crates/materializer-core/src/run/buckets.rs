//! Classification by key bucket: what a compacting run decides about every
//! event (MAIN, CORRECTION, OLDER or superseded) and the key state it leaves,
//! computed one bucket of keys at a time so that memory does not grow with
//! the run.
//!
//! Classifying an event needs every version of its key in the run and the
//! version the key state committed, and nothing about other keys. So, while
//! the partitions are read, each decoder sends its events' key columns (with
//! the event's partition and position) to the spool of the key's bucket, the
//! key state's buckets ([`KeySpools`]); a spool holds a share of the memory
//! budget and spills the rest. Then the buckets are decided `parallelism` at
//! a time ([`Run::decide`]): a bucket's keys are read back, their committed
//! versions looked up in that bucket's segments only, each partition's share
//! classified in arrival order, and the bucket's new segment written from its
//! MAIN versions. A bucket of more than [`PASS_ROWS`] key rows is decided in
//! passes, each taking the keys of one slice of the key hash, so that a
//! decision holds a bounded number of rows however large the run; each
//! pass's MAIN versions, sorted, wait for the bucket's segment in a spool. What stays
//! per event until its partition is mapped is its class ([`Classes`]): one
//! byte in memory, or on disk for a run of more events than a sixteenth of
//! the memory budget holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::{StreamExt, TryStreamExt};

use crate::config::Topic;
use crate::decode::{DELETED_COLUMN, DecodeError, KeySink, Spool, SpoolCap, SpoolError, Spooled};

use super::classes::{Classes, ClassesBuilder, ClassesError};
use super::classify::{Class, classes, of_class};
use super::write::{KEYS_DELETED, KEYS_KIND};
use super::{Run, RunFailure};
use crate::state::{
    CommittedState, KeyFormat, KeyStateError, Segment, SortedInput, StateIndex, StateStore,
    bucket_of_hash, stable_hash,
};

/// Key spool column: the partition of the event (its index in the run's ranges).
const PARTITION: &str = "__partition";
/// Key spool column: the event's position in its partition, in arrival order.
const EVENT: &str = "__event";
/// Key spool column: the key's [`stable_hash`], which names its bucket and,
/// in a bucket decided in passes, its pass.
const HASH: &str = "__hash";
/// Buffer of a key spool's spill file: sixteen are written at once.
const SPILL_BUFFER: usize = 128 << 10;

/// The key columns of a run's events, one spool per key bucket.
pub(super) struct KeySpools {
    format: KeyFormat,
    buckets: Vec<Mutex<Option<Spool>>>,
    /// Key rows sent to each bucket.
    rows: Vec<AtomicU64>,
    runtime: Arc<RuntimeEnv>,
    /// Bytes each bucket's spool may hold in memory.
    cap: usize,
}

impl KeySpools {
    /// Spools for the buckets of `committed`; `budget`: the bytes all of them
    /// may hold in memory together.
    pub(super) fn new(
        state_schema: &Schema,
        committed: &CommittedState,
        runtime: Arc<RuntimeEnv>,
        budget: usize,
    ) -> Result<KeySpools, KeyStateError> {
        let buckets = committed.buckets() as usize;
        Ok(KeySpools {
            format: KeyFormat::new(state_schema)?,
            buckets: (0..buckets).map(|_| Mutex::new(None)).collect(),
            rows: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            runtime,
            cap: budget / buckets.max(1),
        })
    }

    /// The sink of one partition's decoder.
    pub(super) fn sink(self: &Arc<Self>, partition: u32) -> Box<dyn KeySink> {
        Box::new(PartitionKeys {
            spools: self.clone(),
            partition,
        })
    }

    fn push(&self, bucket: usize, batch: RecordBatch) -> Result<(), SpoolError> {
        self.rows[bucket].fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        let mut spool = self.buckets[bucket]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let spool = spool.get_or_insert_with(|| {
            Spool::labelled(
                batch.schema(),
                self.runtime.clone(),
                &format!("keys of bucket {bucket}"),
                self.cap,
                SPILL_BUFFER,
            )
        });
        spool.push(batch)
    }

    /// Every bucket's keys, ready to be read (`None`: the bucket has none).
    fn finish(self) -> Result<Vec<Option<BucketSpool>>, SpoolError> {
        self.buckets
            .into_iter()
            .zip(self.rows)
            .map(|(spool, rows)| {
                let spool = spool
                    .into_inner()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                spool
                    .map(|spool| {
                        Ok(BucketSpool {
                            keys: Arc::new(spool.finish()?),
                            rows: rows.into_inner(),
                        })
                    })
                    .transpose()
            })
            .collect()
    }
}

/// One bucket's key rows, spooled.
struct BucketSpool {
    keys: Arc<Spooled>,
    rows: u64,
}

/// Key rows a bucket's decision holds at once. A bucket with more is decided
/// in passes over its spool, each taking the keys of one slice of the key
/// hash (every version of a key in the same pass), so that the memory of a
/// decision does not grow with the run. A constant rather than a share of
/// `--memory-mb`: the passes set the order of the KEYS rows, which must be
/// the same for every attempt of a run, whatever its settings.
const PASS_ROWS: u64 = 1 << 19;

/// How many passes decide a bucket of `rows` key rows.
fn passes_for(rows: u64) -> u32 {
    rows.div_ceil(pass_rows()).clamp(1, u64::from(u32::MAX)) as u32
}

/// [`PASS_ROWS`]; a build for tests (the `failpoints` feature) takes
/// `MATERIALIZER_PASS_ROWS` instead, so that small runs are decided in many
/// passes.
#[cfg(feature = "failpoints")]
fn pass_rows() -> u64 {
    std::env::var("MATERIALIZER_PASS_ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .filter(|&rows| rows > 0)
        .unwrap_or(PASS_ROWS)
}

#[cfg(not(feature = "failpoints"))]
fn pass_rows() -> u64 {
    PASS_ROWS
}

/// The pass that decides a key, given its hash: bits the bucket did not use.
fn pass_of(hash: u64, buckets: u32, passes: u32) -> u32 {
    ((hash / u64::from(buckets.max(1))) % u64::from(passes.max(1))) as u32
}

/// Sends a partition's key columns to the spools of their buckets.
struct PartitionKeys {
    spools: Arc<KeySpools>,
    partition: u32,
}

impl KeySink for PartitionKeys {
    fn push(&mut self, first: u64, keys: RecordBatch) -> Result<(), DecodeError> {
        let n = keys.num_rows();
        let spools = &self.spools;
        let rows = spools
            .format
            .key_rows(keys.columns())
            .map_err(DecodeError::Assemble)?;
        let buckets = spools.buckets.len() as u32;
        let mut by_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets as usize];
        let hashes: Vec<u64> = rows.iter().map(|row| stable_hash(row.data())).collect();
        for (i, &hash) in hashes.iter().enumerate() {
            by_bucket[bucket_of_hash(hash, buckets) as usize].push(i as u32);
        }
        drop(rows);
        let mut fields: Vec<Field> = keys
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(PARTITION, DataType::UInt32, false));
        fields.push(Field::new(EVENT, DataType::UInt64, false));
        fields.push(Field::new(HASH, DataType::UInt64, false));
        let mut columns = keys.columns().to_vec();
        columns.push(Arc::new(UInt32Array::from(vec![self.partition; n])));
        columns.push(Arc::new(UInt64Array::from_iter_values(
            first..first + n as u64,
        )));
        columns.push(Arc::new(UInt64Array::from(hashes)));
        let with_positions = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(DecodeError::Assemble)?;
        for (bucket, rows) in by_bucket.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = take_record_batch(&with_positions, &UInt32Array::from(rows))
                .map_err(DecodeError::Assemble)?;
            spools.push(bucket, part)?;
        }
        Ok(())
    }
}

/// What the run decided about one partition's events.
pub(super) struct Decision {
    /// Per event in arrival order, its class as the mapping sees it: a delete
    /// counts as superseded, as a deleted key has no rows.
    pub(super) classes: Classes,
    pub(super) main_input: u64,
    pub(super) correction_events: u64,
    pub(super) deletes: u64,
    /// The rows of the partition's KEYS file, bucket after bucket (buckets
    /// are decided in order, so the file is the same from one attempt to the
    /// next).
    pub(super) keys: Option<Spooled>,
}

/// What the run decided: per partition (by name), and the key state after it.
pub(super) struct Decisions {
    pub(super) partitions: HashMap<String, Decision>,
    pub(super) state: StateIndex,
    /// Time spent looking keys up in the key state and writing its segments,
    /// summed over the buckets.
    pub(super) key_state_seconds: f64,
}

/// What the run decided about one partition so far, share after share.
struct PartitionDecided {
    name: String,
    classes: ClassesBuilder,
    main_input: u64,
    correction_events: u64,
    deletes: u64,
    /// The rows of its KEYS file, in the order the shares come.
    keys: Option<Spool>,
}

impl PartitionDecided {
    /// Adds a share: its events' classes (a delete counts as superseded),
    /// counts and KEYS rows. `run` is a buffer reused from share to share.
    fn apply(
        &mut self,
        share: Share,
        run: &mut Vec<(u64, Class)>,
        runtime: &Arc<RuntimeEnv>,
        keys_cap: usize,
    ) -> Result<(), RunFailure> {
        run.clear();
        for (i, (&event, &class)) in share.events.iter().zip(&share.classes).enumerate() {
            let deleted = share.deleted.get(i).copied().unwrap_or(false);
            match class {
                Class::Main => self.main_input += 1,
                Class::Correction => self.correction_events += 1,
                _ => {}
            }
            if deleted && class != Class::Superseded {
                self.deletes += 1;
            }
            run.push((event, if deleted { Class::Superseded } else { class }));
        }
        self.classes.add(run).map_err(classes_error)?;
        for batch in share.keys {
            let spool = self.keys.get_or_insert_with(|| {
                Spool::labelled(
                    batch.schema(),
                    runtime.clone(),
                    &format!("KEYS rows of partition {}", self.name),
                    keys_cap,
                    SPILL_BUFFER,
                )
            });
            spool.push(batch).map_err(key_spool_error)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Decision, RunFailure> {
        Ok(Decision {
            classes: self.classes.finish().map_err(classes_error)?,
            main_input: self.main_input,
            correction_events: self.correction_events,
            deletes: self.deletes,
            keys: self
                .keys
                .map(Spool::finish)
                .transpose()
                .map_err(key_spool_error)?,
        })
    }
}

/// One partition's share of a bucket, decided.
struct Share {
    partition: u32,
    /// Positions of the share's events in their partition.
    events: Vec<u64>,
    classes: Vec<Class>,
    deleted: Vec<bool>,
    keys: Vec<RecordBatch>,
}

/// One pass over a bucket's keys, decided: its partitions' shares and the
/// MAIN versions that go to the bucket's segment, sorted by key.
struct DecidedPass {
    bucket: u32,
    /// Whether it is the bucket's only pass.
    only: bool,
    /// Whether it is the bucket's last pass: the bucket's segment follows.
    last: bool,
    shares: Vec<Share>,
    delta: Option<RecordBatch>,
    key_state_seconds: f64,
}

/// A pass to decide: a bucket's keys (`None`: it has none), and the slice
/// of them this pass takes.
struct Pass {
    bucket: u32,
    keys: Option<Arc<BucketSpool>>,
    pass: u32,
    passes: u32,
}

/// What deciding a bucket needs besides its keys.
struct BucketContext<'a> {
    topic: &'a Topic,
    store: &'a StateStore<'a>,
    committed: &'a CommittedState,
    sequence: u64,
    attempt: &'a str,
}

impl Run<'_> {
    /// Decides every bucket of `spools` (`rows`: each partition's rows, by
    /// the index its keys were sent with), `parallelism` buckets at a time.
    pub(super) async fn decide(
        &self,
        spools: KeySpools,
        partitions: &[(String, u64)],
        store: &StateStore<'_>,
        committed: &CommittedState,
        sequence: u64,
    ) -> Result<Decisions, RunFailure> {
        let runtime = spools.runtime.clone();
        let keys_cap = self.engine.settings().memory_limit / 16 / partitions.len().max(1);
        let spooled = spools.finish().map_err(key_spool_error)?;
        let context = BucketContext {
            topic: self.topic,
            store,
            committed,
            sequence,
            attempt: &self.attempt,
        };
        // The classes wait in memory, a byte per event, while they fit a
        // sixteenth of the budget; beyond it in runs on disk.
        let events: u64 = partitions.iter().map(|(_, rows)| rows).sum();
        let spill_classes = events > class_memory(self.engine.settings().memory_limit);
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
        let parallelism = self.request.parallelism.max(1);
        // Passes are decided `parallelism` at a time and applied in order, so
        // that the KEYS rows come in the same order on every attempt; a
        // bucket's segment is written once its last pass is applied, while
        // the next passes are decided.
        let mut decided = futures::stream::iter(passes)
            .map(|pass| context.decide_pass(pass, buckets))
            .buffered(parallelism);
        // A bucket's sorted deltas wait for its last pass in spools that
        // share a sixteenth of the budget and spill the rest.
        let delta_cap = SpoolCap::new(self.engine.settings().memory_limit / 16);
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
                                internal("a key spool names a partition the run does not read")
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
}

impl BucketContext<'_> {
    /// Looks the keys of a pass up and classifies each partition's share.
    async fn decide_pass(&self, pass: Pass, buckets: u32) -> Result<DecidedPass, RunFailure> {
        let mut key_state_seconds = 0.0;
        let last = pass.pass + 1 == pass.passes;
        let by_partition = match pass.keys {
            Some(keys) => {
                let slice = (pass.passes > 1).then_some((buckets, pass.passes, pass.pass));
                tokio::task::spawn_blocking(move || by_partition(&keys, slice))
                    .await
                    .map_err(RunFailure::Internal)??
            }
            None => Vec::new(),
        };
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
            let mut keys_schema = KeysSchema::new(key_names, ordering_name);
            let mut shares = Vec::new();
            let mut versions = Vec::new();
            for (partition, batches) in by_partition {
                let columns: Vec<Vec<ArrayRef>> =
                    batches.iter().map(|b| b.columns().to_vec()).collect();
                let classes = classes(&compaction, &columns, &state, keep_history)?;
                drop(columns);
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
    async fn commit_bucket(
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
        let mut batch = batch.map_err(key_spool_error)?;
        let Some(partition) = partition_of(&batch) else {
            continue;
        };
        if let Some((buckets, passes, pass)) = slice {
            let hashes = batch
                .column_by_name(HASH)
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
                .ok_or_else(|| internal("a key batch has no key hashes"))?;
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

/// The columns of a KEYS file: the key parts and the ordering key under the
/// warehouse's names, whether the version deletes its key, and its kind.
struct KeysSchema {
    names: Vec<String>,
    schema: Option<SchemaRef>,
}

impl KeysSchema {
    fn new(key_names: Vec<String>, ordering_name: String) -> KeysSchema {
        let mut names = key_names;
        names.push(ordering_name);
        KeysSchema {
            names,
            schema: None,
        }
    }

    /// The KEYS rows of `batches`: one per event this run decided (every
    /// class but superseded).
    fn rows(
        &mut self,
        batches: &[RecordBatch],
        classes: &[Class],
    ) -> Result<Vec<RecordBatch>, ArrowError> {
        let width = self.names.len();
        let mut out = Vec::with_capacity(batches.len());
        let mut start = 0;
        for batch in batches {
            let rows = classes
                .get(start..start + batch.num_rows())
                .ok_or_else(|| {
                    ArrowError::InvalidArgumentError(
                        "events and their classification differ in length".into(),
                    )
                })?;
            start += batch.num_rows();
            let decided: BooleanArray =
                rows.iter().map(|c| Some(*c != Class::Superseded)).collect();
            let batch = filter_record_batch(batch, &decided)?;
            let kinds: StringArray = rows
                .iter()
                .filter(|c| **c != Class::Superseded)
                .map(|c| {
                    Some(match c {
                        Class::Main => "main",
                        Class::Older => "older",
                        _ => "correction",
                    })
                })
                .collect();
            let deleted: ArrayRef = match batch.column_by_name(DELETED_COLUMN) {
                Some(flags) => flags.clone(),
                None => Arc::new(BooleanArray::from(vec![false; batch.num_rows()])),
            };
            let mut columns: Vec<ArrayRef> = batch.columns()[..width].to_vec();
            columns.push(deleted);
            columns.push(Arc::new(kinds));
            let schema = self.schema.get_or_insert_with(|| {
                let mut fields: Vec<Field> = self
                    .names
                    .iter()
                    .zip(&columns)
                    .map(|(name, column)| Field::new(name, column.data_type().clone(), false))
                    .collect();
                fields.push(Field::new(KEYS_DELETED, DataType::Boolean, false));
                fields.push(Field::new(KEYS_KIND, DataType::Utf8, false));
                Arc::new(Schema::new(fields))
            });
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(out)
    }
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
        spool.push(slice).map_err(key_spool_error)?;
        offset += len;
    }
    drop(delta);
    let spooled = Arc::new(spool.finish().map_err(key_spool_error)?);
    let batches = spooled.batches();
    Ok(futures::stream::iter(batches.map(move |batch| {
        // The spool (and its file) lives as long as its batches are read.
        let _spooled = &spooled;
        batch.map_err(KeyStateError::Spool)
    }))
    .boxed())
}

fn classes_error(source: ClassesError) -> RunFailure {
    RunFailure::Classes(source)
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

fn key_spool_error(source: SpoolError) -> RunFailure {
    RunFailure::KeyState(KeyStateError::Spool(source))
}

/// A broken invariant of the classification, as a run's failure.
pub(super) fn internal(message: &str) -> RunFailure {
    RunFailure::KeyState(KeyStateError::Arrow(ArrowError::InvalidArgumentError(
        message.into(),
    )))
}
