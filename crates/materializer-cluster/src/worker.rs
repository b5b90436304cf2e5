//! An executor's side of a run: the partitions Ballista hands it, run as a
//! local run runs them, with the executor's own credentials.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use materializer_core::run::remote::{
    self, BucketDecided, PartitionJob, PartitionKeys, PartitionReport, RemoteFailure,
};
use materializer_core::run::{Progress, RunFailure, RunRequest};
use materializer_core::sink::{OutputLocation, S3Settings};
use materializer_core::source::{NakadiClient, NakadiSettings, NakadiSource, Source};
use materializer_core::{Engine, ErrorClass, Topic, report};

/// What an executor brings to the partitions it runs: the query engine, a
/// folder for the topics' files, and how it reaches Nakadi and the output
/// location (its own token and credentials; the plan carries none).
pub struct Worker {
    engine: Engine,
    /// Where the topics of the jobs are written to be loaded.
    scratch: PathBuf,
    /// Nakadi settings but the URL, which comes with each job.
    nakadi: NakadiSettings,
    s3: S3Settings,
    /// The topics loaded, by fingerprint: a job's tasks load their topic once.
    topics: Mutex<HashMap<String, Arc<Topic>>>,
}

/// Topics kept loaded; more are loaded again.
const KEPT_TOPICS: usize = 16;

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(engine: Engine, scratch: PathBuf, nakadi: NakadiSettings, s3: S3Settings) -> Worker {
        Worker {
            engine,
            scratch,
            nakadi,
            s3,
            topics: Mutex::new(HashMap::new()),
        }
    }

    /// The topic of `job`, loaded from its texts the first time.
    async fn topic(&self, job: &PartitionJob) -> Result<Arc<Topic>, RemoteFailure> {
        let kept = |topics: &HashMap<String, Arc<Topic>>| topics.get(&job.fingerprint).cloned();
        if let Some(topic) = self.topics.lock().ok().and_then(|topics| kept(&topics)) {
            return Ok(topic);
        }
        let scratch = self
            .scratch
            .join(format!("{}-{:016x}", job.attempt, next_folder_number()));
        let topic = remote::topic_of(job, &scratch, &self.engine).await;
        // The files served their purpose once loaded.
        let _ = std::fs::remove_dir_all(&scratch);
        let topic = topic?;
        if let Ok(mut topics) = self.topics.lock() {
            if topics.len() >= KEPT_TOPICS {
                topics.clear();
            }
            topics.insert(job.fingerprint.clone(), topic.clone());
        }
        Ok(topic)
    }

    /// A non-compacting topic's partition at `index` of `job`: read,
    /// decoded, mapped and written.
    pub async fn run(
        &self,
        job: &PartitionJob,
        index: usize,
    ) -> Result<PartitionReport, RemoteFailure> {
        self.on_request(job, async |engine, request| {
            remote::run_partition(engine, request, job, index).await
        })
        .await
    }

    /// A compacting topic's partition at `index` of `job`: its key rows.
    pub(crate) async fn keys(
        &self,
        job: &PartitionJob,
        index: usize,
    ) -> Result<PartitionKeys, RemoteFailure> {
        self.on_request(job, async |engine, request| {
            remote::read_keys(engine, request, job, index).await
        })
        .await
    }

    /// The query engine's runtime (its memory pool, its spill files).
    pub(crate) fn runtime(&self) -> std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv> {
        self.engine.runtime()
    }

    /// A compacting topic's key `bucket`, decided from `keys`.
    pub(crate) async fn decide(
        &self,
        job: &PartitionJob,
        bucket: u32,
        keys: remote::KeyRows,
    ) -> Result<BucketDecided, RemoteFailure> {
        self.on_request(job, async |engine, request| {
            remote::decide_bucket(engine, request, job, bucket, keys).await
        })
        .await
    }

    /// A compacting topic's partition at `index` of `job`, mapped and
    /// written with the buckets' `shares` of it.
    pub(crate) async fn write(
        &self,
        job: &PartitionJob,
        index: usize,
        shares: remote::Shares,
    ) -> Result<PartitionReport, RemoteFailure> {
        self.on_request(job, async |engine, request| {
            remote::write_partition(engine, request, job, index, shares).await
        })
        .await
    }

    /// A failure of a step, as the driver learns it.
    pub(crate) fn failure(&self, job: &PartitionJob, failure: &RunFailure) -> RemoteFailure {
        RemoteFailure {
            class: failure.class(),
            message: format!("topic {}: {}", job.topic.name, report(failure)),
        }
    }

    /// Runs `work` with a request of this worker's own: the job's topic,
    /// Nakadi with this worker's credentials, the job's output location.
    /// Messages name the topic's folder on the driver.
    async fn on_request<T>(
        &self,
        job: &PartitionJob,
        work: impl AsyncFnOnce(&Engine, &RunRequest) -> Result<T, RunFailure>,
    ) -> Result<T, RemoteFailure> {
        let topic = self.topic(job).await?;
        let loaded_at = topic.dir().display().to_string();
        let failure = |class: ErrorClass, message: String| RemoteFailure {
            class,
            message: message.replace(&loaded_at, &job.topic_dir),
        };
        let mut settings = self.nakadi.clone();
        settings.url = job.nakadi_url.clone();
        let client = NakadiClient::new(settings).map_err(|e| failure(e.class(), report(&e)))?;
        let output = OutputLocation::parse(&job.output, &self.s3)
            .map_err(|e| failure(e.class(), report(&e)))?;
        let request = RunRequest {
            topic,
            source: Arc::new(Source::Nakadi(NakadiSource {
                client: Arc::new(client),
                event_type: job.event_type.clone(),
                subscription: None,
            })),
            output,
            progress: Arc::new(Progress::default()),
            cancel: CancellationToken::new(),
            parallelism: 1,
            workers: None,
        };
        work(&self.engine, &request)
            .await
            .map_err(|e| failure(e.class(), report(&e)))
    }
}

fn next_folder_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
