//! The plan node of every step of a run. A topic that does not compact is
//! one step (`run`: each partition read, decoded, mapped and written); a
//! compacting topic is three, with a shuffle between each:
//!
//! ```text
//! work items ─▶ StepExec(keys)   per partition: its key rows, routed by bucket
//!            ─▶ shuffle on route (a task per key bucket)
//!            ─▶ StepExec(decide) per bucket: decided, its state written; the
//!                                partitions' shares and the bucket's report,
//!                                routed by partition
//!            ─▶ shuffle on route (a task per partition)
//!            ─▶ StepExec(write)  per partition: mapped and written; its report
//!                                and the buckets' reports to the driver
//! ```
//! A task works on what its rows name (a work item, a bucket, a partition),
//! not on its own number: the routes only spread the work.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, LargeBinaryArray, RecordBatch, StringArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use materializer_core::decode::SpoolError;
use materializer_core::run::remote::{BucketReport, KeyRows, PartitionJob, Shares};

use crate::exchange::{ROUTE, routes, share_bytes, share_of};
use crate::failure::to_task_error;
use crate::node::{TaskReport, job_of, output_schema, run_named, work_items};
use crate::received::{Payloads, Receiving};
use crate::worker::Worker;

/// A step of a compacting run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Step {
    /// A topic that does not compact: each partition read, decoded,
    /// mapped and written at once.
    Run,
    Keys,
    Decide,
    Write,
}

/// Key rows as the keys step hands them on: one row per spooled batch.
fn keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(ROUTE, DataType::UInt64, false),
        Field::new("bucket", DataType::UInt32, false),
        Field::new("partition", DataType::UInt32, false),
        Field::new(ORIGIN, DataType::UInt64, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("data", DataType::LargeBinary, false),
    ]))
}

/// What the decide step hands on: shares, bucket reports, and a mark per
/// partition so that every partition's task runs even when no share names
/// it (all of its events rejected).
fn decided_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(ROUTE, DataType::UInt64, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("bucket", DataType::UInt32, false),
        Field::new("pass", DataType::UInt32, false),
        Field::new("partition", DataType::UInt32, false),
        Field::new(ORIGIN, DataType::UInt64, false),
        Field::new("data", DataType::LargeBinary, false),
    ]))
}

/// The column that tells one execution of a task from another: a number
/// drawn when the task reads its partition, or decides its bucket. A
/// shuffle may hand a task the output of a task run twice (a stage run
/// again after an executor died, its earlier output still listed); a
/// task takes each partition's keys, and each bucket's shares, from one
/// execution only.
const ORIGIN: &str = "origin";

const SHARE: u8 = 0;
const BUCKET_REPORT: u8 = 1;
const PARTITION_MARK: u8 = 2;

/// Key batches in one output batch of the keys step.
const KEY_BATCHES_PER_ROW_BATCH: usize = 64;

/// One step of a compacting run.
#[derive(Debug)]
pub(crate) struct StepExec {
    pub(crate) step: Step,
    input: Arc<dyn ExecutionPlan>,
    pub(crate) job: Arc<PartitionJob>,
    /// `None` where the plan is only planned (the driver, the scheduler).
    worker: Option<Arc<Worker>>,
    properties: Arc<PlanProperties>,
}

