//! A run's life: plan, read, decode, map, write, commit.
//!
//! ```text
//! plan      start cursors = the newest manifest's end cursors; end cursors =
//!           the newest offsets now (or the plan an earlier attempt fixed)
//! read      the source's batches, trimmed to each partition's range
//! decode    per partition, on blocking threads: rows + rejected events; the
//!           rows wait in a spool (memory up to a share of --memory-mb, then
//!           a temp file), their key columns in memory
//! map       per partition, on its own task: classify (compaction, corrections)
//!           in one pass over the keys, apply the mapping to each class as it
//!           streams out of the spool
//! write     main, correction and rejected files under deterministic names
//! commit    manifest put-if-absent, then _SUCCESS, Redshift manifests, hint
//! ```
//! The CLI and the HTTP API both call [`execute`].

mod classify;
pub mod environment;
pub mod keystate;
pub mod ledger;
pub mod progress;

/// Testing aid: with `MATERIALIZER_FAILPOINT=<name>` the process aborts at the
/// named point of a run, as a crash there would end it. Points: `planned`,
/// `reading` (after the first batch went to a decoder), `first-file-written`,
/// `files-written` (all files, no manifest yet), `committed` (manifest written,
/// nothing after it), `post-committed`.
pub fn failpoint(name: &str) {
    static POINT: LazyLock<Option<String>> =
        LazyLock::new(|| std::env::var("MATERIALIZER_FAILPOINT").ok());
    if POINT.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Topic;
use crate::decode::{
    DecodeError, DecodedPartition, PartitionDecoder, Rejected, RequiredKeys, Spool, Spooled,
};
use crate::mapping::{Engine, MappingError};
use crate::source::{
    Batch, Offset, PartitionRange, Source, SourceError, check_available, partition_cmp, plan_ranges,
};
use crate::sink::file::{OPEN_FILE_BYTES, data_extension};
use crate::sink::{
    FileKind, ObjectWriter, OutputLocation, PartitionedWriter, SinkError, TopicLayout, WrittenFile,
};
pub use classify::classify;
use classify::{Class, classes, of_class};
pub use environment::{RunEnvironment, SetupError};
pub use keystate::{KeyState, KeyStateError, StateFile};
pub use ledger::{Ledger, LedgerError, Manifest, ManifestFile, PartitionCursors, Plan, RunCounts};
pub use progress::{Progress, ProgressSnapshot, Stage};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("topic {topic} is already running in this process")]
    AlreadyRunning { topic: String },
    #[error("topic {topic}: {source}")]
    Source {
        topic: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "topic {topic}: the source ended before partition {partition} reached offset {end} (last offset read: {reached})"
    )]
    SourceEnded {
        topic: String,
        partition: String,
        reached: Offset,
        end: Offset,
    },
    #[error("topic {topic}, partition {partition}: {source}")]
    Decode {
        topic: String,
        partition: String,
        #[source]
        source: DecodeError,
    },
    #[error("topic {topic}: {source}")]
    Mapping {
        topic: String,
        #[source]
        source: MappingError,
    },
    #[error("topic {topic}, partition {partition}: query failed: {source}")]
    Query {
        topic: String,
        partition: String,
        #[source]
        source: DataFusionError,
    },
    #[error("topic {topic}: {source}")]
    Sink {
        topic: String,
        #[source]
        source: SinkError,
    },
    #[error("topic {topic}: {source}")]
    Ledger {
        topic: String,
        #[source]
        source: LedgerError,
    },
    #[error(
        "topic {topic}: run stopped before its commit; nothing of it is visible and the next run redoes it"
    )]
    Stopped { topic: String },
    #[error(
        "topic {topic}: run {sequence} is committed (its files are visible), but committing its cursors to \
         the Nakadi subscription failed: {source}; the next run commits them before it reads"
    )]
    CursorCommit {
        topic: String,
        sequence: u64,
        #[source]
        source: SourceError,
    },
    #[error("topic {topic}: {source}")]
    KeyState {
        topic: String,
        #[source]
        source: KeyStateError,
    },
    #[error("topic {topic}: internal task failed: {message}")]
    Internal { topic: String, message: String },
}

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
}

/// Seconds spent in each stage of a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Timings {
    /// Finding the committed run, fixing the plan, loading the key state.
    pub plan: f64,
    /// Reading and decoding the events.
    pub read: f64,
    /// Classifying, mapping and writing the files (and the key state).
    pub map_write: f64,
    /// Writing the manifest, the post-commit files and the source's cursors.
    pub commit: f64,
}

/// Topics running in this process, by output location: a second run of one
/// is refused up front.
static ACTIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

struct TopicLock(String);

