//! While the partitions are read, each decoder sends its events' key columns
//! (with the event's partition and position) to the spool of the key's
//! bucket; a spool holds a share of the memory budget and spills the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{UInt32Array, UInt64Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;

use crate::decode::{DecodeError, KeySink, Spool, SpoolError, Spooled};
use crate::state::{CommittedState, KeyFormat, KeyStateError, bucket_of_hash, stable_hash};

/// Key spool column: the partition of the event (its index in the run's ranges).
pub(super) const PARTITION: &str = "__partition";
/// Key spool column: the event's position in its partition, in arrival order.
pub(super) const EVENT: &str = "__event";
/// Key spool column: the key's [`stable_hash`], which names its bucket and,
/// in a bucket decided in passes, its pass.
pub(super) const HASH: &str = "__hash";
/// Buffer of a key spool's spill file: sixteen are written at once.
pub(super) const SPILL_BUFFER: usize = 128 << 10;

/// The key columns of a run's events, one spool per key bucket.
pub(crate) struct KeySpools {
    format: KeyFormat,
    buckets: Vec<Mutex<Option<Spool>>>,
    /// Key rows sent to each bucket.
    rows: Vec<AtomicU64>,
    pub(super) runtime: Arc<RuntimeEnv>,
    /// Bytes each bucket's spool may hold in memory.
    cap: usize,
}

impl KeySpools {
    /// Spools for the buckets of `committed`; `budget`: the bytes all of them
    /// may hold in memory together.
    pub(crate) fn new(
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
    pub(crate) fn sink(self: &Arc<Self>, partition: u32) -> Box<dyn KeySink> {
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
    pub(super) fn finish(self) -> Result<Vec<Option<BucketSpool>>, SpoolError> {
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
pub(super) struct BucketSpool {
    pub(super) keys: Arc<Spooled>,
    pub(super) rows: u64,
}

/// Key rows a bucket's decision holds at once. A bucket with more is decided
/// in passes over its spool, each taking the keys of one slice of the key
/// hash (every version of a key in the same pass), so that the memory of a
/// decision does not grow with the run. A constant rather than a share of
/// `--memory-mb`: the passes set the order of the KEYS rows, which must be
/// the same for every attempt of a run, whatever its settings.
const PASS_ROWS: u64 = 1 << 19;

/// How many passes decide a bucket of `rows` key rows.
pub(super) fn passes_for(rows: u64) -> u32 {
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
pub(super) fn pass_of(hash: u64, buckets: u32, passes: u32) -> u32 {
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