impl StepExec {
    pub(crate) fn new(
        step: Step,
        input: Arc<dyn ExecutionPlan>,
        job: Arc<PartitionJob>,
        worker: Option<Arc<Worker>>,
    ) -> StepExec {
        let partitions = input.output_partitioning().partition_count();
        let schema = match step {
            Step::Keys => keys_schema(),
            Step::Decide => decided_schema(),
            Step::Run | Step::Write => output_schema(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        StepExec {
            step,
            input,
            job,
            worker,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for StepExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StepExec: step={:?}, topic={}, sequence={}, partitions={}",
            self.step,
            self.job.topic.name,
            self.job.sequence,
            self.job.partitions.len()
        )
    }
}

impl ExecutionPlan for StepExec {
    fn name(&self) -> &str {
        "StepExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|children| {
            DataFusionError::Internal(format!("StepExec takes one input, not {}", children.len()))
        })?;
        Ok(Arc::new(StepExec::new(
            self.step,
            input,
            self.job.clone(),
            self.worker.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let worker = self.worker.clone().ok_or_else(|| {
            DataFusionError::Internal(
                "StepExec runs on an executor of the product's own binary \
                 (materializer cluster executor)"
                    .into(),
            )
        })?;
        let ballista_job = job_of(context.task_id());
        let input = self.input.execute(partition, context)?;
        let job = self.job.clone();
        let (schema, stream) = match self.step {
            Step::Run => (
                output_schema(),
                all_at_once(async move {
                    run_named(input, job, worker, ballista_job)
                        .await
                        .map(|batch| vec![batch])
                }),
            ),
            Step::Keys => (
                keys_schema(),
                futures::stream::once(keys_step(input, job, worker))
                    .map_ok(futures::stream::iter)
                    .try_flatten()
                    .boxed(),
            ),
            Step::Decide => (
                decided_schema(),
                all_at_once(decide_step(input, job, worker)),
            ),
            Step::Write => (
                output_schema(),
                all_at_once(write_step(input, job, worker, ballista_job)),
            ),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// A bucket's key rows from their received payloads.
fn key_rows(payloads: Payloads) -> KeyRows {
    let path = payloads.path().to_string();
    Box::new(payloads.flat_map(move |payload| {
        let batches = payload.and_then(|(_, bytes)| crate::exchange::from_ipc(&bytes));
        match batches {
            Ok(batches) => batches.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(read_back(&path, e))],
        }
    }))
}

/// A partition's shares from their received payloads.
fn shares_of(partition: u32, payloads: Payloads) -> Shares {
    let path = payloads.path().to_string();
    Box::new(payloads.map(move |payload| {
        payload
            .and_then(|((bucket, _, pass), bytes)| {
                let pass = u32::try_from(pass)
                    .map_err(|_| DataFusionError::Internal(format!("pass {pass}")))?;
                share_of(bucket, pass, partition, &bytes)
            })
            .map_err(|e| read_back(&path, e))
    }))
}

/// A payload that cannot be read back from its spill file.
fn read_back(path: &str, error: DataFusionError) -> SpoolError {
    SpoolError::Read {
        path: path.to_string(),
        source: ArrowError::ExternalError(Box::new(error)),
    }
}

/// The batches `step` gives once it is done, as a stream.
fn all_at_once(
    step: impl Future<Output = Result<Vec<RecordBatch>>> + Send + 'static,
) -> BoxStream<'static, Result<RecordBatch>> {
    futures::stream::once(step)
        .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// The keys step: each work item's key rows, routed by bucket. The items
/// are read and decoded first (their key rows kept in the engine's
/// spools, on disk beyond its memory budget); their row batches are then
/// made one at a time as the shuffle takes them.
async fn keys_step(
    input: SendableRecordBatchStream,
    job: Arc<PartitionJob>,
    worker: Arc<Worker>,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + Send + 'static> {
    let buckets = job.committed_state().buckets() as usize;
    let routes = routes(buckets)?;
    let mut read = Vec::new();
    for index in work_items(input).await? {
        let keys = worker
            .keys(&job, index as usize)
            .await
            .map_err(|f| to_task_error(&f))?;
        read.push((index, rand::random::<u64>(), keys));
    }
    let mut rows = read.into_iter().flat_map(move |(index, origin, keys)| {
        let (job, worker, routes) = (job.clone(), worker.clone(), routes.clone());
        keys.into_batches().enumerate().map(move |(seq, batch)| {
            let (bucket, batch) = batch.map_err(|e| to_task_error(&worker.failure(&job, &e)))?;
            let route = routes[bucket as usize];
            let data = crate::exchange::to_ipc(&batch.schema(), std::slice::from_ref(&batch))?;
            Ok(KeyRow {
                route,
                bucket,
                partition: index,
                origin,
                seq: seq as u64,
                data,
            })
        })
    });
    Ok(std::iter::from_fn(move || {
        let mut batch = KeyRowsBuilder::default();
        for row in rows.by_ref() {
            match row {
                Ok(row) => batch.push(row),
                Err(e) => return Some(Err(e)),
            }
            if batch.len() == KEY_BATCHES_PER_ROW_BATCH {
                break;
            }
        }
        (batch.len() > 0).then(|| batch.finish())
    }))
}

/// One spooled batch of key rows as the keys step hands it on.
struct KeyRow {
    route: u64,
    bucket: u32,
    partition: u32,
    origin: u64,
    seq: u64,
    data: Vec<u8>,
}

#[derive(Default)]
struct KeyRowsBuilder {
    route: Vec<u64>,
    bucket: Vec<u32>,
    partition: Vec<u32>,
    origin: Vec<u64>,
    seq: Vec<u64>,
    data: Vec<Vec<u8>>,
}

impl KeyRowsBuilder {
    fn push(&mut self, row: KeyRow) {
        self.route.push(row.route);
        self.bucket.push(row.bucket);
        self.partition.push(row.partition);
        self.origin.push(row.origin);
        self.seq.push(row.seq);
        self.data.push(row.data);
    }

    fn len(&self) -> usize {
        self.route.len()
    }

    fn finish(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            keys_schema(),
            vec![
                Arc::new(UInt64Array::from(self.route)),
                Arc::new(UInt32Array::from(self.bucket)),
                Arc::new(UInt32Array::from(self.partition)),
                Arc::new(UInt64Array::from(self.origin)),
                Arc::new(UInt64Array::from(self.seq)),
                Arc::new(LargeBinaryArray::from_iter_values(self.data)),
            ],
        )?)
    }
}

/// The decide step: each bucket whose key rows reached this task, decided.
async fn decide_step(
    mut input: SendableRecordBatchStream,
    job: Arc<PartitionJob>,
    worker: Arc<Worker>,
) -> Result<Vec<RecordBatch>> {
    // On disk as they arrive, then per bucket by (partition, origin, seq):
    // each partition's in the order it read them.
    let mut receiving = Receiving::new(worker.runtime(), "key rows a decide task received");
    while let Some(batch) = input.try_next().await? {
        let bucket = column::<UInt32Array>(&batch, 1)?;
        let partition = column::<UInt32Array>(&batch, 2)?;
        let origin = column::<UInt64Array>(&batch, 3)?;
        let seq = column::<UInt64Array>(&batch, 4)?;
        let data = column::<LargeBinaryArray>(&batch, 5)?;
        for row in 0..batch.num_rows() {
            let place = (partition.value(row), origin.value(row), seq.value(row));
            receiving.push(bucket.value(row), place, data.value(row))?;
        }
    }
    let received = receiving.finish()?;
    let partition_routes = routes(job.partitions.len())?;
    let mut rows = DecidedRows::default();
    for bucket in received.groups().collect::<Vec<_>>() {
        let keys = key_rows(received.read(bucket)?);
        let decided = worker
            .decide(&job, bucket, keys)
            .await
            .map_err(|f| to_task_error(&f))?;
        let origin = rand::random::<u64>();
        for share in &decided.shares {
            let route = route_of(&partition_routes, share.partition)?;
            let data = share_bytes(share)?;
            let (pass, partition) = (share.pass, share.partition);
            rows.push(route, SHARE, bucket, pass, partition, origin, data);
        }
        let report = BucketReport {
            bucket,
            segments: decided.segments,
            key_state_seconds: decided.key_state_seconds,
        };
        let data = serde_json::to_vec(&report)
            .map_err(|e| DataFusionError::Internal(format!("a bucket report as JSON: {e}")))?;
        let to = bucket % partition_routes.len().max(1) as u32;
        let route = route_of(&partition_routes, to)?;
        rows.push(route, BUCKET_REPORT, bucket, 0, to, origin, data);
    }
    for (partition, &route) in partition_routes.iter().enumerate() {
        rows.push(route, PARTITION_MARK, 0, 0, partition as u32, 0, Vec::new());
    }
    Ok(vec![rows.finish()?])
}

fn route_of(routes: &[u64], partition: u32) -> Result<u64> {
    routes.get(partition as usize).copied().ok_or_else(|| {
        DataFusionError::Internal(format!("a decision names partition number {partition}"))
    })
}

#[derive(Default)]
struct DecidedRows {
    route: Vec<u64>,
    kind: Vec<u8>,
    bucket: Vec<u32>,
    pass: Vec<u32>,
    partition: Vec<u32>,
    origin: Vec<u64>,
    data: Vec<Vec<u8>>,
}

impl DecidedRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        route: u64,
        kind: u8,
        bucket: u32,
        pass: u32,
        partition: u32,
        origin: u64,
        data: Vec<u8>,
    ) {
        self.route.push(route);
        self.kind.push(kind);
        self.bucket.push(bucket);
        self.pass.push(pass);
        self.partition.push(partition);
        self.origin.push(origin);
        self.data.push(data);
    }

    fn finish(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            decided_schema(),
            vec![
                Arc::new(UInt64Array::from(self.route)),
                Arc::new(UInt8Array::from(self.kind)),
                Arc::new(UInt32Array::from(self.bucket)),
                Arc::new(UInt32Array::from(self.pass)),
                Arc::new(UInt32Array::from(self.partition)),
                Arc::new(UInt64Array::from(self.origin)),
                Arc::new(LargeBinaryArray::from_iter_values(self.data)),
            ],
        )?)
    }
}

