//! Buckets decided apart from each other, each by the process that holds
//! its keys (a task of a cluster): the same passes as a local run's, whose
//! partitions' shares travel to the processes that map the partitions, and
//! one partition's decision put together again from the shares it gets.
//!
//! A share keeps what [`PartitionDecided::apply`] takes, so a partition
//! decided from shares that came from other processes holds the classes,
//! counts and KEYS rows a local run's decision holds, in the same order
//! (bucket, then pass).

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt8Array, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::StreamExt;

use super::class::Class;
use super::classes::{ClassesBuilder, class_byte, class_of};
use super::partition::{Decision, PartitionDecided, Share};
use super::pass::{BucketContext, Pass};
use super::spools::{BucketSpool, KeySpools, PARTITION, SPILL_BUFFER, passes_for};
use super::{class_memory, partition_order, spooled_delta};
use crate::config::Topic;
use crate::decode::{Spool, SpoolCap, SpoolError};
use crate::run::error::RunFailure;
use crate::state::{CommittedState, KeyStateError, Segment, SortedInput, StateStore};

/// Column of a share's events: the event's position in its partition.
pub const SHARE_EVENT: &str = "event";
/// Column of a share's events: its class.
pub const SHARE_CLASS: &str = "class";
/// Column of a share's events: whether it deletes its key.
pub const SHARE_DELETED: &str = "deleted";

/// The schema of a share's events.
pub fn share_events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SHARE_EVENT, DataType::UInt64, false),
        Field::new(SHARE_CLASS, DataType::UInt8, false),
        Field::new(SHARE_DELETED, DataType::Boolean, false),
    ]))
}

/// One partition's share of one pass over a bucket, decided.
#[derive(Clone, Debug)]
pub struct DecidedShare {
    pub bucket: u32,
    pub pass: u32,
    /// The partition, by its index in the run's list of partitions.
    pub partition: u32,
    /// Its events: position, class, delete flag ([`share_events_schema`]).
    pub events: RecordBatch,
    /// Its rows of the partition's KEYS file.
    pub keys: Vec<RecordBatch>,
}

/// What deciding one bucket gave.
pub struct BucketDecided {
    pub bucket: u32,
    pub shares: Vec<DecidedShare>,
    /// The bucket's segments after the run.
    pub segments: Vec<Segment>,
    pub key_state_seconds: f64,
}

/// What a bucket's decision needs besides its keys.
pub(crate) struct ApartContext<'a> {
    pub topic: &'a Topic,
    pub store: &'a StateStore<'a>,
    pub committed: &'a CommittedState,
    /// The run's partitions, by the index their keys carry.
    pub partitions: &'a [String],
    pub sequence: u64,
    pub attempt: &'a str,
    pub runtime: Arc<RuntimeEnv>,
    pub memory_limit: usize,
}

/// Decides `bucket` from its keys (`keys`: every partition's key rows of
/// the bucket, each partition's in arrival order) and writes its segment.
/// A bucket's key rows, batch by batch, in the order they are decided in
/// (each partition's in the order it read them, partition after
/// partition), read back from wherever they were kept.
pub type KeyRows = Box<dyn Iterator<Item = Result<RecordBatch, SpoolError>> + Send>;