fn lock_key(output: &OutputLocation, topic: &str) -> String {
    format!("{}/{topic}", output.url.trim_end_matches('/'))
}

impl TopicLock {
    fn acquire(output: &OutputLocation, topic: &str) -> Result<TopicLock, RunError> {
        let key = lock_key(output, topic);
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if !active.insert(key.clone()) {
            return Err(RunError::AlreadyRunning {
                topic: topic.to_string(),
            });
        }
        Ok(TopicLock(key))
    }
}

impl Drop for TopicLock {
    fn drop(&mut self) {
        ACTIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// Whether a topic has a run to `output` in this process now.
pub fn is_running(output: &OutputLocation, topic: &str) -> bool {
    ACTIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&lock_key(output, topic))
}

/// Runs one topic once: from its committed cursors to the newest offsets.
pub async fn execute(engine: &Engine, request: RunRequest) -> Result<RunSummary, RunError> {
    let _lock = TopicLock::acquire(&request.output, &request.topic.name)?;
    let started = Instant::now();
    let run = Run {
        engine,
        topic: &request.topic,
        ledger: Ledger::new(request.output.clone(), &request.topic.name),
        request: &request,
        started_at: Utc::now(),
        attempt: format!("{:016x}", rand::random::<u64>()),
    };
    let result = run.go().await;
    request.progress.set_stage(Stage::Done);
    result.map(|mut summary| {
        summary.seconds = started.elapsed().as_secs_f64();
        summary
    })
}

struct Run<'a> {
    engine: &'a Engine,
    topic: &'a Topic,
    ledger: Ledger,
    request: &'a RunRequest,
    started_at: chrono::DateTime<Utc>,
    /// Random id of this attempt (names its key state file; marks its manifest).
    attempt: String,
}

/// What mapping one partition produced.
struct PartitionOutput {
    partition: String,
    files: Vec<(FileKind, WrittenFile)>,
    counts: RunCounts,
    /// Key and ordering key of the MAIN input, for the key state.
    versions: Vec<RecordBatch>,
}

