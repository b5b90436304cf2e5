//! A run's life: plan, read, decode, decide, map, write, commit.
//!
//! ```text
//! plan      start cursors = the newest manifest's end cursors; end cursors =
//!           the newest offsets now, or for a recording its files' sizes now
//!           (or the plan an earlier attempt fixed)
//! read      the source's batches, trimmed to each partition's range; a
//!           recording is read once, its end cursors found on the way
//! decode    per partition, on blocking threads: rows + rejected events; the
//!           rows wait in a spool (memory up to a share of --memory-mb, then
//!           a temp file); a compacting topic's key columns go, with each
//!           event's partition and index, to a spool per key-hash bucket
//! decide    bucket by bucket ([`buckets`]), a large bucket in passes by key
//!           hash: look the keys up in the key state, classify each
//!           partition's share (compaction, corrections), write the bucket's
//!           new state segment; the classes come back as one byte per event,
//!           per partition (in memory, or sorted runs on disk for a run of
//!           many events)
//! map       per partition, on its own task: apply the mapping to each class
//!           as it streams out of the spool
//! write     main, correction and rejected files under deterministic names
//! commit    manifest put-if-absent, then _SUCCESS, Redshift manifests, hint
//! ```
//! The CLI and the HTTP API both call [`execute`]; [`Run::go`] below follows
//! the steps in order, each in the file named for it.

mod buckets;
mod classes;
mod classify;
mod commit;
pub mod environment;
mod error;
mod map;
mod plan;
use plan::Planned;
pub mod progress;
mod read;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::commit::{Committer, TopicLock};
// The commit room's types, where the edges and tests still look for them.
pub use crate::commit::{
    Ledger, LedgerError, Manifest, ManifestFile, PartitionCursors, Plan, RunCounts, is_running,
};
use crate::config::Topic;
use crate::failpoint::failpoint;
use crate::mapping::Engine;
use crate::sink::OutputLocation;
use crate::source::{PartitionRange, Source};
use crate::state::{CommittedState, StateStore};
use buckets::KeySpools;
pub use classify::classify;
pub use environment::{RunEnvironment, SetupError};
pub use error::{RunError, RunFailure};
use map::{MainWriters, Mapper};
pub use progress::{Progress, ProgressSnapshot, Stage};
use read::{ReadPartitions, Reading};

/// Everything a run needs.
pub struct RunRequest {
    pub topic: Arc<Topic>,
    pub source: Arc<Source>,
    pub output: OutputLocation,
    pub progress: Arc<Progress>,
    pub cancel: CancellationToken,
    /// Partitions mapped and written at the same time.
    pub parallelism: usize,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Committed,
    NothingNew,
}

/// What a run did, for the terminal, the API and the logs.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub topic: String,
    pub outcome: Outcome,
    /// Sequence number of the committed run (or of the newest committed one
    /// when there was nothing new).
    pub sequence: Option<u64>,
    pub output: String,
    pub counts: RunCounts,
    pub compaction_rate: f64,
    pub files: Vec<ManifestFile>,
    pub bytes_written: u64,
    pub partitions: Vec<PartitionCursors>,
    pub seconds: f64,
    /// True when this attempt reused the plan of an earlier, uncommitted attempt.
    pub resumed: bool,
    /// Where the time went.
    pub timings: Timings,
    /// Partitions whose decoded events outgrew their share of the memory
    /// budget (`--memory-mb`) and waited for mapping in a temp file.
    pub spilled_partitions: usize,
    /// Nakadi requests and streams this run repeated after a failure.
    pub retries: u64,
}

/// Seconds spent in each stage of a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Timings {
    /// Finding the committed run, fixing the plan.
    pub plan: f64,
    /// Reading and decoding the events.
    pub read: f64,
    /// Looking the run's keys up in the key state, classifying, mapping and
    /// writing the files and the key state.
    pub map_write: f64,
    /// Of `map_write`: looking the run's keys up in the key state and
    /// writing its new segments (compactions included).
    pub key_state: f64,
    /// Writing the manifest, the post-commit files and the source's cursors.
    pub commit: f64,
}

/// Runs one topic once: from its committed cursors to the newest offsets.
pub async fn execute(engine: &Engine, request: RunRequest) -> Result<RunSummary, RunError> {
    let _lock = TopicLock::acquire(&request.output, request.topic.name())
        .ok_or_else(|| RunError::new(request.topic.name(), RunFailure::AlreadyRunning))?;
    let started = Instant::now();
    let run = Run {
        engine,
        topic: &request.topic,
        ledger: Ledger::new(request.output.clone(), request.topic.name()),
        request: &request,
        started_at: Utc::now(),
        attempt: format!("{:016x}", rand::random::<u64>()),
        planned: std::sync::OnceLock::new(),
    };
    let result = match run.go().await {
        Err(failure) => Err(run.explain_failure(failure).await),
        ok => ok,
    };
    request.progress.set_stage(Stage::Done);
    match result {
        Ok(mut summary) => {
            summary.seconds = started.elapsed().as_secs_f64();
            Ok(summary)
        }
        Err(failure) => Err(RunError::new(request.topic.name().to_string(), failure)),
    }
}

