//! Runs whose partitions are read, decoded, mapped and written by other
//! processes (the executors of a cluster), while this process plans and
//! commits them as it does its own.
//!
//! ```text
//! driver    plan (cursors, sequence) ── PartitionJob ──▶ workers
//! worker    one partition range: read, decode, map, write ── PartitionReport ──▶ driver
//! driver    manifest from the reports, commit, cursors
//! ```
//! The files of a partition have the names a local run gives them
//! (sequence and partition), so a task that is run again rewrites the same
//! objects with the same bytes, and a local run and a cluster run of a topic
//! can follow each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::attempt::{Attempt, RunRequest};
use super::error::RunFailure;
use super::map::{self, Mapper, PartitionOutput};
use super::progress::Progress;
use super::read;
use crate::commit::{PartitionCursors, Plan, RunCounts};
use crate::config::{Topic, TopicTexts};
use crate::error::ErrorClass;
use crate::mapping::Engine;
use crate::sink::{FileKind, WrittenFile};
use crate::source::Source;
use crate::state::{CommittedState, Segment, StateIndex, StateStore};

mod board;
mod compacting;

pub use super::decide::{
    BucketDecided, DecidedShare, KeyRows, PartitionKeys, SHARE_CLASS, SHARE_DELETED, SHARE_EVENT,
    Shares, share_events_schema,
};
use board::Publisher;
pub use board::TaskStep;
pub use compacting::{decide_bucket, read_keys, write_partition};

/// What a worker needs to run its share of a planned run; it travels with
/// the cluster's plan, so it holds no secret: each worker reads Nakadi and
/// the output location with credentials of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionJob {
    pub topic: TopicTexts,
    /// The topic's folder on the driver: what messages name, wherever a
    /// worker loaded the topic.
    pub topic_dir: String,
    /// The topic's fingerprint on the driver: a worker that loads the texts
    /// to another topic refuses the job.
    pub fingerprint: String,
    /// The output location's URL (`s3://bucket/prefix`, or a folder every
    /// worker sees at the same path).
    pub output: String,
    pub nakadi_url: String,
    pub event_type: String,
    pub sequence: u64,
    /// The driver's attempt: names nothing a worker writes, marks its logs.
    pub attempt: String,
    /// The plan's partitions that hold new events, one task each.
    pub partitions: Vec<PartitionCursors>,
    /// Whether the topic compacts: its keys are decided across partitions.
    #[serde(default)]
    pub compact: bool,
    /// A compacting topic's key state as the newest committed run left it
    /// (none before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateIndex>,
}

impl PartitionJob {
    /// The key state the job's run starts from.
    pub fn committed_state(&self) -> CommittedState {
        CommittedState::named(self.state.as_ref(), None)
    }

    /// The partition at `index` in the job's list.
    pub fn cursors(&self, index: usize) -> Result<&PartitionCursors, RemoteFailure> {
        self.partitions.get(index).ok_or_else(|| RemoteFailure {
            class: ErrorClass::Internal,
            message: format!(
                "topic {}: the job has no partition number {index}",
                self.topic.name
            ),
        })
    }
}

/// One file a worker wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedFile {
    pub kind: FileKind,
    /// The object's path in the output store.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_partition: Vec<(String, String)>,
}

/// What a worker did with one partition: its files and counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    pub partition: String,
    pub files: Vec<ReportedFile>,
    pub counts: RunCounts,
    /// The key buckets whose decisions about the partition's events it
    /// was mapped with (a compacting topic's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decided_by: Vec<u32>,
}

/// What a worker did with one key bucket of a compacting topic: the
/// bucket's key state after the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketReport {
    pub bucket: u32,
    pub segments: Vec<Segment>,
    pub key_state_seconds: f64,
}

/// What the workers did with a job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkersDone {
    /// One report per partition of the job.
    pub reports: Vec<PartitionReport>,
    /// One report per key bucket the job decided.
    pub buckets: Vec<BucketReport>,
    /// The workers' own name of the job (a Ballista job id), for the
    /// summary and for finding the job in the cluster's logs.
    pub job: Option<String>,
}

