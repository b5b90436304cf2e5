//! The driver's conversation with the scheduler about one job: the plan
//! submitted, its status polled, its result fetched from the executors,
//! and the job cancelled when the run is stopped or given up.
//!
//! Ballista's `execute_physical_plan` does the first three but keeps the
//! job's id to itself until the job ends: a run could neither name its job
//! while it runs nor cancel it.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use ballista_core::client::BallistaClient;
use ballista_core::config::BallistaConfig;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::execute_query_result;
use ballista_core::serde::protobuf::get_job_status_result::FlightProxy;
use ballista_core::serde::protobuf::job_status::Status;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    CancelJobParams, ExecuteQueryParams, GetJobStatusParams, KeyValuePair, PartitionLocation,
};
use ballista_core::utils::{GrpcClientConfig, create_grpc_client_endpoint};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{AsExecutionPlan, PhysicalExtensionCodec};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use tracing::{info, warn};

use crate::driver::ClusterAddress;

/// How often the driver asks the scheduler how its job is doing.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a cancellation may take before the driver gives up on it.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

type Scheduler = SchedulerGrpcClient<tonic::transport::Channel>;

/// A job the scheduler accepted.
#[derive(Clone)]
pub(crate) struct Job {
    scheduler: Scheduler,
    address: ClusterAddress,
    config: GrpcClientConfig,
    /// The scheduler's name of the job.
    pub id: String,
}

/// Why the driver has no job, or lost it.
#[derive(Debug)]
pub(crate) enum JobError {
    /// The scheduler could not be reached, or stopped answering about the
    /// job (a restarted scheduler forgets its jobs): the run may be tried
    /// again.
    Unreachable(String),
    /// The scheduler refused the job, or its result does not read.
    Refused(String),
}

/// How a job ended, as far as the driver needs to know.
pub(crate) enum Ended {
    /// The job's result, one batch stream per output partition, read.
    Succeeded(Vec<RecordBatch>),
    /// The scheduler's account of the failure.
    Failed(String),
}

/// Submits `plan`, encoded with `codec`, with the options of `session`.
pub(crate) async fn submit(
    address: &ClusterAddress,
    plan: Arc<dyn ExecutionPlan>,
    codec: &dyn PhysicalExtensionCodec,
    session_id: String,
    session: &SessionConfig,
) -> Result<Job, JobError> {
    let unreachable =
        |e: &dyn std::fmt::Display| JobError::Unreachable(format!("cannot connect: {e}"));
    let config = GrpcClientConfig::from(&BallistaConfig::default());
    let url = format!("http://{}:{}", address.host, address.port);
    let channel = create_grpc_client_endpoint(url, Some(&config))
        .map_err(|e| unreachable(&e))?
        .connect()
        .await
        .map_err(|e| unreachable(&e))?;
    let mut scheduler = Scheduler::new(channel)
        .max_encoding_message_size(config.max_message_size)
        .max_decoding_message_size(config.max_message_size);
    let mut encoded = Vec::new();
    PhysicalPlanNode::try_from_physical_plan(plan, codec)
        .and_then(|node| node.try_encode(&mut encoded))
        .map_err(|e| JobError::Refused(format!("the plan does not encode: {e}")))?;
    let settings = session
        .options()
        .entries()
        .into_iter()
        .map(|entry| KeyValuePair {
            key: entry.key,
            value: entry.value,
        })
        .collect();
    let params = ExecuteQueryParams {
        query: Some(Query::PhysicalPlan(encoded)),
        settings,
        session_id,
        operation_id: format!("{:032x}", rand::random::<u128>()),
    };
    let mut request = tonic::Request::new(params);
    // Schedulers of 55 and later refuse a job from a client that does not
    // say its version.
    ballista_core::version::insert_version_header(request.metadata_mut());
    let answer = scheduler
        .execute_query(request)
        .await
        .map_err(|status| {
            JobError::Unreachable(format!("did not take the job: {}", status.message()))
        })?
        .into_inner();
    let id = match answer.result {
        Some(execute_query_result::Result::Success(success)) => success.job_id,
        Some(execute_query_result::Result::Failure(failure)) => {
            return Err(JobError::Refused(format!(
                "refused the job: {:?}",
                failure.failure
            )));
        }
        None => {
            return Err(JobError::Refused(
                "answered the job with nothing".to_string(),
            ));
        }
    };
    info!(job = %id, scheduler = %address, "the cluster accepted the job");
    Ok(Job {
        scheduler,
        address: address.clone(),
        config,
        id,
    })
}

