//! The key state: per key, the highest ordering key committed by any run of the
//! topic. It lets a run send a late event to CORRECTION even when the newer
//! version of its key was committed by an earlier run.
//!
//! # How it is kept
//!
//! A topic lives for years and sees keys by the hundred million; a run sees a
//! few hundred thousand. The state is therefore kept so that a run reads and
//! writes in proportion to its own keys:
//!
//! - Keys are split into [`BUCKETS`] buckets by a stable hash of their bytes
//!   (Arrow's row format, see [`bucket`]).
//! - A bucket is a list of *segments*, oldest first: Parquet files whose rows
//!   are sorted by key, each key once (an LSM tree's sorted runs). A run adds
//!   one segment per bucket it has keys in, holding only those keys: the
//!   *delta*.
//! - To look its keys up, a run reads, in each segment of their buckets, only
//!   the row groups whose key range (first and last key, kept in the footer)
//!   holds one of them ([`segment`]). In those it decodes the key columns
//!   (integer keys are stored as bit-packed deltas, a few bits a key), finds
//!   its keys by binary search, and decodes the ordering key only for the
//!   rows found. Segments are read on every core at once.
//! - Segments are compacted as binary counters are carried: a run's delta is
//!   merged with the bucket's newest segments for as long as the next older
//!   one is not larger than what is merged so far, or the bucket holds more
//!   than [`MAX_SEGMENTS`]. A bucket keeps about log2(runs) segments and a key
//!   is rewritten about log2(runs) times in the topic's life. The merge streams
//!   its inputs ([`merge`]): its memory does not depend on their size.
//! - The segments in force are listed in the run's manifest ([`StateIndex`]),
//!   so the state changes exactly when the run commits, through the same
//!   put-if-absent; a failed or killed run, compaction included, changes
//!   nothing. Files are named for the run's sequence and attempt (racing
//!   attempts never overwrite each other's); the post-commit step removes
//!   those no manifest lists any more.
//! - A topic committed with the earlier form, one file for the whole state
//!   (`_state/keys-<seq>-<attempt>.parquet`, [`StateFile`]), is read once more
//!   by its next run, which writes every bucket's first segment from it.
//!
//! # Why not an embedded key-value store
//!
//! SlateDB is an LSM key-value store on object storage and would give point
//! lookups and compaction ready-made. It was weighed and not taken: its
//! releases (0.16 to 0.18) depend on object_store 0.14 while DataFusion 55 and
//! parquet 59 tie this engine to 0.13, so it would bring a second object_store
//! major and a second store, configured from the same URL and credentials, for
//! one table. Its commits are its own manifest, not this engine's
//! put-if-absent one: a run's state and its files would commit in two places,
//! and a crash between them would need recovery logic of its own. Its
//! compaction runs in the background of a long-lived process, while a run is a
//! bounded job. The state needs no more than sorted files and a merge, and
//! parquet, which the engine writes already, gives those with row-group
//! selection and compression.

mod bucket;
mod generate;
mod merge;
mod segment;

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::config::Topic;
use crate::sink::layout::seq_name;
use crate::sink::{OutputLocation, SinkError, TopicLayout};

pub use bucket::{BUCKETS, KeyFormat, RunKeys, bucket_of, bucket_of_hash, stable_hash};
pub use generate::write_segment;
pub use merge::SortedInput;
use merge::{merge, sort_by_bucket};
use segment::{SegmentWriter, read_all, read_matching};

use crate::failpoint::failpoint;

/// Segments a bucket may hold before its newest are merged whatever their sizes.
pub const MAX_SEGMENTS: usize = 8;
/// Segment reads under way at once in a lookup.
const READS_IN_FLIGHT: usize = 8;

/// The whole key state in one file, as manifests written before the state was
/// bucketed name it; still read, never written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Path relative to the topic's folder.
    pub path: String,
    pub keys: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The key state a manifest names: its segments, per bucket oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateIndex {
    pub buckets: u32,
    pub segments: Vec<Segment>,
}

impl StateIndex {
    /// Rows in all segments (a key found in several counts in each).
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| s.keys).sum()
    }
}