/// A failure of the workers as the driver learns it: its class survives
/// the trip, its causes travel as text.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct RemoteFailure {
    pub class: ErrorClass,
    pub message: String,
}

/// What the driver hands workers beside a job.
pub struct Driving<'a> {
    /// Set when the run is stopped: the workers give the job up (a cluster
    /// cancels it) and return.
    pub stop: &'a tokio_util::sync::CancellationToken,
    /// The run's counters, where the workers name their job.
    pub progress: &'a Progress,
}

/// Processes that run the partitions of a run planned here.
#[async_trait::async_trait]
pub trait PartitionWorkers: Send + Sync {
    /// Where the work goes, for messages: `the cluster at df://host:50050`.
    fn describe(&self) -> String;

    /// Runs each partition of `job` and reports on it; fails as a whole
    /// when any partition fails after the workers' own retries, or when
    /// `driving.stop` is set.
    async fn run(
        &self,
        job: PartitionJob,
        driving: Driving<'_>,
    ) -> Result<WorkersDone, RemoteFailure>;
}

/// Why a run cannot go to workers yet, or `None` when it can.
pub(super) fn refusal(request: &RunRequest) -> Option<String> {
    let topic = &request.topic;
    match &*request.source {
        Source::Nakadi(nakadi) if nakadi.subscription.is_none() => None,
        Source::Nakadi(_) => Some(format!(
            "topic {} reads a Nakadi subscription: a cluster reads partitions by their cursors; \
             remove [source] subscription or run it without --cluster",
            topic.name()
        )),
        Source::Recorded(_) => Some(format!(
            "topic {} reads recorded batches: a cluster reads a live Nakadi (--nakadi-url)",
            topic.name()
        )),
    }
}

/// The job of a planned run for the workers, which starts from the key
/// state `committed`.
pub(super) fn job(
    attempt: &Attempt<'_>,
    plan: &Plan,
    committed: &CommittedState,
) -> Result<PartitionJob, RunFailure> {
    let state = match committed {
        CommittedState::Empty => None,
        CommittedState::Buckets(index) => Some(index.clone()),
        CommittedState::Single(_) => {
            return Err(RunFailure::Remote(RemoteFailure {
                class: ErrorClass::Config,
                message: format!(
                    "topic {}: its key state is still one file, as an earlier release wrote \
                     it; run it once without --cluster, which splits the state into buckets",
                    attempt.topic.name()
                ),
            }));
        }
    };
    let Source::Nakadi(nakadi) = &*attempt.request.source else {
        return Err(RunFailure::invariant(
            "a run on workers reads a live Nakadi",
        ));
    };
    Ok(PartitionJob {
        topic: attempt.topic.texts().as_ref().clone(),
        topic_dir: attempt.topic.dir().display().to_string(),
        fingerprint: attempt.topic.fingerprint().to_string(),
        output: attempt.location.url.clone(),
        nakadi_url: nakadi.client.settings.url.clone(),
        event_type: nakadi.event_type.clone(),
        sequence: plan.sequence,
        attempt: attempt.id.clone(),
        partitions: plan
            .partitions
            .iter()
            .filter(|p| p.end.is_after(&p.start))
            .cloned()
            .collect(),
        compact: attempt.topic.compaction().compact,
        state,
    })
}

/// What the workers did with a run, as the commit takes it.
pub(super) struct Ran {
    pub outputs: Vec<PartitionOutput>,
    /// The workers' own name of the job.
    pub job: Option<String>,
    /// The key state after the run.
    pub state_after: CommittedState,
    pub key_state_seconds: f64,
    /// The retries of the workers' reads of Nakadi.
    pub retries: u64,
}

