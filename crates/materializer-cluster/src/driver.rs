//! The driver's side: a run's partitions submitted to a Ballista scheduler
//! as one plan, the executors' reports taken back.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use ballista_core::config::{
    BALLISTA_ADAPTIVE_PLANNER_ENABLED, BALLISTA_JOB_NAME,
    BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK,
};
use ballista_core::extension::SessionConfigExt;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::prelude::SessionConfig;

use materializer_core::ErrorClass;
use materializer_core::run::remote::{
    BucketReport, Driving, PartitionJob, PartitionReport, PartitionWorkers, RemoteFailure,
    WorkersDone,
};

use crate::codec::Codec;
use crate::exchange::by_route;
use crate::failure::from_job_error;
use crate::node::{REPORT, TaskReport, input_schema};
use crate::steps::{Step, StepExec};
use crate::submit::{Ended, JobError, submit};

/// How long the driver waits for the scheduler to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A scheduler's address: `df://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAddress {
    pub host: String,
    pub port: u16,
}

impl ClusterAddress {
    /// `df://host:port` (the scheme Ballista's clients use).
    pub fn parse(text: &str) -> Result<ClusterAddress, String> {
        let rest = text.strip_prefix("df://").ok_or_else(|| {
            format!("{text:?} is not a cluster address: write df://host:port (the scheduler's)")
        })?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} names no port: write df://host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        if host.is_empty() {
            return Err(format!("{text:?} names no host: write df://host:port"));
        }
        Ok(ClusterAddress {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for ClusterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "df://{}:{}", self.host, self.port)
    }
}

/// A Ballista cluster whose executors run the partitions of a run.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub address: ClusterAddress,
}

impl Cluster {
    pub fn new(address: ClusterAddress) -> Cluster {
        Cluster { address }
    }

    fn unavailable(&self, why: impl std::fmt::Display) -> RemoteFailure {
        RemoteFailure {
            class: ErrorClass::SourceUnavailable,
            message: format!("the cluster's scheduler at {}: {why}", self.address),
        }
    }

    /// Fails within seconds when nothing answers at the scheduler's
    /// address (Ballista's client would try for much longer).
    async fn check_reachable(&self) -> Result<(), RemoteFailure> {
        let address = (self.address.host.as_str(), self.address.port);
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable(format!("cannot connect: {e}"))),
            Err(_) => {
                Err(self.unavailable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))
            }
        }
    }

    /// The plan of `job`: one input partition, and one task, per Nakadi
    /// partition.
    pub(crate) fn plan(job: PartitionJob) -> Result<Arc<dyn ExecutionPlan>, RemoteFailure> {
        let internal = |e: datafusion::error::DataFusionError| RemoteFailure {
            class: ErrorClass::Internal,
            message: format!("planning the cluster's job: {e}"),
        };
        let schema = input_schema();
        let items = (0..job.partitions.len() as u32)
            .map(|index| {
                let column = UInt32Array::from(vec![index]);
                RecordBatch::try_new(schema.clone(), vec![Arc::new(column) as Arc<dyn Array>])
                    .map(|batch| vec![batch])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(e.into()))?;
        let input = MemorySourceConfig::try_new_exec(&items, schema, None).map_err(internal)?;
        if !job.compact {
            return Ok(Arc::new(StepExec::new(
                Step::Run,
                input,
                Arc::new(job),
                None,
            )));
        }
        // A key's versions may be on any partition: the keys go to a task
        // per bucket, the decisions back to a task per partition.
        let partitions = job.partitions.len();
        let buckets = job.committed_state().buckets() as usize;
        let job = Arc::new(job);
        let keys = Arc::new(StepExec::new(Step::Keys, input, job.clone(), None));
        let by_bucket = RepartitionExec::try_new(keys, by_route(buckets)).map_err(internal)?;
        let decide = StepExec::new(Step::Decide, Arc::new(by_bucket), job.clone(), None);
        let by_partition =
            RepartitionExec::try_new(Arc::new(decide), by_route(partitions)).map_err(internal)?;
        Ok(Arc::new(StepExec::new(
            Step::Write,
            Arc::new(by_partition),
            job,
            None,
        )))
    }
}

#[async_trait::async_trait]
impl PartitionWorkers for Cluster {
    fn describe(&self) -> String {
        format!("the cluster at {}", self.address)
    }