impl Run<'_> {
    fn name(&self) -> String {
        self.topic.name.clone()
    }

    fn ledger_error(&self, source: LedgerError) -> RunError {
        RunError::Ledger {
            topic: self.name(),
            source,
        }
    }

    async fn go(&self) -> Result<RunSummary, RunError> {
        let progress = &self.request.progress;
        let mut timings = Timings::default();
        let mut clock = Instant::now();
        let mut lap = |slot: &mut f64| {
            *slot = clock.elapsed().as_secs_f64();
            clock = Instant::now();
        };
        progress.set_stage(Stage::Planning);
        let Some((plan, resumed, committed)) = self.plan().await? else {
            let latest = self
                .ledger
                .latest()
                .await
                .map_err(|e| self.ledger_error(e))?;
            info!(topic = %self.topic.name, "nothing new since the last committed run");
            return Ok(RunSummary {
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
            });
        };
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
            topic = %self.topic.name,
            sequence = plan.sequence,
            partitions = ranges.len(),
            resumed,
            "run planned"
        );

        let state = KeyState::load(
            self.topic,
            self.ledger.location(),
            self.ledger.layout(),
            committed.as_ref().and_then(|m| m.state.as_ref()),
        )
        .await
        .map_err(|source| RunError::KeyState {
            topic: self.name(),
            source,
        })?;
        lap(&mut timings.plan);
        failpoint("planned");
        let mapper = Arc::new(Mapper {
            engine: self.engine.clone(),
            topic: self.request.topic.clone(),
            ledger: self.ledger.clone(),
            progress: self.request.progress.clone(),
            state: state.clone(),
            sequence: plan.sequence,
        });
        // A topic that does not compact is mapped while it is read, when its
        // mapping reads the events once (as a stream can be read) and a file
        // open per partition fits half the memory budget (all are open at once).
        let writers_fit = ranges.len() * OPEN_FILE_BYTES <= self.engine.settings().memory_limit / 2;
        let mut writers =
            if !self.topic.compaction.compact && writers_fit && mapper.reads_events_once().await? {
                Some(MainWriters::new(mapper.clone()))
            } else {
                None
            };
        progress.set_stage(Stage::Reading);
        progress
            .partitions_total
            .store(ranges.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let decoded = self
            .cancellable(self.read(&ranges, writers.as_mut()))
            .await?;
        let main_files = match writers {
            Some(writers) => self.cancellable(writers.finish()).await?,
            None => HashMap::new(),
        };
        lap(&mut timings.read);
        let spilled_partitions = decoded.values().filter(|p| p.events.spilled()).count();

        progress.set_stage(Stage::Mapping);
        let mut outputs = self
            .cancellable(self.map_and_write(&mapper, decoded, main_files))
            .await?;
        let versions: Vec<RecordBatch> = outputs
            .iter_mut()
            .flat_map(|o| std::mem::take(&mut o.versions))
            .collect();
        let state_file = if versions.iter().all(|b| b.num_rows() == 0) {
            committed.as_ref().and_then(|m| m.state.clone())
        } else {
            let written = state
                .write_merged(
                    self.engine,
                    self.topic,
                    self.ledger.location(),
                    self.ledger.layout(),
                    plan.sequence,
                    &self.attempt,
                    versions,
                )
                .await
                .map_err(|source| RunError::KeyState {
                    topic: self.name(),
                    source,
                })?;
            Some(written)
        };

        lap(&mut timings.map_write);
        failpoint("files-written");
        progress.set_stage(Stage::Committing);
        let manifest = self.manifest(&plan, outputs, state_file);
        self.ledger
            .commit(&manifest)
            .await
            .map_err(|e| self.ledger_error(e))?;
        failpoint("committed");
        info!(topic = %self.topic.name, sequence = manifest.sequence, files = manifest.files.len(), "run committed");
        self.ledger
            .post_commit(&manifest)
            .await
            .map_err(|e| self.ledger_error(e))?;
        failpoint("post-committed");
        self.request
            .source
            .commit(&manifest.end_cursors())
            .await
            .map_err(|source| RunError::CursorCommit {
                topic: self.name(),
                sequence: manifest.sequence,
                source,
            })?;
        progress.retries.store(
            self.request.source.retries(),
            std::sync::atomic::Ordering::Relaxed,
        );

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
        })
    }

    async fn cancellable<T>(
        &self,
        work: impl Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError> {
        tokio::select! {
            result = work => result,
            _ = self.request.cancel.cancelled() => Err(RunError::Stopped { topic: self.name() }),
        }
    }

    /// The plan in force for the next sequence number, or `None` when there is
    /// nothing new. Also finishes the post-commit steps of the newest run.
    async fn plan(&self) -> Result<Option<(Plan, bool, Option<Manifest>)>, RunError> {
        let committed = self
            .ledger
            .latest()
            .await
            .map_err(|e| self.ledger_error(e))?;
        if let Some(manifest) = &committed
            && !self
                .ledger
                .post_commit_done(manifest)
                .await
                .map_err(|e| self.ledger_error(e))?
        {
            info!(topic = %self.topic.name, sequence = manifest.sequence, "completing the post-commit steps of the last run");
            self.ledger
                .post_commit(manifest)
                .await
                .map_err(|e| self.ledger_error(e))?;
        }
        let committed_ends = committed
            .as_ref()
            .map(Manifest::end_cursors)
            .unwrap_or_default();
        self.request
            .source
            .prepare(&committed_ends)
            .await
            .map_err(|source| RunError::Source {
                topic: self.name(),
                source,
            })?;
        let sequence = committed.as_ref().map_or(1, |m| m.sequence + 1);

        let existing = self
            .ledger
            .plan(sequence)
            .await
            .map_err(|e| self.ledger_error(e))?;
        if let Some(plan) = &existing
            && follows(plan, &committed_ends)
        {
            return Ok(Some((plan.clone(), true, committed)));
        }

        let partitions =
            self.request
                .source
                .partitions()
                .await
                .map_err(|source| RunError::Source {
                    topic: self.name(),
                    source,
                })?;
        check_available(&partitions, &committed_ends).map_err(|source| RunError::Source {
            topic: self.name(),
            source,
        })?;
        let mut ranges = plan_ranges(&partitions, &committed_ends);
        // Partitions the source no longer lists keep their cursors.
        for (partition, offset) in &committed_ends {
            if !ranges.iter().any(|r| &r.partition == partition) {
                ranges.push(PartitionRange {
                    partition: partition.clone(),
                    start: offset.clone(),
                    end: offset.clone(),
                });
            }
        }
        ranges.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
        if ranges.iter().all(PartitionRange::is_empty) {
            return Ok(None);
        }
        let plan = Plan {
            topic: self.name(),
            event_type: self.topic.event_type.clone(),
            sequence,
            created_at: Utc::now(),
            fingerprint: self.topic.fingerprint.clone(),
            partitions: ranges
                .into_iter()
                .map(|r| PartitionCursors {
                    partition: r.partition,
                    start: r.start,
                    end: r.end,
                    events: None,
                })
                .collect(),
        };
        if existing.is_some() {
            // A stale plan (its start cursors do not follow the committed run).
            warn!(topic = %self.topic.name, sequence, "replacing a plan that does not follow the committed cursors");
            self.ledger
                .replace_plan(&plan)
                .await
                .map_err(|e| self.ledger_error(e))?;
            return Ok(Some((plan, false, committed)));
        }
        let in_force = self
            .ledger
            .fix_plan(plan.clone())
            .await
            .map_err(|e| self.ledger_error(e))?;
        let resumed = in_force != plan;
        Ok(Some((in_force, resumed, committed)))
    }

    /// Reads every range and decodes it, one decoder thread per partition.
    /// With `writers`, each partition's rows go on to a MAIN writer as they
    /// are decoded instead of waiting in a spool.
    async fn read(
        &self,
        ranges: &[PartitionRange],
        mut writers: Option<&mut MainWriters>,
    ) -> Result<BTreeMap<String, DecodedPartition>, RunError> {
        struct Open {
            position: Offset,
            end: Offset,
            /// Whether a batch of this range went to the decoder yet.
            started: bool,
            sender: mpsc::Sender<Batch>,
        }
        let progress = &self.request.progress;
        let mut open: HashMap<String, Open> = HashMap::new();
        let mut decoders = Vec::new();
        // Decoded events may hold a quarter of the memory budget; the rest is
        // for classification and the mapping's operators.
        let spool_cap = self.engine.settings().memory_limit / 4 / ranges.len().max(1);
        for range in ranges {
            // Few lines in flight per partition: each may be megabytes.
            let (sender, receiver) = mpsc::channel::<Batch>(4);
            let mut decoder = PartitionDecoder::new(
                self.topic.schema.read_payload.clone(),
                self.topic.schema.read_events.clone(),
                Arc::from(range.partition.as_str()),
                RequiredKeys {
                    paths: self
                        .topic
                        .compaction
                        .partitioning_key
                        .iter()
                        .chain([&self.topic.compaction.ordering_key])
                        .cloned()
                        .collect(),
                },
            )
            .map_err(|source| RunError::Decode {
                topic: self.name(),
                partition: range.partition.clone(),
                source,
            })?;
            let events_schema = self.topic.schema.read_events.clone();
            decoder = match writers.as_deref_mut() {
                Some(writers) => decoder
                    .with_spool(Spool::passing_to(
                        events_schema,
                        writers.start(&range.partition),
                    ))
                    .without_key_columns(),
                None => decoder.with_spool(Spool::bounded(
                    events_schema,
                    self.engine.runtime(),
                    &range.partition,
                    spool_cap,
                )),
            };
            let partition = range.partition.clone();
            decoders.push((partition, {
                let progress = progress.clone();
                tokio::task::spawn_blocking(move || {
                    let mut receiver = receiver;
                    while let Some(batch) = receiver.blocking_recv() {
                        decoder.push(&batch)?;
                        let (events, bytes) = decoder.take_seen();
                        Progress::add(&progress.events_read, events);
                        Progress::add(&progress.bytes_read, bytes);
                    }
                    decoder.finish()
                })
            }));
            open.insert(
                range.partition.clone(),
                Open {
                    position: range.start.clone(),
                    end: range.end.clone(),
                    started: false,
                    sender,
                },
            );
        }

        let mut stream = self.request.source.stream(ranges);
        while !open.is_empty() {
            let next = match writers.as_deref_mut() {
                // A writer that fails ends the run at once.
                Some(writers) => tokio::select! {
                    next = stream.next() => next,
                    failed = writers.failure() => return Err(failed),
                },
                None => stream.next().await,
            };
            let Some(batch) = next else {
                break;
            };
            let mut batch = batch.map_err(|source| RunError::Source {
                topic: self.name(),
                source,
            })?;
            let partition = batch.partition.to_string();
            let Some(state) = open.get_mut(&partition) else {
                continue; // finished already, or not part of this run
            };
            let source_error = |message: String| RunError::Source {
                topic: self.name(),
                source: SourceError::Partition {
                    partition: partition.clone(),
                    message,
                },
            };
            // A batch at an edge of the range may hold events outside it: it
            // is framed here and trimmed. The others go to the decoder as
            // they are, which frames their events while it decodes them.
            let at_edge = !state.started
                || batch.offset.is_after(&state.end)
                || !batch.offset.is_after(&state.position);
            if batch.unframed.is_some() && at_edge {
                batch
                    .frame()
                    .map_err(|e| source_error(format!("{}: {e}", batch.origin_or_unknown())))?;
            }
            let has_events = match batch.unframed {
                Some(_) => true, // inside the range: the decoder frames it
                None => {
                    batch
                        .retain_between(&state.position, &state.end)
                        .map_err(source_error)?;
                    !batch.events.is_empty()
                }
            };
            if has_events {
                state.position = batch.offset.clone();
                state.started = true;
                if state.sender.send(batch).await.is_err() {
                    break; // the decoder failed; its error is collected below
                }
                failpoint("reading");
                progress.retries.store(
                    self.request.source.retries(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            if !state.end.is_after(&state.position) {
                debug!(topic = %self.topic.name, partition, "partition read to its end cursor");
                open.remove(&partition);
                Progress::add(&progress.partitions_finished, 1);
            }
        }
        drop(stream);
        let unfinished: Vec<(String, Offset, Offset)> =
            open.drain().map(|(p, s)| (p, s.position, s.end)).collect();

        let mut decoded = BTreeMap::new();
        for (partition, handle) in decoders {
            let result = handle.await.map_err(|e| RunError::Internal {
                topic: self.name(),
                message: e.to_string(),
            })?;
            let part = result.map_err(|source| RunError::Decode {
                topic: self.name(),
                partition: partition.clone(),
                source,
            })?;
            Progress::add(&progress.events_rejected, part.rejected.len() as u64);
            decoded.insert(partition, part);
        }
        if let Some((partition, reached, end)) = unfinished.into_iter().next() {
            return Err(RunError::SourceEnded {
                topic: self.name(),
                partition,
                reached,
                end,
            });
        }
        Ok(decoded)
    }

    /// Maps and writes the partitions, `parallelism` at a time, each as its
    /// own task so that they run on all cores. `main_files`: the MAIN files
    /// written while the partitions were read.
    async fn map_and_write(
        &self,
        mapper: &Arc<Mapper>,
        decoded: BTreeMap<String, DecodedPartition>,
        mut main_files: HashMap<String, Vec<WrittenFile>>,
    ) -> Result<Vec<PartitionOutput>, RunError> {
        let parallelism = self.request.parallelism.max(1);
        let mut parts = decoded.into_values();
        // Dropped on an error or a stop: the partitions still running are aborted.
        let mut tasks = tokio::task::JoinSet::new();
        let mut outputs = Vec::new();
        loop {
            while tasks.len() < parallelism
                && let Some(part) = parts.next()
            {
                let mapper = mapper.clone();
                let main = main_files.remove(&*part.partition);
                tasks.spawn(async move { mapper.map_partition(part, main).await });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let output = done.map_err(|e| RunError::Internal {
                topic: self.name(),
                message: e.to_string(),
            })??;
            outputs.push(output);
        }
        outputs.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
        Ok(outputs)
    }

    fn manifest(
        &self,
        plan: &Plan,
        outputs: Vec<PartitionOutput>,
        state: Option<StateFile>,
    ) -> Manifest {
        let layout: &TopicLayout = self.ledger.layout();
        let mut counts = RunCounts::default();
        let mut files = Vec::new();
        let mut events_per_partition: HashMap<String, u64> = HashMap::new();
        for output in outputs {
            counts.add(&output.counts);
            events_per_partition.insert(output.partition.clone(), output.counts.events_read);
            for (kind, file) in output.files {
                files.push(ManifestFile {
                    path: layout.relative(&file.path),
                    kind,
                    partition: output.partition.clone(),
                    output_partition: file.output_partition,
                    rows: file.rows,
                    bytes: file.bytes,
                    sha256: file.sha256,
                });
            }
        }
        Manifest {
            format_version: 1,
            topic: self.name(),
            event_type: self.topic.event_type.clone(),
            sequence: plan.sequence,
            run_id: format!("{}-{}", self.topic.name, plan.sequence),
            attempt: self.attempt.clone(),
            started_at: self.started_at,
            committed_at: Utc::now(),
            fingerprint: self.topic.fingerprint.clone(),
            output_format: self.topic.output.format,
            partitions: plan
                .partitions
                .iter()
                .map(|p| PartitionCursors {
                    events: Some(events_per_partition.get(&p.partition).copied().unwrap_or(0)),
                    ..p.clone()
                })
                .collect(),
            files,
            counts,
            state,
        }
    }
}

/// What mapping and writing a partition needs, owned, so that partitions can
/// be mapped on separate tasks.
struct Mapper {
    engine: Engine,
    topic: Arc<Topic>,
    ledger: Ledger,
    progress: Arc<Progress>,
    state: KeyState,
    /// The run's sequence number, in the files' names.
    sequence: u64,
}

impl Mapper {
    fn name(&self) -> String {
        self.topic.name.clone()
    }

    /// Classifies a decoded partition and writes its files; `main`: its MAIN
    /// files when they were written while it was read.
    async fn map_partition(
        &self,
        part: DecodedPartition,
        mut main: Option<Vec<WrittenFile>>,
    ) -> Result<PartitionOutput, RunError> {
        let sequence = self.sequence;
        let partition = part.partition.to_string();
        let query_error = |source: DataFusionError| RunError::Query {
            topic: self.name(),
            partition: partition.clone(),
            source,
        };
        let events_schema = self.topic.schema.read_events.clone();
        let classes = self.classify(&part, &query_error)?;
        let (main_input, correction_events) = match &classes {
            Some(classes) => (
                count_of(classes, Class::Main),
                count_of(classes, Class::Correction),
            ),
            None => (part.rows, 0),
        };
        let versions = self.main_versions(part.keys, classes.as_ref())?;
        let mut counts = RunCounts {
            events_read: part.rows + part.rejected.len() as u64,
            events_rejected: part.rejected.len() as u64,
            main_input,
            correction_events,
            superseded: part.rows - main_input - correction_events,
            ..Default::default()
        };

        let events = Arc::new(part.events);
        let mut files = Vec::new();
        for kind in [FileKind::Main, FileKind::Correction] {
            let wanted = match kind {
                FileKind::Main => Class::Main,
                _ => Class::Correction,
            };
            let written = match (kind, main.take()) {
                (FileKind::Main, Some(written)) => written,
                _ => {
                    let input = EventsOfClass {
                        events: events.clone(),
                        classes: classes.clone(),
                        wanted,
                    };
                    let table =
                        StreamingTable::try_new(events_schema.clone(), vec![Arc::new(input)])
                            .map_err(&query_error)?;
                    self.write_mapped(kind, sequence, &partition, Arc::new(table))
                        .await?
                }
            };
            let rows: u64 = written.iter().map(|f| f.rows).sum();
            match kind {
                FileKind::Main => counts.main_rows = rows,
                _ => counts.correction_rows = rows,
            }
            files.extend(written.into_iter().map(|f| (kind, f)));
        }
        if !part.rejected.is_empty() {
            files.push((
                FileKind::Rejected,
                self.write_rejected(sequence, &partition, &part.rejected)
                    .await?,
            ));
        }
        let progress = &self.progress;
        Progress::add(&progress.main_rows, counts.main_rows);
        Progress::add(&progress.correction_rows, counts.correction_rows);
        Ok(PartitionOutput {
            partition,
            files,
            counts,
            versions,
        })
    }

    /// Whether the mapping reads the events table exactly once (one scan in
    /// its physical plan), so that it can read them as a stream.
    async fn reads_events_once(&self) -> Result<bool, RunError> {
        let mapping_error = |source: MappingError| RunError::Mapping {
            topic: self.name(),
            source,
        };
        let engine_error = |source: DataFusionError| {
            mapping_error(MappingError::Engine {
                context: "planning the mapping over streamed events".into(),
                source,
            })
        };
        let (_, receiver) = mpsc::channel(1);
        let table = self.passed_events(receiver).map_err(engine_error)?;
        let ctx = self.engine.session();
        let frame = self
            .topic
            .mapping
            .apply(&ctx, Arc::new(table))
            .await
            .map_err(mapping_error)?;
        let plan = frame.create_physical_plan().await.map_err(engine_error)?;
        Ok(count_scans(plan.as_ref()) == 1)
    }

    /// The `events` table of a partition whose decoder passes its batches on.
    fn passed_events(
        &self,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<StreamingTable, DataFusionError> {
        let schema = self.topic.schema.read_events.clone();
        StreamingTable::try_new(
            schema.clone(),
            vec![Arc::new(PassedEvents::new(schema, events))],
        )
    }

    /// Writes the MAIN files of a partition from its events as its decoder
    /// passes them on.
    async fn write_passed(
        &self,
        partition: &str,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<Vec<WrittenFile>, RunError> {
        let table = self
            .passed_events(events)
            .map_err(|source| RunError::Query {
                topic: self.name(),
                partition: partition.to_string(),
                source,
            })?;
        self.write_mapped(FileKind::Main, self.sequence, partition, Arc::new(table))
            .await
    }

    /// The class of every event of the partition; `None` when the topic does
    /// not compact (every event is MAIN input).
    fn classify(
        &self,
        part: &DecodedPartition,
        query_error: &impl Fn(DataFusionError) -> RunError,
    ) -> Result<Option<Arc<[Class]>>, RunError> {
        if !self.topic.compaction.compact || part.rows == 0 {
            return Ok(None);
        }
        let keys: Vec<Vec<ArrayRef>> = part.keys.iter().map(|b| b.columns().to_vec()).collect();
        let classes = classes(&self.topic.compaction, &keys, &self.state)
            .map_err(|e| query_error(e.into()))?;
        Ok(Some(classes.into()))
    }

    /// The keys and ordering keys of the MAIN input, for the key state.
    fn main_versions(
        &self,
        keys: Vec<RecordBatch>,
        classes: Option<&Arc<[Class]>>,
    ) -> Result<Vec<RecordBatch>, RunError> {
        let Some(classes) = classes else {
            return Ok(Vec::new());
        };
        let schema = self.state.schema.clone();
        of_class(keys.into_iter().map(Ok), classes.clone(), Class::Main)
            .map(|batch| {
                batch.and_then(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            })
            .collect::<Result<Vec<_>, ArrowError>>()
            .map_err(|e| RunError::KeyState {
                topic: self.name(),
                source: KeyStateError::Query(e.into()),
            })
    }

    /// Applies the mapping to `events` and streams the rows into files.
    async fn write_mapped(
        &self,
        kind: FileKind,
        sequence: u64,
        partition: &str,
        events: Arc<StreamingTable>,
    ) -> Result<Vec<WrittenFile>, RunError> {
        let query_error = |source: DataFusionError| RunError::Query {
            topic: self.name(),
            partition: partition.to_string(),
            source,
        };
        let sink_error = |source: SinkError| RunError::Sink {
            topic: self.name(),
            source,
        };
        let ctx = self.engine.session();
        let frame = self
            .topic
            .mapping
            .apply(&ctx, events)
            .await
            .map_err(|source| RunError::Mapping {
                topic: self.name(),
                source,
            })?;
        let mut stream = crate::mapping::engine::execute(frame)
            .await
            .map_err(query_error)?;
        let layout = self.ledger.layout().clone();
        let extension = data_extension(&self.topic.output);
        let partition_name = partition.to_string();
        let path_for = Box::new(move |output_partition: &[(String, String)]| {
            layout.data_file(kind, sequence, &partition_name, output_partition, extension)
        });
        let mut writer = PartitionedWriter::new(
            self.ledger.location().store.clone(),
            self.topic.output_schema.clone(),
            &self.topic.output,
            path_for,
        )
        .map_err(sink_error)?;
        loop {
            let next = match stream.try_next().await {
                Ok(next) => next,
                Err(e) => {
                    writer.abort().await;
                    return Err(query_error(e));
                }
            };
            let Some(batch) = next else { break };
            let batch = match batch.with_schema(self.topic.output_schema.clone()) {
                Ok(b) => b,
                Err(e) => {
                    writer.abort().await;
                    return Err(query_error(e.into()));
                }
            };
            if let Err(e) = writer.write(&batch).await {
                writer.abort().await;
                return Err(sink_error(e));
            }
        }
        let files = writer.finish().await.map_err(sink_error)?;
        failpoint("first-file-written");
        let progress = &self.progress;
        Progress::add(&progress.files_written, files.len() as u64);
        Progress::add(&progress.bytes_written, files.iter().map(|f| f.bytes).sum());
        Ok(files)
    }

    /// Rejected events as NDJSON: partition, offset, origin, reason and the
    /// event exactly as it arrived (as a JSON string).
    async fn write_rejected(
        &self,
        sequence: u64,
        partition: &str,
        rejected: &[Rejected],
    ) -> Result<WrittenFile, RunError> {
        let path: Path =
            self.ledger
                .layout()
                .data_file(FileKind::Rejected, sequence, partition, &[], "ndjson");
        let mut writer = ObjectWriter::new(self.ledger.location().store.clone(), path.clone());
        let mut body = Vec::new();
        for r in rejected {
            let line = serde_json::json!({
                "partition": &*r.partition,
                "offset": r.offset,
                "origin": r.origin.as_deref(),
                "reason": r.reason,
                "event": String::from_utf8_lossy(&r.raw),
            });
            serde_json::to_writer(&mut body, &line).expect("json");
            body.push(b'\n');
        }
        let sink_error = |source: SinkError| RunError::Sink {
            topic: self.name(),
            source,
        };
        writer.write(&body).await.map_err(sink_error)?;
        let (bytes, sha256) = writer.finish().await.map_err(sink_error)?;
        Progress::add(&self.progress.files_written, 1);
        Progress::add(&self.progress.bytes_written, bytes);
        Ok(WrittenFile {
            path,
            rows: rejected.len() as u64,
            bytes,
            sha256,
            output_partition: Vec::new(),
        })
    }
}

/// The MAIN writers of a run whose partitions are mapped while they are read,
/// one task per partition. Dropping it aborts the writers still running.
struct MainWriters {
    mapper: Arc<Mapper>,
    tasks: tokio::task::JoinSet<(String, Result<Vec<WrittenFile>, RunError>)>,
    written: HashMap<String, Vec<WrittenFile>>,
}

impl MainWriters {
    fn new(mapper: Arc<Mapper>) -> MainWriters {
        MainWriters {
            mapper,
            tasks: tokio::task::JoinSet::new(),
            written: HashMap::new(),
        }
    }

    /// Starts the writer of `partition`; its rows go to the sender returned.
    fn start(&mut self, partition: &str) -> mpsc::Sender<RecordBatch> {
        // Two batches in flight: the decoder stays ahead of the writer
        // without holding the partition.
        let (sender, receiver) = mpsc::channel(2);
        let mapper = self.mapper.clone();
        let partition = partition.to_string();
        self.tasks.spawn(async move {
            let result = mapper.write_passed(&partition, receiver).await;
            (partition, result)
        });
        sender
    }

    /// The first writer error; pending for as long as none fails.
    async fn failure(&mut self) -> RunError {
        loop {
            match self.tasks.join_next().await {
                Some(joined) => {
                    if let Err(e) = self.take(joined) {
                        return e;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// The MAIN files per partition, once every writer has finished (they
    /// finish when their decoders do).
    async fn finish(mut self) -> Result<HashMap<String, Vec<WrittenFile>>, RunError> {
        while let Some(joined) = self.tasks.join_next().await {
            self.take(joined)?;
        }
        Ok(self.written)
    }

    fn take(
        &mut self,
        joined: Result<(String, Result<Vec<WrittenFile>, RunError>), tokio::task::JoinError>,
    ) -> Result<(), RunError> {
        let (partition, result) = joined.map_err(|e| RunError::Internal {
            topic: self.mapper.name(),
            message: e.to_string(),
        })?;
        self.written.insert(partition, result?);
        Ok(())
    }
}

/// How many times a physical plan scans a streaming table.
fn count_scans(plan: &dyn ExecutionPlan) -> usize {
    let here = usize::from(plan.is::<StreamingTableExec>());
    here + plan
        .children()
        .into_iter()
        .map(|child| count_scans(child.as_ref()))
        .sum::<usize>()
}

fn count_of(classes: &[Class], wanted: Class) -> u64 {
    classes.iter().filter(|c| **c == wanted).count() as u64
}

/// One class of a partition's events, read from its spool as DataFusion
/// asks for them.
#[derive(Debug)]
struct EventsOfClass {
    events: Arc<Spooled>,
    /// `None`: no compaction, every event is MAIN input.
    classes: Option<Arc<[Class]>>,
    wanted: Class,
}

impl PartitionStream for EventsOfClass {
    fn schema(&self) -> &SchemaRef {
        self.events.schema()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self
            .events
            .batches()
            .map(|b| b.map_err(|e| DataFusionError::External(Box::new(e))));
        let batches: Box<dyn Iterator<Item = Result<RecordBatch, DataFusionError>> + Send> =
            match (&self.classes, self.wanted) {
                (Some(classes), wanted) => Box::new(of_class(batches, classes.clone(), wanted)),
                (None, Class::Main) => Box::new(batches),
                (None, _) => Box::new(std::iter::empty()),
            };
        Box::pin(RecordBatchStreamAdapter::new(
            self.events.schema().clone(),
            futures::stream::iter(batches),
        ))
    }
}

/// A partition's events as its decoder passes them on; they can be read once.
#[derive(Debug)]
struct PassedEvents {
    schema: SchemaRef,
    events: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
}

impl PassedEvents {
    fn new(schema: SchemaRef, events: mpsc::Receiver<RecordBatch>) -> PassedEvents {
        PassedEvents {
            schema,
            events: Mutex::new(Some(events)),
        }
    }
}

impl PartitionStream for PassedEvents {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let events = self.events.lock().ok().and_then(|mut events| events.take());
        let stream = match events {
            Some(events) => futures::stream::unfold(events, |mut events| async move {
                events.recv().await.map(|batch| (Ok(batch), events))
            })
            .boxed(),
            None => futures::stream::once(async {
                Err(DataFusionError::Internal(
                    "the events of a partition passed on as they are decoded can be read once"
                        .into(),
                ))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Whether a plan starts where the committed runs end.
fn follows(plan: &Plan, committed_ends: &BTreeMap<String, Offset>) -> bool {
    let planned: HashMap<&str, &Offset> = plan
        .partitions
        .iter()
        .map(|p| (p.partition.as_str(), &p.start))
        .collect();
    let starts_match = plan
        .partitions
        .iter()
        .all(|p| match committed_ends.get(&p.partition) {
            Some(end) => end == &p.start,
            None => p.start.is_begin(),
        });
    starts_match
        && committed_ends
            .keys()
            .all(|k| planned.contains_key(k.as_str()))
}