pub(crate) async fn decide_bucket(
    context: &ApartContext<'_>,
    bucket: u32,
    mut keys: KeyRows,
) -> Result<BucketDecided, RunFailure> {
    let Some(first) = keys.next().transpose().map_err(KeyStateError::Spool)? else {
        return Err(RunFailure::invariant("a bucket to decide holds no keys"));
    };
    let mut spool = Spool::labelled(
        first.schema(),
        context.runtime.clone(),
        &format!("keys of bucket {bucket}"),
        context.memory_limit / 8,
        SPILL_BUFFER,
    );
    let mut rows = 0;
    for batch in std::iter::once(Ok(first)).chain(keys) {
        let batch = batch.map_err(KeyStateError::Spool)?;
        rows += batch.num_rows() as u64;
        spool.push(batch).map_err(KeyStateError::Spool)?;
    }
    let spooled = BucketSpool {
        keys: Arc::new(spool.finish().map_err(KeyStateError::Spool)?),
        rows,
    };
    let order = partition_order(context.partitions.iter().map(String::as_str));
    let bucket_context = BucketContext {
        topic: context.topic,
        partition_order: &order,
        store: context.store,
        committed: context.committed,
        sequence: context.sequence,
        attempt: context.attempt,
    };
    let buckets = context.committed.buckets();
    let passes = passes_for(rows);
    let keys = Arc::new(spooled);
    let delta_cap = SpoolCap::new(context.memory_limit / 16);
    let mut deltas: Vec<SortedInput> = Vec::new();
    let mut delta_rows = 0;
    let mut shares = Vec::new();
    let mut key_state_seconds = 0.0;
    for pass in 0..passes {
        let next = Pass {
            bucket,
            keys: Some(keys.clone()),
            pass,
            passes,
        };
        let decided = bucket_context.decide_pass(next, buckets).await?;
        key_state_seconds += decided.key_state_seconds;
        if let Some(delta) = decided.delta {
            delta_rows += delta.num_rows() as u64;
            deltas.push(if decided.only {
                futures::stream::iter([Ok(delta)]).boxed()
            } else {
                spooled_delta(delta, &context.runtime, bucket, &delta_cap)?
            });
        }
        for share in decided.shares {
            shares.push(traveling(bucket, pass, share)?);
        }
    }
    drop(keys);
    let (segments, seconds) = bucket_context
        .commit_bucket(bucket, (deltas, delta_rows))
        .await?;
    Ok(BucketDecided {
        bucket,
        shares,
        segments,
        key_state_seconds: key_state_seconds + seconds,
    })
}

/// A share as it travels: its events as one batch.
fn traveling(bucket: u32, pass: u32, share: Share) -> Result<DecidedShare, RunFailure> {
    let n = share.events.len();
    let deleted: BooleanArray = (0..n)
        .map(|i| Some(share.deleted.get(i).copied().unwrap_or(false)))
        .collect();
    let classes = UInt8Array::from_iter_values(share.classes.iter().map(|&c| class_byte(c)));
    let events = RecordBatch::try_new(
        share_events_schema(),
        vec![
            Arc::new(UInt64Array::from(share.events)),
            Arc::new(classes),
            Arc::new(deleted),
        ],
    )
    .map_err(|e| RunFailure::KeyState(e.into()))?;
    Ok(DecidedShare {
        bucket,
        pass,
        partition: share.partition,
        events,
        keys: share.keys,
    })
}

/// The shares of one partition's decision, in the order a local run
/// applies them: bucket after bucket, pass after pass (so that the KEYS
/// file is the same), read back from wherever they were kept.
pub type Shares = Box<dyn Iterator<Item = Result<DecidedShare, SpoolError>> + Send>;

/// The decision about partition `name` (its `events` decoded events, the
/// one at `index` in the run's list) put together from `shares`, those of
/// every bucket that holds some of its keys; with the buckets they came
/// from. Fails unless the shares are the partition's, in order, and class
/// every event exactly as many times as there are events: a share lost on
/// the way would otherwise leave events undecided.
pub(crate) fn decision_of(
    name: &str,
    index: u32,
    events: u64,
    shares: Shares,
    runtime: &Arc<RuntimeEnv>,
    memory_limit: usize,
) -> Result<(Decision, Vec<u32>), RunFailure> {
    let mut decided = PartitionDecided {
        name: name.to_string(),
        classes: ClassesBuilder::new(events > class_memory(memory_limit), runtime, name, events),
        main_input: 0,
        correction_events: 0,
        deletes: 0,
        keys: None,
    };
    let mut covered = 0u64;
    let mut run = Vec::new();
    let mut last: Option<(u32, u32)> = None;
    let mut buckets = Vec::new();
    for share in shares {
        let share = share.map_err(KeyStateError::Spool)?;
        if share.partition != index {
            return Err(RunFailure::invariant(format!(
                "the decisions about partition number {} reached the task of partition {name}",
                share.partition
            )));
        }
        let at = (share.bucket, share.pass);
        if last.is_some_and(|last| last >= at) {
            return Err(RunFailure::invariant(format!(
                "partition {name}: the decisions of bucket {} pass {} came out of order",
                at.0, at.1
            )));
        }
        if last.is_none_or(|(bucket, _)| bucket != at.0) {
            buckets.push(at.0);
        }
        last = Some(at);
        let share = local(share)?;
        covered += share.events.len() as u64;
        decided.apply(share, &mut run, runtime, memory_limit / 16)?;
    }
    if covered != events {
        return Err(RunFailure::invariant(format!(
            "partition {name}: the decisions received class {covered} events, but the \
             partition holds {events}"
        )));
    }
    Ok((decided.finish()?, buckets))
}