    async fn run(
        &self,
        job: PartitionJob,
        driving: Driving<'_>,
    ) -> Result<WorkersDone, RemoteFailure> {
        if job.partitions.is_empty() {
            return Ok(WorkersDone::default());
        }
        self.check_reachable().await?;
        let name = format!("{} run {}", job.topic.name, job.sequence);
        let expected: Vec<String> = job.partitions.iter().map(|p| p.partition.clone()).collect();
        let plan = Cluster::plan(job)?;
        let codec = Codec::planning();
        let config = SessionConfig::new_with_ballista()
            .set_str(BALLISTA_JOB_NAME, &name)
            // One task per partition, so that the partitions spread over
            // the executors.
            .set_usize(BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK, 1)
            // The plan is fixed: every task of a step runs, even one whose
            // shuffle input is empty (it may hold a partition's mark).
            .set_bool(BALLISTA_ADAPTIVE_PLANNER_ENABLED, false);
        let session = format!("materializer-{:016x}", rand::random::<u64>());
        let mut submitted = submit(&self.address, plan, &codec, session, &config)
            .await
            .map_err(|e| self.job_error(None, e))?;
        driving.progress.set_workers_job(&submitted.id);
        let guard = submitted.cancel_on_drop();
        let ended = tokio::select! {
            ended = submitted.ended() => ended,
            _ = driving.stop.cancelled() => {
                submitted.cancel().await;
                guard.disarm();
                return Err(RemoteFailure {
                    class: ErrorClass::Stopped,
                    message: format!("the run was stopped; the cluster's job {} is cancelled", submitted.id),
                });
            }
        };
        guard.disarm();
        let batches = match ended.map_err(|e| self.job_error(Some(&submitted.id), e))? {
            Ended::Succeeded(batches) => batches,
            Ended::Failed(error) => return Err(self.failed(&submitted.id, &error)),
        };
        let (reports, buckets) = reports(&batches)?;
        check_one_each(&expected, &reports)?;
        Ok(WorkersDone {
            reports,
            buckets,
            job: Some(submitted.id),
        })
    }
}

impl Cluster {
    /// A job not submitted, lost or whose result does not read.
    fn job_error(&self, job: Option<&str>, error: JobError) -> RemoteFailure {
        match (error, job) {
            (JobError::Unreachable(why), _) => self.unavailable(why),
            (JobError::Refused(why), Some(job)) => self.failed(job, &why),
            (JobError::Refused(why), None) => RemoteFailure {
                class: ErrorClass::Internal,
                message: format!("the cluster's scheduler at {}: {why}", self.address),
            },
        }
    }

    /// What a failed job tells: the failure a task reported, or the
    /// scheduler's own account.
    fn failed(&self, job: &str, text: &str) -> RemoteFailure {
        from_job_error(text).unwrap_or_else(|| RemoteFailure {
            class: ErrorClass::Internal,
            message: format!(
                "the cluster at {} failed the run (job {job}): {text}",
                self.address
            ),
        })
    }
}

/// The partitions' and the buckets' reports in the job's result.
fn reports(
    batches: &[RecordBatch],
) -> Result<(Vec<PartitionReport>, Vec<BucketReport>), RemoteFailure> {
    let bad = |message: String| RemoteFailure {
        class: ErrorClass::Internal,
        message: format!("the cluster's result: {message}"),
    };
    let mut reports = Vec::new();
    let mut buckets = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(REPORT)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad(format!("no {REPORT} column")))?;
        for json in column.iter().flatten() {
            match serde_json::from_str(json).map_err(|e| bad(e.to_string()))? {
                TaskReport::Partition(report) => reports.push(report),
                TaskReport::Bucket(report) => buckets.push(report),
            }
        }
    }
    Ok((reports, buckets))
}

/// Each partition of the job reported once: a report missing or twice
/// would lose or duplicate files in the manifest.
fn check_one_each(expected: &[String], reports: &[PartitionReport]) -> Result<(), RemoteFailure> {
    let mut got: Vec<&str> = reports.iter().map(|r| r.partition.as_str()).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    want.sort_unstable();
    if got == want {
        return Ok(());
    }
    Err(RemoteFailure {
        class: ErrorClass::Internal,
        message: format!(
            "the cluster reported partitions {got:?}, but the job holds {want:?}; nothing is committed"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_df_host_port() {
        assert_eq!(
            ClusterAddress::parse("df://10.0.0.7:50050"),
            Ok(ClusterAddress {
                host: "10.0.0.7".into(),
                port: 50050
            })
        );
        for bad in ["http://h:1", "df://h", "df://:1", "df://h:x"] {
            assert!(ClusterAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