/// Hands the partitions of `plan` to `workers` and takes their reports
/// back as the outputs a local run would have given; `committed`: the key
/// state the run starts from.
pub(super) async fn run_on(
    attempt: &Attempt<'_>,
    workers: &dyn PartitionWorkers,
    plan: &Plan,
    committed: &CommittedState,
) -> Result<Ran, RunFailure> {
    let job = job(attempt, plan, committed)?;
    let progress = attempt.progress();
    progress
        .partitions_total
        .store(job.partitions.len() as u64, Ordering::Relaxed);
    let folder = board::folder(attempt, &job);
    let store = attempt.location.store.clone();
    let mut board = board::Board::default();
    let stop = &attempt.request.cancel;
    let driving = Driving {
        stop,
        progress: progress.as_ref(),
    };
    // The tasks' counters are the run's while the job runs; their
    // reports are, once it ended.
    let done = tokio::select! {
        done = workers.run(job, driving) => done,
        never = board::watch(&store, &folder, progress, &mut board) => match never {},
    };
    // Every task that ended put its last counters before it did.
    board.read(&store, &folder).await;
    let retries = board.totals().retries();
    board::clear(&store, &folder).await;
    board::Totals::default().show(progress);
    let done = match done {
        Err(_) if stop.is_cancelled() => return Err(RunFailure::Stopped),
        done => done.map_err(RunFailure::Remote)?,
    };
    let state_after = state_after(committed, &done.buckets, &done.reports)?;
    let key_state_seconds = done.buckets.iter().map(|b| b.key_state_seconds).sum();
    let mut outputs = Vec::with_capacity(done.reports.len());
    for report in done.reports {
        let output = output_of(report)?;
        count_progress(progress, &output);
        outputs.push(output);
    }
    outputs.sort_by(|a, b| crate::source::partition_cmp(&a.partition, &b.partition));
    check_visible(attempt, &outputs).await?;
    Ok(Ran {
        outputs,
        job: done.job,
        state_after,
        key_state_seconds,
        retries,
    })
}

/// The key state after a run whose buckets the workers decided: each
/// decided bucket's segments as its worker reported them, the committed
/// segments of the others. Fails when a bucket decided some partition's
/// events but its state is not reported (its keys would be forgotten), or
/// is reported twice with different segments.
fn state_after(
    committed: &CommittedState,
    buckets: &[BucketReport],
    reports: &[PartitionReport],
) -> Result<CommittedState, RunFailure> {
    let failure = |message: String| {
        RunFailure::Remote(RemoteFailure {
            class: ErrorClass::Internal,
            message: format!("{message}; nothing is committed"),
        })
    };
    let mut reported: BTreeMap<u32, &BucketReport> = BTreeMap::new();
    for bucket in buckets {
        if let Some(earlier) = reported.insert(bucket.bucket, bucket)
            && earlier.segments != bucket.segments
        {
            return Err(failure(format!(
                "the workers reported the key state of bucket {} twice, differently",
                bucket.bucket
            )));
        }
    }
    for report in reports {
        if let Some(bucket) = report.decided_by.iter().find(|b| !reported.contains_key(b)) {
            return Err(failure(format!(
                "partition {} was mapped with decisions of key bucket {bucket}, whose key state \
                 no worker reported",
                report.partition
            )));
        }
    }
    if reported.is_empty() {
        return Ok(committed.clone());
    }
    let count = committed.buckets();
    if let Some(bucket) = reported.keys().find(|&&b| b >= count) {
        return Err(failure(format!(
            "the workers reported key bucket {bucket} of a state of {count} buckets"
        )));
    }
    let segments: Vec<Segment> = (0..count)
        .flat_map(|bucket| match reported.get(&bucket) {
            Some(report) => report.segments.clone(),
            None => committed.segments_of(bucket),
        })
        .collect();
    if segments.is_empty() {
        return Ok(committed.clone());
    }
    Ok(CommittedState::Buckets(StateIndex {
        buckets: count,
        segments,
    }))
}