/// A share that travelled, as [`PartitionDecided::apply`] takes it.
fn local(share: DecidedShare) -> Result<Share, RunFailure> {
    let bad = |what: &str| RunFailure::invariant(format!("a decided share has no {what} column"));
    let column = |name: &str| share.events.column_by_name(name).cloned();
    let events = column(SHARE_EVENT).ok_or_else(|| bad(SHARE_EVENT))?;
    let events = events
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| bad(SHARE_EVENT))?;
    let classes = column(SHARE_CLASS).ok_or_else(|| bad(SHARE_CLASS))?;
    let classes = classes
        .as_any()
        .downcast_ref::<UInt8Array>()
        .ok_or_else(|| bad(SHARE_CLASS))?;
    let deleted = column(SHARE_DELETED).ok_or_else(|| bad(SHARE_DELETED))?;
    let deleted = deleted
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| bad(SHARE_DELETED))?;
    let classes = classes
        .values()
        .iter()
        .map(|&byte| {
            class_of(byte)
                .ok_or_else(|| RunFailure::invariant(format!("{byte} is not an event's class")))
        })
        .collect::<Result<Vec<Class>, _>>()?;
    Ok(Share {
        partition: share.partition,
        events: events.values().to_vec(),
        classes,
        deleted: deleted.iter().map(|d| d.unwrap_or(false)).collect(),
        keys: share.keys,
    })
}

/// One partition's key rows, by bucket, as its read spooled them.
pub struct PartitionKeys {
    buckets: Vec<(u32, BucketSpool)>,
    /// The partition's index in the run's list of partitions.
    partition: u32,
}

impl PartitionKeys {
    /// The keys `spools` holds of the only partition read into them, which
    /// is `partition` in the run's list.
    pub(crate) fn new(spools: KeySpools, partition: u32) -> Result<PartitionKeys, RunFailure> {
        let buckets = spools
            .finish()
            .map_err(KeyStateError::Spool)?
            .into_iter()
            .enumerate()
            .filter_map(|(bucket, keys)| keys.map(|keys| (bucket as u32, keys)))
            .collect();
        Ok(PartitionKeys { buckets, partition })
    }

    /// Key rows with their bucket, bucket after bucket, each partition's in
    /// arrival order, marked with the partition's index in the run.
    pub fn into_batches(
        self,
    ) -> impl Iterator<Item = Result<(u32, RecordBatch), RunFailure>> + Send + 'static {
        let partition = self.partition;
        self.buckets.into_iter().flat_map(move |(bucket, spool)| {
            spool.keys.batches().map(move |batch| {
                let batch = batch.map_err(KeyStateError::Spool)?;
                Ok((bucket, of_partition(batch, partition)?))
            })
        })
    }
}

/// `batch` with its partition column set to `partition`.
fn of_partition(batch: RecordBatch, partition: u32) -> Result<RecordBatch, RunFailure> {
    let schema = batch.schema();
    let place = schema
        .index_of(PARTITION)
        .map_err(|e| RunFailure::KeyState(e.into()))?;
    let mut columns = batch.columns().to_vec();
    columns[place] = Arc::new(UInt32Array::from(vec![partition; batch.num_rows()]));
    RecordBatch::try_new(schema, columns).map_err(|e| RunFailure::KeyState(e.into()))
}
