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
/// The output's one column: a partition's report as JSON.
pub(crate) const REPORT: &str = "report";

pub(crate) fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        PARTITION_INDEX,
        DataType::UInt32,
        false,
    )]))
}

pub(crate) fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(REPORT, DataType::Utf8, false)]))
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
        let input = self.input.execute(partition, context)?;
        let job = self.job.clone();
        let reports = futures::stream::once(run_named(input, job, worker));
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
    let column = StringArray::from(reports);
    Ok(RecordBatch::try_new(
        output_schema(),
        vec![Arc::new(column) as Arc<dyn Array>],
    )?)
}
