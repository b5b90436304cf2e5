//! Map: classify each decoded partition (compaction, corrections) and apply
//! the mapping to each class as it streams out of the spool.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::debug;

use crate::config::Topic;
use crate::decode::{DecodedPartition, Spooled};
use crate::mapping::{Engine, MappingError};
use crate::sink::{FileKind, WrittenFile};
use crate::source::partition_cmp;

use super::buckets::Decision;
use super::classes::{self, Classes};
use super::classify::{Class, of_class};
use super::{Progress, Run, RunFailure};
use crate::commit::{Ledger, RunCounts};

impl Run<'_> {
    /// Maps and writes the partitions, `parallelism` at a time, each as its
    /// own task so that they run on all cores. `main_files`: the MAIN files
    /// written while the partitions were read.
    pub(super) async fn map_and_write(
        &self,
        mapper: &Arc<Mapper>,
        decoded: BTreeMap<String, DecodedPartition>,
        mut main_files: HashMap<String, Vec<WrittenFile>>,
        mut decisions: HashMap<String, Decision>,
    ) -> Result<Vec<PartitionOutput>, RunFailure> {
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
                let decision = decisions.remove(&*part.partition);
                tasks.spawn(async move { mapper.map_partition(part, main, decision).await });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let output = done.map_err(RunFailure::Internal)??;
            outputs.push(output);
        }
        outputs.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
        Ok(outputs)
    }
}

/// What mapping one partition produced.
pub(super) struct PartitionOutput {
    pub(super) partition: String,
    pub(super) files: Vec<(FileKind, WrittenFile)>,
    pub(super) counts: RunCounts,
}

/// What mapping and writing a partition needs, owned, so that partitions can
/// be mapped on separate tasks.
pub(super) struct Mapper {
    pub(super) engine: Engine,
    pub(super) topic: Arc<Topic>,
    pub(super) ledger: Ledger,
    pub(super) progress: Arc<Progress>,
    /// The run's sequence number, in the files' names.
    pub(super) sequence: u64,
}