/// Fails unless every file the workers reported is in the output location
/// as this process sees it, with the size reported: a worker that wrote to
/// a folder of its own machine (a local output location not shared with
/// this one) would otherwise be committed as files nobody can read.
async fn check_visible(
    attempt: &Attempt<'_>,
    outputs: &[PartitionOutput],
) -> Result<(), RunFailure> {
    use futures::{StreamExt, TryStreamExt};
    let url: Arc<str> = Arc::from(attempt.location.url.as_str());
    // Owned, so that the checks borrow nothing of the run (a future that
    // borrows into a stream is not `Send` for every lifetime).
    let checks: Vec<_> = outputs
        .iter()
        .flat_map(|output| output.files.iter().map(|(_, file)| file.clone()))
        .map(|file| check_one(attempt.location.store.clone(), url.clone(), file))
        .collect();
    // An object store answers many small requests at once.
    futures::stream::iter(checks)
        .buffer_unordered(CHECKS_AT_ONCE)
        .try_collect::<()>()
        .await
}

/// Whether `file` is in `store` with the size reported.
async fn check_one(
    store: Arc<dyn ObjectStore>,
    url: Arc<str>,
    file: WrittenFile,
) -> Result<(), RunFailure> {
    use object_store::ObjectStoreExt;
    let problem = match store.head(&file.path).await {
        Ok(meta) if meta.size == file.bytes => return Ok(()),
        Ok(meta) => format!("holds {} bytes, not the {} reported", meta.size, file.bytes),
        Err(object_store::Error::NotFound { .. }) => "is not there".to_string(),
        Err(source) => {
            return Err(RunFailure::Sink(crate::sink::SinkError::Store {
                path: file.path.to_string(),
                source,
            }));
        }
    };
    Err(RunFailure::Remote(RemoteFailure {
        class: ErrorClass::Config,
        message: format!(
            "a worker reported {} in {url}, but the file {problem} as this process sees the \
             location: the workers and this process must share the output location (S3, or a \
             folder mounted at the same path everywhere); nothing is committed",
            file.path
        ),
    }))
}

/// Files checked at once.
const CHECKS_AT_ONCE: usize = 16;

/// Counts a partition a worker finished.
fn count_progress(progress: &Progress, output: &PartitionOutput) {
    let counts = &output.counts;
    Progress::add(&progress.partitions_finished, 1);
    Progress::add(&progress.events_read, counts.events_read);
    Progress::add(&progress.events_rejected, counts.events_rejected);
    Progress::add(&progress.main_rows, counts.main_rows);
    Progress::add(&progress.files_written, output.files.len() as u64);
    let bytes: u64 = output.files.iter().map(|(_, f)| f.bytes).sum();
    Progress::add(&progress.bytes_written, bytes);
}

fn output_of(report: PartitionReport) -> Result<PartitionOutput, RunFailure> {
    let files = report
        .files
        .into_iter()
        .map(|file| {
            let path = Path::parse(&file.path).map_err(|e| {
                RunFailure::Remote(RemoteFailure {
                    class: ErrorClass::Internal,
                    message: format!("a worker reported the file {:?}: {e}", file.path),
                })
            })?;
            let written = WrittenFile {
                path,
                rows: file.rows,
                bytes: file.bytes,
                sha256: file.sha256,
                output_partition: file.output_partition,
            };
            Ok((file.kind, written))
        })
        .collect::<Result<_, RunFailure>>()?;
    Ok(PartitionOutput {
        partition: report.partition,
        files,
        counts: report.counts,
    })
}

fn report_of(output: PartitionOutput) -> PartitionReport {
    PartitionReport {
        partition: output.partition,
        files: output
            .files
            .into_iter()
            .map(|(kind, file)| ReportedFile {
                kind,
                path: file.path.to_string(),
                rows: file.rows,
                bytes: file.bytes,
                sha256: file.sha256,
                output_partition: file.output_partition,
            })
            .collect(),
        counts: output.counts,
        decided_by: Vec::new(),
    }
}