/// One sorted Parquet file of a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub bucket: u32,
    /// Path relative to the topic's folder.
    pub path: String,
    pub keys: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStateError {
    #[error("the key state of the topic cannot be built: a key column is missing from its schema")]
    Schema,
    #[error("reading the key state file {path}")]
    Read {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("the key state file {path} has no valid key ranges in its footer")]
    Corrupt { path: String },
    #[error("encoding the key state file {path}")]
    Encode {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("writing the key state file {path}")]
    Write {
        path: String,
        #[source]
        source: SinkError,
    },
    #[error("computing the key state")]
    Arrow(#[from] ArrowError),
    #[error("spooling the run's keys by bucket")]
    Spool(#[from] crate::decode::SpoolError),
    #[error("computing the key state")]
    Query(#[from] DataFusionError),
    #[error("a read of the key state stopped unexpectedly")]
    Task(#[from] tokio::task::JoinError),
}

impl KeyStateError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            KeyStateError::Schema
            | KeyStateError::Arrow(_)
            | KeyStateError::Query(_)
            | KeyStateError::Spool(_)
            | KeyStateError::Task(_) => ErrorClass::Internal,
            KeyStateError::Corrupt { .. } => ErrorClass::Data,
            KeyStateError::Read { .. }
            | KeyStateError::Encode { .. }
            | KeyStateError::Write { .. } => ErrorClass::SinkUnavailable,
        }
    }
}

/// Committed versions of the keys a run looks at, in memory for the run:
/// key parts and ordering key, a key possibly in several rows (the highest
/// ordering key counts).
#[derive(Clone)]
pub struct KeyState {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl KeyState {
    pub fn table(&self) -> Result<MemTable, DataFusionError> {
        MemTable::try_new(self.schema.clone(), vec![self.batches.clone()])
    }
}

/// The key state as the newest manifest left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CommittedState {
    #[default]
    Empty,
    /// One file, written before the state was bucketed.
    Single(StateFile),
    Buckets(StateIndex),
}

impl CommittedState {
    /// The state a manifest names: its index of segments, or the single
    /// file of an earlier release.
    pub fn named(index: Option<&StateIndex>, file: Option<&StateFile>) -> CommittedState {
        match (index, file) {
            (Some(index), _) => CommittedState::Buckets(index.clone()),
            (None, Some(file)) => CommittedState::Single(file.clone()),
            (None, None) => CommittedState::Empty,
        }
    }

    /// Buckets the state is split into (those of a new state when there is
    /// none yet).
    pub fn buckets(&self) -> u32 {
        match self {
            CommittedState::Buckets(index) => index.buckets,
            _ => BUCKETS,
        }
    }

    /// The committed segments of `bucket`, oldest first (none but in a
    /// bucketed state).
    pub fn segments_of(&self, bucket: u32) -> Vec<Segment> {
        match self {
            CommittedState::Buckets(index) => index
                .segments
                .iter()
                .filter(|s| s.bucket == bucket)
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The manifest's fields for this state: the single file, or the index.
    pub fn into_manifest_fields(self) -> (Option<StateFile>, Option<StateIndex>) {
        match self {
            CommittedState::Empty => (None, None),
            CommittedState::Single(file) => (Some(file), None),
            CommittedState::Buckets(index) => (None, Some(index)),
        }
    }
}

/// A topic's key state in its output folder.
pub struct StateStore<'a> {
    location: &'a OutputLocation,
    layout: &'a TopicLayout,
    schema: SchemaRef,
    /// Rows per row group of the segments written.
    group_rows: usize,
    /// A single-file state of an earlier release, read once in a run and
    /// split by bucket (each sorted, each key once): every bucket's lookup
    /// and first segment come from it.
    single: tokio::sync::OnceCell<Vec<Option<RecordBatch>>>,
}

impl<'a> StateStore<'a> {
    pub fn new(
        topic: &Topic,
        location: &'a OutputLocation,
        layout: &'a TopicLayout,
    ) -> Result<StateStore<'a>, KeyStateError> {
        let schema = topic
            .compaction()
            .key_state_schema(&topic.schema().payload)
            .ok_or(KeyStateError::Schema)?;
        Ok(StateStore::with_schema(location, layout, schema))
    }

    /// The state of a topic whose key state has `schema`.
    pub fn with_schema(
        location: &'a OutputLocation,
        layout: &'a TopicLayout,
        schema: SchemaRef,
    ) -> StateStore<'a> {
        StateStore {
            location,
            layout,
            schema,
            group_rows: segment::ROW_GROUP_ROWS,
            single: tokio::sync::OnceCell::new(),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn empty(&self) -> KeyState {
        KeyState {
            schema: self.schema.clone(),
            batches: Vec::new(),
        }
    }

    /// The committed versions of the keys in `key_batches` (the events' key
    /// columns, key parts first): only what those keys need is read.
    pub async fn lookup(
        &self,
        committed: &CommittedState,
        key_batches: &[&[ArrayRef]],
    ) -> Result<KeyState, KeyStateError> {
        let format = KeyFormat::new(&self.schema)?;
        // Hashing and sorting the run's keys is spared a topic's first run,
        // which has nothing to look up.
        let run_keys = || RunKeys::new(&format, key_batches.iter().copied(), committed.buckets());
        let batches = match committed {
            CommittedState::Empty => Vec::new(),
            CommittedState::Single(file) => {
                self.lookup_in_single(file, &format, &run_keys()?).await?
            }
            CommittedState::Buckets(index) => self.lookup_in_segments(index, run_keys()?).await?,
        };
        Ok(KeyState {
            schema: self.schema.clone(),
            batches,
        })
    }

    /// The rows of the segments whose key is one of `keys`, several segments
    /// read at once, each on a task of its own: reading a segment is
    /// decompressing and decoding, work for every core.
    async fn lookup_in_segments(
        &self,
        index: &StateIndex,
        keys: RunKeys,
    ) -> Result<Vec<RecordBatch>, KeyStateError> {
        let keys = Arc::new(keys);
        let mut reads = JoinSet::new();
        let mut found = Vec::new();
        for segment in &index.segments {
            if !keys.has_bucket(segment.bucket) {
                continue;
            }
            if reads.len() >= READS_IN_FLIGHT
                && let Some(batches) = reads.join_next().await
            {
                found.extend(batches??);
            }
            reads.spawn(read_matching(
                self.location.store.clone(),
                self.layout.resolve(&segment.path),
                segment.bytes,
                self.schema.clone(),
                keys.clone(),
                segment.bucket,
            ));
        }
        while let Some(batches) = reads.join_next().await {
            found.extend(batches??);
        }
        Ok(found)
    }

    /// The rows of the single-file state whose key is one of `keys`.
    async fn lookup_in_single(
        &self,
        file: &StateFile,
        format: &KeyFormat,
        keys: &RunKeys,
    ) -> Result<Vec<RecordBatch>, KeyStateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for (bucket, rows) in self.single_by_bucket(file).await?.iter().enumerate() {
            let keys = keys.bucket(bucket as u32);
            let Some(rows) = rows.as_ref().filter(|_| !keys.is_empty()) else {
                continue;
            };
            let matches = format.sorted_matches(rows.columns(), keys)?;
            found.push(filter_record_batch(rows, &matches)?);
        }
        Ok(found)
    }

    /// The single-file state by bucket, read and sorted at its first use in
    /// the run.
    async fn single_by_bucket(
        &self,
        file: &StateFile,
    ) -> Result<&[Option<RecordBatch>], KeyStateError> {
        self.single
            .get_or_try_init(|| async {
                let rows: Vec<RecordBatch> = self.read_single(file).await?.try_collect().await?;
                if rows.iter().all(|b| b.num_rows() == 0) {
                    return Ok(vec![None; BUCKETS as usize]);
                }
                let format = KeyFormat::new(&self.schema)?;
                sort_by_bucket(&format, &self.schema, &rows, BUCKETS)
            })
            .await
            .map(Vec::as_slice)
    }

    async fn read_single(&self, file: &StateFile) -> Result<SortedInput, KeyStateError> {
        read_all(
            self.location.store.clone(),
            self.layout.resolve(&file.path),
            file.bytes,
            self.schema.clone(),
        )
        .await
    }

    /// The state after this run: `committed` with the run's MAIN versions
    /// (`versions`, key parts and ordering key) added as each bucket's delta,
    /// compacted where the policy says so.
    pub async fn commit(
        &self,
        committed: &CommittedState,
        versions: Vec<RecordBatch>,
        sequence: u64,
        attempt: &str,
    ) -> Result<StateIndex, KeyStateError> {
        let format = KeyFormat::new(&self.schema)?;
        let buckets = committed.buckets();
        let deltas = sort_by_bucket(&format, &self.schema, &versions, buckets)?;
        drop(versions);
        let mut segments = Vec::new();
        for (bucket, delta) in deltas.into_iter().enumerate() {
            let delta_keys = delta.as_ref().map_or(0, |d| d.num_rows() as u64);
            let inputs = delta.into_iter().map(one_batch).collect();
            segments.extend(
                self.commit_bucket(
                    committed,
                    bucket as u32,
                    (inputs, delta_keys),
                    sequence,
                    attempt,
                )
                .await?,
            );
        }
        Ok(StateIndex { buckets, segments })
    }

    /// The run's MAIN versions of `bucket`'s keys among `versions`, sorted by
    /// key: a delta of the bucket (`None` when it has none).
    pub fn sorted_delta(
        &self,
        committed: &CommittedState,
        bucket: u32,
        versions: &[RecordBatch],
    ) -> Result<Option<RecordBatch>, KeyStateError> {
        if versions.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        let format = KeyFormat::new(&self.schema)?;
        let mut by_bucket = sort_by_bucket(&format, &self.schema, versions, committed.buckets())?;
        Ok(by_bucket.get_mut(bucket as usize).and_then(Option::take))
    }

    /// The segments of `bucket` after this run: `committed`'s, with the run's
    /// MAIN versions of the bucket's keys added as its delta, compacted where
    /// the policy says so. The delta comes as sorted inputs with disjoint
    /// keys (one per pass of the decision) and their number of keys. A bucket
    /// the run has no keys in keeps its segments (a single-file state still
    /// gets its first one).
    pub async fn commit_bucket(
        &self,
        committed: &CommittedState,
        bucket: u32,
        (deltas, delta_keys): (Vec<SortedInput>, u64),
        sequence: u64,
        attempt: &str,
    ) -> Result<Vec<Segment>, KeyStateError> {
        let format = KeyFormat::new(&self.schema)?;
        // The single-file state becomes every bucket's first segment.
        let migrated = match committed {
            CommittedState::Single(file) => self
                .single_by_bucket(file)
                .await?
                .get(bucket as usize)
                .cloned()
                .flatten(),
            _ => None,
        };
        let mut kept = committed.segments_of(bucket);
        if deltas.is_empty() && migrated.is_none() {
            return Ok(kept);
        }
        let merged = kept.split_off(kept.len() - merged_with(&kept, delta_keys));
        let compacting = !merged.is_empty();
        let mut inputs = Vec::new();
        for segment in &merged {
            inputs.push(
                read_all(
                    self.location.store.clone(),
                    self.layout.resolve(&segment.path),
                    segment.bytes,
                    self.schema.clone(),
                )
                .await?,
            );
        }
        inputs.extend(migrated.into_iter().map(one_batch));
        inputs.extend(deltas);
        let path = self.segment_path(bucket, sequence, attempt);
        kept.push(self.write(&format, bucket, path, inputs).await?);
        if compacting {
            failpoint("state-compacting");
        }
        Ok(kept)
    }

    /// Writes the merge of `inputs` as a segment of `bucket`.
    async fn write(
        &self,
        format: &KeyFormat,
        bucket: u32,
        path: Path,
        inputs: Vec<SortedInput>,
    ) -> Result<Segment, KeyStateError> {
        let mut writer = SegmentWriter::create(
            self.location.store.clone(),
            path,
            self.schema.clone(),
            self.group_rows,
        )?;
        merge(format, &self.schema, inputs, &mut writer).await?;
        let written = writer.finish(format).await?;
        Ok(Segment {
            bucket,
            path: self.layout.relative(&written.path),
            keys: written.keys,
            bytes: written.bytes,
            sha256: written.sha256,
        })
    }

    fn segment_path(&self, bucket: u32, sequence: u64, attempt: &str) -> Path {
        self.layout
            .root()
            .clone()
            .join(STATE_FOLDER)
            .join(format!("b{bucket:03}"))
            .join(format!("{}-{attempt}.parquet", seq_name(sequence)))
    }
}

/// One sorted batch as a merge's input.
fn one_batch(batch: RecordBatch) -> SortedInput {
    futures::stream::iter([Ok(batch)]).boxed()
}

/// The topic's folder holding the key state.
pub const STATE_FOLDER: &str = "_state";

/// The run whose attempt wrote a key state file, from its name:
/// `<seq>-<attempt>.parquet` (a segment) or `keys-<seq>-<attempt>.parquet`
/// (a single-file state).
pub fn written_by_run(file_name: &str) -> Option<u64> {
    let name = file_name.strip_prefix("keys-").unwrap_or(file_name);
    name.split('-').next()?.parse().ok()
}

/// How many of a bucket's newest segments a run's delta of `delta_keys` keys
/// is merged with: while the next older segment is no larger than what is
/// merged so far (binary-counter carries), or the bucket holds too many.
fn merged_with(segments: &[Segment], delta_keys: u64) -> usize {
    let mut merged = 0;
    let mut keys = delta_keys;
    for older in segments.iter().rev() {
        let too_many = segments.len() - merged + 1 > MAX_SEGMENTS;
        if older.keys > keys && !too_many {
            break;
        }
        keys += older.keys;
        merged += 1;
    }
    merged
}

#[cfg(test)]
mod tests;
