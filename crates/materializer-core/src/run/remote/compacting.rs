//! A compacting topic on workers, in three steps with an exchange between
//! each (the cluster's shuffles):
//!
//! ```text
//! per partition   read, decode: its key rows, by key bucket   (read_keys)
//! per bucket      every partition's key rows of the bucket: looked up in
//!                 the bucket's key state, decided, the bucket's segment
//!                 written; each partition's share of the decisions
//!                 (decide_bucket)
//! per partition   read and decode again, the shares put together as the
//!                 partition's decision, mapped and written
//!                 (write_partition)
//! ```
//! A key is decided over every partition of the run, wherever its versions
//! arrived, as a local run decides it; the files of a partition are the
//! ones a local run writes. The second read asks Nakadi again for the same
//! cursors: the events do not travel between the steps, only their keys
//! and classes.

use std::collections::HashMap;

use super::{PartitionJob, PartitionReport, TaskStep, only_report, partition_task, read_share};
use crate::mapping::Engine;
use crate::run::attempt::{Attempt, RunRequest};
use crate::run::decide::{self, ApartContext, BucketDecided, PartitionKeys};
use crate::run::error::RunFailure;
use crate::run::map;
use crate::run::read::Keep;
use crate::state::StateStore;

/// Step 1: reads and decodes the partition at `index` of `job` and gives
/// its key rows by bucket.
pub async fn read_keys(
    engine: &Engine,
    request: &RunRequest,
    job: &PartitionJob,
    index: usize,
) -> Result<PartitionKeys, RunFailure> {
    crate::failpoint::hold("partition-task").await;
    let (cursors, attempt, publisher) =
        partition_task(engine, request, job, TaskStep::Keys, index)?;
    let (_mapper, read) = read_share(&attempt, job, cursors, Keep::Keys).await?;
    let spools = read
        .key_spools
        .ok_or_else(|| RunFailure::invariant("a compacting topic's read spooled no keys"))?;
    let keys = PartitionKeys::new(spools, index as u32)?;
    publisher.finish().await;
    Ok(keys)
}

/// Step 2: decides `bucket` of `job` from `keys`, every partition's key
/// rows of the bucket (as [`read_keys`] gave them, each partition's in
/// order), and writes the bucket's key state.
pub async fn decide_bucket(
    engine: &Engine,
    request: &RunRequest,
    job: &PartitionJob,
    bucket: u32,
    keys: decide::KeyRows,
) -> Result<BucketDecided, RunFailure> {
    crate::failpoint::hold("bucket-task").await;
    let attempt = Attempt::new(engine, request).for_sequence(&job.attempt, job.sequence);
    let store = StateStore::new(attempt.topic, &attempt.location, &attempt.layout)?;
    let committed = job.committed_state();
    let partitions: Vec<String> = job.partitions.iter().map(|p| p.partition.clone()).collect();
    let context = ApartContext {
        topic: attempt.topic,
        store: &store,
        committed: &committed,
        partitions: &partitions,
        sequence: job.sequence,
        attempt: &attempt.id,
        runtime: engine.runtime(),
        memory_limit: engine.settings().memory_limit,
    };
    decide::decide_bucket(&context, bucket, keys).await
}

/// Step 3: reads and decodes the partition at `index` of `job` again, and
/// maps and writes it with the decisions `shares` (every bucket's share
/// of the partition).
pub async fn write_partition(
    engine: &Engine,
    request: &RunRequest,
    job: &PartitionJob,
    index: usize,
    shares: decide::Shares,
) -> Result<PartitionReport, RunFailure> {
    let (cursors, attempt, publisher) =
        partition_task(engine, request, job, TaskStep::Write, index)?;
    let (mapper, read) = read_share(&attempt, job, cursors, Keep::Rows).await?;
    let events = read
        .decoded
        .get(cursors.partition.as_str())
        .map_or(0, |p| p.rows);
    let (decision, decided_by) = decide::decision_of(
        &cursors.partition,
        index as u32,
        events,
        shares,
        &engine.runtime(),
        engine.settings().memory_limit,
    )?;
    let decisions = HashMap::from([(cursors.partition.clone(), decision)]);
    let outputs =
        map::map_and_write(&attempt, &mapper, read.decoded, read.main_files, decisions).await?;
    let mut report = only_report(outputs, cursors);
    report.decided_by = decided_by;
    publisher.finish().await;
    Ok(report)
}