/// A worker's share of a run: reads, decodes, maps and writes the
/// partition at `index` of the run `job` names, as a local run does, with
/// `request` holding the worker's own source and output location.
pub async fn run_partition(
    engine: &Engine,
    request: &RunRequest,
    job: &PartitionJob,
    index: usize,
) -> Result<PartitionReport, RunFailure> {
    crate::failpoint::hold("partition-task").await;
    let (cursors, attempt, publisher) = partition_task(engine, request, job, TaskStep::Run, index)?;
    let (mapper, read) = read_share(&attempt, job, cursors, read::Keep::Rows).await?;
    let outputs = map::map_and_write(
        &attempt,
        &mapper,
        read.decoded,
        read.main_files,
        HashMap::new(),
    )
    .await?;
    publisher.finish().await;
    Ok(only_report(outputs, cursors))
}

/// The task of `step` on the partition at `index` of `job`: the
/// partition's cursors, the task's attempt (a worker's share of the
/// driver's), and its counters put on the run's board until it finishes.
fn partition_task<'a>(
    engine: &'a Engine,
    request: &'a RunRequest,
    job: &'a PartitionJob,
    step: TaskStep,
    index: usize,
) -> Result<(&'a PartitionCursors, Attempt<'a>, Publisher), RunFailure> {
    let cursors = job.cursors(index).map_err(RunFailure::Remote)?;
    let attempt = Attempt::new(engine, request).for_sequence(&job.attempt, job.sequence);
    let publisher = Publisher::start(&attempt, job, step, index);
    Ok((cursors, attempt, publisher))
}

/// Reads and decodes the partition `cursors` of `job` as `attempt`, a
/// worker's share of the driver's, keeping `keep`. Gives the mapper of
/// the share too.
async fn read_share(
    attempt: &Attempt<'_>,
    job: &PartitionJob,
    cursors: &PartitionCursors,
    keep: read::Keep,
) -> Result<(Arc<Mapper>, read::Read), RunFailure> {
    let mapper = Arc::new(Mapper::new(attempt, job.sequence));
    let state_store = StateStore::new(attempt.topic, &attempt.location, &attempt.layout)?;
    let read = read::read_plan(
        attempt,
        plan_of(attempt, job, cursors),
        &mapper,
        &state_store,
        &job.committed_state(),
        keep,
    )
    .await?;
    Ok((mapper, read))
}

/// The plan of a worker's share of `job`: the partition `cursors`.
fn plan_of(attempt: &Attempt<'_>, job: &PartitionJob, cursors: &PartitionCursors) -> Plan {
    Plan {
        topic: job.topic.name.clone(),
        event_type: job.event_type.clone(),
        sequence: job.sequence,
        created_at: attempt.started_at,
        fingerprint: job.fingerprint.clone(),
        partitions: vec![cursors.clone()],
        recording: None,
    }
}

/// The report of the one partition `cursors` names (an empty one when the
/// map wrote nothing).
fn only_report(outputs: Vec<PartitionOutput>, cursors: &PartitionCursors) -> PartitionReport {
    let mut reports = outputs.into_iter().map(report_of);
    reports.next().unwrap_or_else(|| PartitionReport {
        partition: cursors.partition.clone(),
        files: Vec::new(),
        counts: RunCounts::default(),
        decided_by: Vec::new(),
    })
}

/// The topic of a job, loaded from its texts under `scratch`; refused when
/// it is not the topic the driver planned with.
pub async fn topic_of(
    job: &PartitionJob,
    scratch: &std::path::Path,
    engine: &Engine,
) -> Result<Arc<Topic>, RemoteFailure> {
    let topic = Topic::load_texts(&job.topic, scratch, engine)
        .await
        .map_err(|e| RemoteFailure {
            class: e.class(),
            message: format!(
                "topic {}: its files do not load on this worker: {}",
                job.topic.name,
                crate::error::report(&e)
            ),
        })?;
    if topic.fingerprint() != job.fingerprint {
        return Err(RemoteFailure {
            class: ErrorClass::Internal,
            message: format!(
                "topic {}: the files loaded on this worker are not the ones the run was planned \
                 with (fingerprint {} here, {} on the driver)",
                job.topic.name,
                topic.fingerprint(),
                job.fingerprint
            ),
        });
    }
    Ok(Arc::new(topic))
}
