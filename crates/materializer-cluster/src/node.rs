//! The plan node an executor runs: the partitions of a run named by its
//! input's rows, each read, decoded, mapped and written, one report row each.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
use futures::StreamExt;

use materializer_core::run::remote::PartitionJob;

use crate::failure::to_task_error;
use crate::worker::Worker;

/// The input's one column: indexes into the job's partitions.
pub(crate) const PARTITION_INDEX: &str = "partition_index";
/// The output's columns: a partition's report as JSON, and the Ballista
/// job that ran it.
pub(crate) const REPORT: &str = "report";
pub(crate) const JOB: &str = "job";

pub(crate) fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        PARTITION_INDEX,
        DataType::UInt32,
        false,
    )]))
}

pub(crate) fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(REPORT, DataType::Utf8, false),
        Field::new(JOB, DataType::Utf8, true),
    ]))
}

/// The job of a task, from its id (`TID <job>/<stage>.<attempt>/<task>.<attempt>`,
/// as Ballista's executor names its tasks).
fn job_of(task_id: Option<String>) -> Option<String> {
    let task = task_id?;
    let rest = task.strip_prefix("TID ")?;
    let job = rest.split('/').next()?;
    (!job.is_empty()).then(|| job.to_string())
}

/// Runs the partitions of a job its input names. Its input is a stock
/// in-memory source, which Ballista splits among tasks (it does not split
/// a node it does not know): a task runs the partitions of the rows it gets.
#[derive(Debug)]
pub(crate) struct PartitionRunExec {
    input: Arc<dyn ExecutionPlan>,
    pub(crate) job: Arc<PartitionJob>,
    /// `None` where the plan is only planned (the driver, the scheduler).
    worker: Option<Arc<Worker>>,
    properties: Arc<PlanProperties>,
}

impl PartitionRunExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        job: Arc<PartitionJob>,
        worker: Option<Arc<Worker>>,
    ) -> PartitionRunExec {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        PartitionRunExec {
            input,
            job,
            worker,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for PartitionRunExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PartitionRunExec: topic={}, sequence={}, partitions={}",
            self.job.topic.name,
            self.job.sequence,
            self.job.partitions.len()
        )
    }
}

impl ExecutionPlan for PartitionRunExec {
    fn name(&self) -> &str {
        "PartitionRunExec"
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

    // Each partition is one unit: nothing gains from splitting the input.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|children| {
            DataFusionError::Internal(format!(
                "PartitionRunExec takes one input, not {}",
                children.len()
            ))
        })?;
        // The properties follow the new input: Ballista narrows it to a
        // task's partitions.
        Ok(Arc::new(PartitionRunExec::new(
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
                "PartitionRunExec runs on an executor of the product's own binary \
                 (materializer cluster executor)"
                    .into(),
            )
        })?;
        let ballista_job = job_of(context.task_id());
        let input = self.input.execute(partition, context)?;
        let job = self.job.clone();
        let reports = futures::stream::once(run_named(input, job, worker, ballista_job));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema(),
            reports,
        )))
    }
}

/// Runs the partitions named by the rows of `input`, one after the other.
async fn run_named(
    mut input: SendableRecordBatchStream,
    job: Arc<PartitionJob>,
    worker: Arc<Worker>,
    ballista_job: Option<String>,
) -> Result<RecordBatch> {
    let mut indexes = Vec::new();
    while let Some(batch) = input.next().await {
        let batch = batch?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| {
                DataFusionError::Internal(format!("{PARTITION_INDEX} is not a UInt32 column"))
            })?;
        indexes.extend(column.iter().flatten());
    }
    let mut reports = Vec::with_capacity(indexes.len());
    for index in indexes {
        let report = worker
            .run(&job, index as usize)
            .await
            .map_err(|failure| to_task_error(&failure))?;
        let json = serde_json::to_string(&report)
            .map_err(|e| DataFusionError::Internal(format!("a report as JSON: {e}")))?;
        reports.push(json);
    }
    let jobs = StringArray::from(vec![ballista_job; reports.len()]);
    let reports = StringArray::from(reports);
    let columns = vec![
        Arc::new(reports) as Arc<dyn Array>,
        Arc::new(jobs) as Arc<dyn Array>,
    ];
    Ok(RecordBatch::try_new(output_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::job_of;

    #[test]
    fn the_job_is_read_from_ballistas_task_id() {
        assert_eq!(
            job_of(Some("TID 038JJR85WW000/1.0/3.1".into())),
            Some("038JJR85WW000".into())
        );
        assert_eq!(job_of(Some("task 7".into())), None);
        assert_eq!(job_of(None), None);
    }
}