impl Mapper {
    /// Writes a decoded partition's files; `decision`: what the run decided
    /// about its events (`None` when the topic does not compact: every event
    /// is MAIN input); `main`: its MAIN files when they were written while it
    /// was read.
    pub(super) async fn map_partition(
        &self,
        part: DecodedPartition,
        mut main: Option<Vec<WrittenFile>>,
        decision: Option<Decision>,
    ) -> Result<PartitionOutput, RunFailure> {
        let sequence = self.sequence;
        let partition = part.partition.to_string();
        let query_error = |source: DataFusionError| RunFailure::Query {
            partition: partition.clone(),
            source,
        };
        let events_schema = self.topic.schema().read_events.clone();
        let started = Instant::now();
        let mut counts = RunCounts {
            events_read: part.rows + part.rejected.len() as u64,
            events_rejected: part.rejected.len() as u64,
            main_input: part.rows,
            ..Default::default()
        };
        let mut files = Vec::new();
        let mut keys_file = None;
        let mut classes = None;
        if let Some(decision) = decision.filter(|_| part.rows > 0) {
            counts.main_input = decision.main_input;
            counts.correction_events = decision.correction_events;
            counts.deletes = decision.deletes;
            if let Some(keys) = &decision.keys {
                keys_file = Some(self.write_keys(&partition, keys).await?);
            }
            classes = Some(decision.classes);
        }
        counts.superseded = part.rows - counts.main_input - counts.correction_events;
        let keys_written = started.elapsed().as_secs_f64();

        let events = Arc::new(part.events);
        let kinds: &[FileKind] = if self.topic.keeps_history() {
            &[FileKind::Main, FileKind::Correction, FileKind::Older]
        } else {
            &[FileKind::Main, FileKind::Correction]
        };
        for &kind in kinds {
            let wanted = match kind {
                FileKind::Main => Class::Main,
                FileKind::Older => Class::Older,
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
                FileKind::Older => counts.older_rows = rows,
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
        if let Some(keys) = keys_file {
            files.push((FileKind::Keys, keys));
        }
        debug!(
            topic = %self.topic.name(),
            partition,
            keys_file_s = keys_written,
            files_s = started.elapsed().as_secs_f64() - keys_written,
            "partition mapped"
        );
        let progress = &self.progress;
        Progress::add(&progress.main_rows, counts.main_rows);
        Progress::add(&progress.correction_rows, counts.correction_rows);
        Ok(PartitionOutput {
            partition,
            files,
            counts,
        })
    }

    /// Whether the mapping reads the events table exactly once (one scan in
    /// its physical plan), so that it can read them as a stream.
    pub(super) async fn reads_events_once(&self) -> Result<bool, RunFailure> {
        let mapping_error = |source: MappingError| RunFailure::Mapping(source);
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
            .mapping()
            .apply(&ctx, Arc::new(table))
            .await
            .map_err(mapping_error)?;
        let plan = frame.create_physical_plan().await.map_err(engine_error)?;
        Ok(count_scans(plan.as_ref()) == 1)
    }

    /// The `events` table of a partition whose decoder passes its batches on.
    pub(super) fn passed_events(
        &self,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<StreamingTable, DataFusionError> {
        let schema = self.topic.schema().read_events.clone();
        StreamingTable::try_new(
            schema.clone(),
            vec![Arc::new(PassedEvents::new(schema, events))],
        )
    }

    /// Writes the MAIN files of a partition from its events as its decoder
    /// passes them on.
    pub(super) async fn write_passed(
        &self,
        partition: &str,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let table = self
            .passed_events(events)
            .map_err(|source| RunFailure::Query {
                partition: partition.to_string(),
                source,
            })?;
        self.write_mapped(FileKind::Main, self.sequence, partition, Arc::new(table))
            .await
    }
}

/// The MAIN writers of a run whose partitions are mapped while they are read,
/// one task per partition. Dropping it aborts the writers still running.
pub(super) struct MainWriters {
    mapper: Arc<Mapper>,
    tasks: tokio::task::JoinSet<(String, Result<Vec<WrittenFile>, RunFailure>)>,
    written: HashMap<String, Vec<WrittenFile>>,
}

impl MainWriters {
    pub(super) fn new(mapper: Arc<Mapper>) -> MainWriters {
        MainWriters {
            mapper,
            tasks: tokio::task::JoinSet::new(),
            written: HashMap::new(),
        }
    }

    /// Starts the writer of `partition`; its rows go to the sender returned.
    pub(super) fn start(&mut self, partition: &str) -> mpsc::Sender<RecordBatch> {
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
    pub(super) async fn failure(&mut self) -> RunFailure {
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
    pub(super) async fn finish(mut self) -> Result<HashMap<String, Vec<WrittenFile>>, RunFailure> {
        while let Some(joined) = self.tasks.join_next().await {
            self.take(joined)?;
        }
        Ok(self.written)
    }

    pub(super) fn take(
        &mut self,
        joined: Result<(String, Result<Vec<WrittenFile>, RunFailure>), tokio::task::JoinError>,
    ) -> Result<(), RunFailure> {
        let (partition, result) = joined.map_err(RunFailure::Internal)?;
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

/// One class of a partition's events, read from its spool as DataFusion
/// asks for them.
#[derive(Debug)]
struct EventsOfClass {
    events: Arc<Spooled>,
    /// `None`: no compaction, every event is MAIN input.
    classes: Option<Classes>,
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
                (Some(Classes::Memory(classes)), wanted) => {
                    Box::new(of_class(batches, classes.clone(), wanted))
                }
                (Some(Classes::Runs(runs)), wanted) => match runs.merged() {
                    Ok(classes) => Box::new(classes::of_class(
                        batches,
                        classes.map(|c| c.map_err(|e| DataFusionError::External(Box::new(e)))),
                        wanted,
                    )),
                    Err(e) => {
                        Box::new(std::iter::once(Err(DataFusionError::External(Box::new(e)))))
                    }
                },
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
    pub(super) fn new(schema: SchemaRef, events: mpsc::Receiver<RecordBatch>) -> PassedEvents {
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