impl Job {
    /// Waits for the job to end and reads its result.
    pub(crate) async fn ended(&mut self) -> Result<Ended, JobError> {
        loop {
            let answer = self
                .scheduler
                .get_job_status(GetJobStatusParams {
                    job_id: self.id.clone(),
                })
                .await
                .map_err(|status| {
                    JobError::Unreachable(format!(
                        "lost track of job {}: {}",
                        self.id,
                        status.message()
                    ))
                })?
                .into_inner();
            let status = answer.status.and_then(|s| s.status);
            match status {
                None | Some(Status::Queued(_)) | Some(Status::Running(_)) => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Some(Status::Failed(failed)) => return Ok(Ended::Failed(failed.error)),
                Some(Status::Successful(done)) => {
                    let mut batches = Vec::new();
                    for location in done.partition_location {
                        let fetched = self.fetch(location, &answer.flight_proxy).await;
                        batches.extend(fetched.map_err(JobError::Refused)?);
                    }
                    return Ok(Ended::Succeeded(batches));
                }
            }
        }
    }

    /// The batches of one output partition of the job, from the executor
    /// that holds them (or the scheduler's Flight proxy).
    async fn fetch(
        &self,
        location: PartitionLocation,
        proxy: &Option<FlightProxy>,
    ) -> Result<Vec<RecordBatch>, String> {
        let layout = location.layout();
        let executor = location
            .executor_meta
            .ok_or("the job's result names no executor")?;
        let partition = location
            .partition_id
            .ok_or("the job's result names no partition")?;
        let (host, port) = match proxy {
            Some(FlightProxy::External(address)) => split_host_port(address)?,
            Some(FlightProxy::Local(true)) => (self.address.host.clone(), self.address.port),
            Some(FlightProxy::Local(false)) | None => (executor.host.clone(), executor.port as u16),
        };
        let unreachable = |e: ballista_core::error::BallistaError| {
            format!("the job's result at {host}:{port}: {e}")
        };
        let mut client = BallistaClient::try_new(
            &host,
            port,
            self.config.max_message_size,
            self.config.use_tls,
            None,
            self.config.io_retries_times,
            self.config.io_retry_wait_time_ms,
            0,
            0,
        )
        .await
        .map_err(unreachable)?;
        let stream = client
            .fetch_partition_proxied(
                &executor.id,
                &partition.into(),
                location.file_id,
                layout,
                &executor.host,
                executor.port as u16,
                true,
            )
            .await
            .map_err(unreachable)?;
        stream
            .try_collect()
            .await
            .map_err(|e| format!("the job's result at {host}:{port}: {e}"))
    }

    /// Asks the scheduler to cancel the job (its running tasks stop, its
    /// waiting ones never start); a failure to do so is only logged.
    pub(crate) async fn cancel(&mut self) {
        let asked = self.scheduler.cancel_job(CancelJobParams {
            job_id: self.id.clone(),
        });
        match tokio::time::timeout(CANCEL_TIMEOUT, asked).await {
            Ok(Ok(_)) => info!(job = %self.id, "the cluster's job is cancelled"),
            Ok(Err(status)) => {
                warn!(job = %self.id, error = %status.message(), "the cluster's job could not be cancelled")
            }
            Err(_) => {
                warn!(job = %self.id, "the scheduler did not answer the cancellation in time")
            }
        }
    }

    /// A guard that cancels the job when dropped before it is disarmed: a
    /// driver that gives the run up never leaves its job running.
    pub(crate) fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop {
            job: Some(self.clone()),
        }
    }
}

pub(crate) struct CancelOnDrop {
    job: Option<Job>,
}

impl CancelOnDrop {
    /// The job ended (or was cancelled already): nothing to do on drop.
    pub(crate) fn disarm(mut self) {
        self.job = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { job.cancel().await });
        }
    }
}

/// `host:port` of a Flight proxy.
fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("the Flight proxy {address:?} names no port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("the Flight proxy {address:?}: {port:?} is not a port"))?;
    Ok((host.to_string(), port))
}
