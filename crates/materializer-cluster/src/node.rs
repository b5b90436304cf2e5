//! What the plan nodes of a run share: the work items (indexes into the
//! job's partitions, one row each), the reports the tasks hand the driver,
//! and the run of a topic that does not compact: each partition read,
//! decoded, mapped and written, one report row each.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use materializer_core::run::remote::{BucketReport, PartitionJob, PartitionReport};

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
pub(crate) fn job_of(task_id: Option<String>) -> Option<String> {
    let task = task_id?;
    let rest = task.strip_prefix("TID ")?;
    let job = rest.split('/').next()?;
    (!job.is_empty()).then(|| job.to_string())
}

/// What a task tells the driver: a partition's report, or (a compacting
/// topic's) a key bucket's.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TaskReport {
    Partition(PartitionReport),
    Bucket(BucketReport),
}

/// The work items of a task: indexes into the job's partitions.
pub(crate) async fn work_items(mut input: SendableRecordBatchStream) -> Result<Vec<u32>> {
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
    Ok(indexes)
}

/// Runs the partitions named by the rows of `input`, one after the other.
pub(crate) async fn run_named(
    input: SendableRecordBatchStream,
    job: Arc<PartitionJob>,
    worker: Arc<Worker>,
    ballista_job: Option<String>,
) -> Result<RecordBatch> {
    let indexes = work_items(input).await?;
    let mut reports = Vec::with_capacity(indexes.len());
    for index in indexes {
        let report = worker
            .run(&job, index as usize)
            .await
            .map_err(|failure| to_task_error(&failure))?;
        let json = serde_json::to_string(&TaskReport::Partition(report))
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