struct Run<'a> {
    engine: &'a Engine,
    topic: &'a Topic,
    ledger: Ledger,
    request: &'a RunRequest,
    started_at: chrono::DateTime<Utc>,
    /// Random id of this attempt (names its key state files; marks its manifest).
    attempt: String,
    /// The sequence this attempt works on, once planned.
    planned: std::sync::OnceLock<u64>,
}

impl Run<'_> {
    fn name(&self) -> String {
        self.topic.name().to_string()
    }

    /// When another process committed this attempt's sequence first, its
    /// clean-up removes this attempt's half-written files, and the upload that
    /// meets the gap fails: the real cause is the lost race.
    async fn explain_failure(&self, failure: RunFailure) -> RunFailure {
        let Some(&seq) = self.planned.get() else {
            return failure;
        };
        if matches!(
            failure,
            RunFailure::Stopped | RunFailure::Ledger(LedgerError::LostRace { .. })
        ) {
            return failure;
        }
        match self.ledger.manifest(seq).await {
            Ok(Some(manifest)) if manifest.attempt != self.attempt => {
                RunFailure::Ledger(LedgerError::LostRace { seq })
            }
            _ => failure,
        }
    }

    async fn go(&self) -> Result<RunSummary, RunFailure> {
        let progress = &self.request.progress;
        // The client's counter is the process's: this run's share is the difference.
        let retries_before = self.request.source.retries();
        let mut timings = Timings::default();
        let mut clock = Instant::now();
        let mut lap = |slot: &mut f64| {
            *slot = clock.elapsed().as_secs_f64();
            clock = Instant::now();
        };
        progress.set_stage(Stage::Planning);
        let Some(planned) = self.plan().await? else {
            info!(topic = %self.topic.name(), "nothing new since the last committed run");
            return self.nothing_new().await;
        };
        progress.events_planned.store(
            planned.events().unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        let Planned {
            plan,
            resumed,
            committed,
            ..
        } = planned;
        let ranges: Vec<PartitionRange> = plan
            .partitions
            .iter()
            .map(|p| PartitionRange {
                partition: p.partition.clone(),
                start: p.start.clone(),
                end: p.end.clone(),
            })
            .filter(|r| !r.is_empty())
            .collect();
        info!(
            topic = %self.topic.name(),
            sequence = plan.sequence,
            partitions = ranges.len(),
            recording_bytes = plan.recording.as_ref().map(|r| r.bytes()),
            resumed,
            "run planned"
        );
        let _ = self.planned.set(plan.sequence);

        let state_store =
            StateStore::new(self.topic, self.ledger.location(), self.ledger.layout())?;
        let committed_state = committed
            .as_ref()
            .map(Manifest::committed_state)
            .unwrap_or_default();
        lap(&mut timings.plan);
        failpoint("planned");
        let mapper = Arc::new(Mapper {
            engine: self.engine.clone(),
            topic: self.request.topic.clone(),
            ledger: self.ledger.clone(),
            progress: self.request.progress.clone(),
            sequence: plan.sequence,
        });
        // A topic that does not compact is mapped while it is read, when its
        // mapping reads the events once (as a stream can be read); the read
        // opens a writer per partition while the files fit half the memory
        // budget (all are open at once).
        let mut writers = if !self.topic.compaction().compact && mapper.reads_events_once().await? {
            Some(MainWriters::new(mapper.clone()))
        } else {
            None
        };
        progress.set_stage(Stage::Reading);
        // A compacting topic's keys wait in spools by bucket for the
        // classification; they may hold an eighth of the memory budget.
        let key_spools = if self.topic.compaction().compact {
            Some(Arc::new(KeySpools::new(
                state_store.schema(),
                &committed_state,
                self.engine.runtime(),
                self.engine.settings().memory_limit / 8,
            )?))
        } else {
            None
        };
        let reading = match &plan.recording {
            Some(extent) => Reading::Recording {
                starts: plan
                    .partitions
                    .iter()
                    .map(|p| (p.partition.clone(), p.start.clone()))
                    .collect(),
                extent,
            },
            None => Reading::Ranges(&ranges),
        };
        let read = self
            .cancellable(self.read(reading, writers.as_mut(), key_spools.as_ref()))
            .await?;
        let main_files = match writers {
            Some(writers) => self.cancellable(writers.finish()).await?,
            None => HashMap::new(),
        };
        lap(&mut timings.read);
        let plan = match plan.recording {
            Some(_) => {
                // Now the read tells how many events the run holds.
                progress.events_planned.store(
                    progress
                        .events_read
                        .load(std::sync::atomic::Ordering::Relaxed),
                    std::sync::atomic::Ordering::Relaxed,
                );
                plan.with_ends(&read.reached)
            }
            None => plan,
        };
        if plan.partitions.iter().all(|p| !p.end.is_after(&p.start)) {
            // A recording that grew by keep-alive lines only, or by lines
            // the committed runs read already.
            info!(topic = %self.topic.name(), sequence = plan.sequence, "the recording holds nothing new");
            self.ledger.drop_plan(plan.sequence).await?;
            return self.nothing_new().await;
        }
        let ReadPartitions { decoded, order, .. } = read;
        let spilled_partitions = decoded.values().filter(|p| p.events.spilled()).count();

        progress.set_stage(Stage::Mapping);
        let (decisions, state_after) = match key_spools {
            Some(spools) => {
                let spools = Arc::into_inner(spools).ok_or_else(|| {
                    buckets::internal("a decoder still holds the run's key spools")
                })?;
                let rows: Vec<(String, u64)> = order
                    .iter()
                    .map(|partition| {
                        let rows = decoded.get(partition).map_or(0, |p| p.rows);
                        (partition.clone(), rows)
                    })
                    .collect();
                let decisions = self
                    .cancellable(self.decide(
                        spools,
                        &rows,
                        &state_store,
                        &committed_state,
                        plan.sequence,
                    ))
                    .await?;
                timings.key_state += decisions.key_state_seconds;
                let state = if decisions.state.segments.is_empty() {
                    committed_state
                } else {
                    CommittedState::Buckets(decisions.state)
                };
                (decisions.partitions, state)
            }
            None => (HashMap::new(), committed_state),
        };
        let outputs = self
            .cancellable(self.map_and_write(&mapper, decoded, main_files, decisions))
            .await?;

        lap(&mut timings.map_write);
        failpoint("files-written");
        progress.set_stage(Stage::Committing);
        let manifest = self.manifest(&plan, outputs, state_after);
        self.ledger.commit(&manifest).await?;
        failpoint("committed");
        info!(topic = %self.topic.name(), sequence = manifest.sequence, files = manifest.files.len(), "run committed");
        self.ledger.post_commit(&manifest).await?;
        failpoint("post-committed");
        self.request
            .source
            .commit(&manifest.end_cursors())
            .await
            .map_err(|source| RunFailure::CursorCommit {
                sequence: manifest.sequence,
                source,
            })?;
        let retries = self.request.source.retries().saturating_sub(retries_before);
        progress
            .retries
            .store(retries, std::sync::atomic::Ordering::Relaxed);

        lap(&mut timings.commit);
        Ok(RunSummary {
            topic: self.name(),
            outcome: Outcome::Committed,
            sequence: Some(manifest.sequence),
            output: self.ledger.location().url.clone(),
            compaction_rate: manifest.counts.compaction_rate(),
            counts: manifest.counts,
            bytes_written: manifest.files.iter().map(|f| f.bytes).sum(),
            files: manifest.files,
            partitions: manifest.partitions,
            seconds: 0.0,
            resumed,
            timings,
            spilled_partitions,
            retries,
        })
    }

    /// The summary of a run that found nothing new to read.
    async fn nothing_new(&self) -> Result<RunSummary, RunFailure> {
        let latest = self.ledger.latest().await?;
        Ok(RunSummary {
            topic: self.name(),
            outcome: Outcome::NothingNew,
            sequence: latest.as_ref().map(|m| m.sequence),
            output: self.ledger.location().url.clone(),
            counts: RunCounts::default(),
            compaction_rate: 0.0,
            files: Vec::new(),
            bytes_written: 0,
            partitions: latest.map(|m| m.partitions).unwrap_or_default(),
            seconds: 0.0,
            resumed: false,
            timings: Timings::default(),
            spilled_partitions: 0,
            retries: 0,
        })
    }

    async fn cancellable<T>(
        &self,
        work: impl Future<Output = Result<T, RunFailure>>,
    ) -> Result<T, RunFailure> {
        tokio::select! {
            result = work => result,
            _ = self.request.cancel.cancelled() => Err(RunFailure::Stopped),
        }
    }
}