/// The write step: each partition whose rows reached this task, mapped and
/// written with its shares; the buckets' reports handed on to the driver.
async fn write_step(
    mut input: SendableRecordBatchStream,
    job: Arc<PartitionJob>,
    worker: Arc<Worker>,
    ballista_job: Option<String>,
) -> Result<Vec<RecordBatch>> {
    let mut partitions: BTreeSet<u32> = BTreeSet::new();
    // On disk as they arrive, then per partition by (bucket, origin, pass).
    let mut receiving = Receiving::new(worker.runtime(), "decisions a write task received");
    let mut reports: Vec<String> = Vec::new();
    while let Some(batch) = input.try_next().await? {
        let kind = column::<UInt8Array>(&batch, 1)?;
        let bucket = column::<UInt32Array>(&batch, 2)?;
        let pass = column::<UInt32Array>(&batch, 3)?;
        let partition = column::<UInt32Array>(&batch, 4)?;
        let origin = column::<UInt64Array>(&batch, 5)?;
        let data = column::<LargeBinaryArray>(&batch, 6)?;
        for row in 0..batch.num_rows() {
            match kind.value(row) {
                SHARE => {
                    let place = (
                        bucket.value(row),
                        origin.value(row),
                        u64::from(pass.value(row)),
                    );
                    receiving.push(partition.value(row), place, data.value(row))?;
                    partitions.insert(partition.value(row));
                }
                BUCKET_REPORT => {
                    let report: BucketReport = serde_json::from_slice(data.value(row))
                        .map_err(|e| DataFusionError::Internal(format!("a bucket report: {e}")))?;
                    reports.push(task_report(&TaskReport::Bucket(report))?);
                }
                PARTITION_MARK => {
                    partitions.insert(partition.value(row));
                }
                other => {
                    return Err(DataFusionError::Internal(format!(
                        "a decided row of kind {other}"
                    )));
                }
            }
        }
    }
    let received = receiving.finish()?;
    for partition in partitions {
        let shares = shares_of(partition, received.read(partition)?);
        let report = worker
            .write(&job, partition as usize, shares)
            .await
            .map_err(|f| to_task_error(&f))?;
        reports.push(task_report(&TaskReport::Partition(report))?);
    }
    let jobs = StringArray::from(vec![ballista_job; reports.len()]);
    let columns = vec![
        Arc::new(StringArray::from(reports)) as Arc<dyn Array>,
        Arc::new(jobs) as Arc<dyn Array>,
    ];
    Ok(vec![RecordBatch::try_new(output_schema(), columns)?])
}

fn task_report(report: &TaskReport) -> Result<String> {
    serde_json::to_string(report)
        .map_err(|e| DataFusionError::Internal(format!("a report as JSON: {e}")))
}

fn column<A: Array + 'static>(batch: &RecordBatch, index: usize) -> Result<&A> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| {
            DataFusionError::Internal(format!(
                "column {index} of a step's input is not of the type the step writes"
            ))
        })
}
