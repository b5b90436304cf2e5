//! One partition mapped: each class of its events through the mapping into
//! its files, with its KEYS and rejected files and its counts.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use tracing::debug;

use crate::commit::RunCounts;
use crate::config::Topic;
use crate::decode::{DecodedPartition, RowOffsets, Spooled};
use crate::mapping::Engine;
use crate::mapping::failure::NumberedBatch;
use crate::run::attempt::Attempt;
use crate::run::decide::{
    Class, Classes, Decision, of_class, of_streamed_class, split_by_class, topic_keys_schema,
};
use crate::run::error::RunFailure;
use crate::run::progress::Progress;
use crate::run::write::FilesWriter;
use crate::sink::{FileKind, WrittenFile};

/// What mapping one partition produced.
pub(crate) struct PartitionOutput {
    pub partition: String,
    pub files: Vec<(FileKind, WrittenFile)>,
    pub counts: RunCounts,
}

/// What mapping and writing a partition needs, owned, so that partitions can
/// be mapped on separate tasks.
pub(crate) struct Mapper {
    pub engine: Engine,
    pub topic: Arc<Topic>,
    pub writer: FilesWriter,
    /// Whether the mapping reads its events as a stream, once known.
    streams: tokio::sync::OnceCell<bool>,
}

impl Mapper {
    pub fn new(attempt: &Attempt<'_>, sequence: u64) -> Mapper {
        Mapper {
            engine: attempt.engine.clone(),
            topic: attempt.topic.clone(),
            writer: FilesWriter {
                topic: attempt.topic.clone(),
                location: attempt.location.clone(),
                layout: attempt.layout.clone(),
                progress: attempt.progress().clone(),
                sequence,
            },
            streams: tokio::sync::OnceCell::new(),
        }
    }

    /// Writes a decoded partition's files; `decision`: what the run decided
    /// about its events (`None` when the topic does not compact: every event
    /// is MAIN input); `main`: its MAIN files when they were written while it
    /// was read.
    pub async fn map_partition(
        &self,
        part: DecodedPartition,
        mut main: Option<Vec<WrittenFile>>,
        decision: Option<Decision>,
    ) -> Result<PartitionOutput, RunFailure> {
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
                let written = self
                    .writer
                    .write_keys(&partition, keys.schema().clone(), keys.batches())
                    .await?;
                keys_file = Some(written);
            }
            classes = Some(decision.classes);
        }
        // A partition whose events were all rejected decided no version; its
        // KEYS file holds the header only, as every partition read has one.
        if keys_file.is_none()
            && self.topic.compaction().compact
            && let Some(schema) = topic_keys_schema(&self.topic)
        {
            let written = self
                .writer
                .write_keys(&partition, schema, std::iter::empty())
                .await?;
            keys_file = Some(written);
        }
        counts.superseded = part.rows - counts.main_input - counts.correction_events;
        let keys_written = started.elapsed().as_secs_f64();

        let events = Arc::new(part.events);
        let kinds: &[FileKind] = if self.topic.keeps_history() {
            &[FileKind::Main, FileKind::Correction, FileKind::Older]
        } else {
            &[FileKind::Main, FileKind::Correction]
        };
        let mut written = Vec::new();
        match classes {
            // The spool is read once, each batch split by class into the
            // mappings of all classes at once, when the mapping reads its
            // events as a stream.
            Some(classes) if main.is_none() && self.streams_events().await? => {
                match self
                    .write_classes_at_once(&partition, &events, classes.clone(), kinds)
                    .await
                {
                    Err(RunFailure::Query { source, .. }) => {
                        return Err(self
                            .explain_failure_of_any(
                                &partition,
                                source,
                                &events,
                                &classes,
                                kinds,
                                &part.offsets,
                            )
                            .await);
                    }
                    files => written = files?,
                }
            }
            classes => {
                for &kind in kinds {
                    let files = match (kind, main.take()) {
                        (FileKind::Main, Some(files)) => files,
                        _ => {
                            let input = Arc::new(EventsOfClass {
                                events: events.clone(),
                                classes: classes.clone(),
                                wanted: class_of(kind),
                            });
                            let table =
                                StreamingTable::try_new(events_schema.clone(), vec![input.clone()])
                                    .map_err(&query_error)?;
                            match self.write_mapped(kind, &partition, Arc::new(table)).await {
                                Err(RunFailure::Query { source, .. }) => {
                                    return Err(self
                                        .explain_query_failure(
                                            &partition,
                                            source,
                                            &input,
                                            &part.offsets,
                                        )
                                        .await);
                                }
                                files => files?,
                            }
                        }
                    };
                    written.push((kind, files));
                }
            }
        }
        for (kind, kind_files) in written {
            let rows: u64 = kind_files.iter().map(|f| f.rows).sum();
            match kind {
                FileKind::Main => counts.main_rows = rows,
                FileKind::Older => counts.older_rows = rows,
                _ => counts.correction_rows = rows,
            }
            files.extend(kind_files.into_iter().map(|f| (kind, f)));
        }
        if !part.rejected.is_empty() {
            files.push((
                FileKind::Rejected,
                self.writer
                    .write_rejected(&partition, &part.rejected)
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
        let progress = &self.writer.progress;
        Progress::add(&progress.main_rows, counts.main_rows);
        Progress::add(&progress.correction_rows, counts.correction_rows);
        Ok(PartitionOutput {
            partition,
            files,
            counts,
        })
    }

    /// Whether the mapping reads its events as a stream (planned once per
    /// run).
    async fn streams_events(&self) -> Result<bool, RunFailure> {
        self.streams
            .get_or_try_init(|| self.reads_events_once())
            .await
            .copied()
    }

    /// Writes the files of every class of `kinds` at once: the spool is read
    /// once, each batch split by class and passed on to the mapping of its
    /// class, all of them running side by side.
    async fn write_classes_at_once(
        &self,
        partition: &str,
        events: &Spooled,
        classes: Classes,
        kinds: &[FileKind],
    ) -> Result<Vec<(FileKind, Vec<WrittenFile>)>, RunFailure> {
        let mut senders = Vec::with_capacity(kinds.len());
        let mut writers = Vec::with_capacity(kinds.len());
        for &kind in kinds {
            // Two batches in flight per class: the split stays ahead of
            // the mappings without holding the partition.
            let (sender, receiver) = tokio::sync::mpsc::channel(2);
            senders.push(sender);
            writers.push(async move {
                let files = self.write_passed_as(kind, partition, receiver).await?;
                Ok::<_, RunFailure>((kind, files))
            });
        }
        let wanted: Vec<Class> = kinds.iter().map(|&kind| class_of(kind)).collect();
        let split = split_spool(partition, events, classes, &wanted, senders);
        let (split, written) = tokio::join!(split, futures::future::try_join_all(writers));
        // A mapping that failed stops the split; its own error tells why.
        let written = written?;
        split?;
        Ok(written)
    }

    /// A query that failed while all classes were mapped at once: explained
    /// by the first class whose own events show the failure.
    async fn explain_failure_of_any(
        &self,
        partition: &str,
        source: DataFusionError,
        events: &Arc<Spooled>,
        classes: &Classes,
        kinds: &[FileKind],
        offsets: &RowOffsets,
    ) -> RunFailure {
        for &kind in kinds {
            let input = EventsOfClass {
                events: events.clone(),
                classes: Some(classes.clone()),
                wanted: class_of(kind),
            };
            if let Some(failure) = self.locate_failure(partition, &input, offsets).await {
                return failure;
            }
        }
        RunFailure::Query {
            partition: partition.to_string(),
            source,
        }
    }

    /// A query that failed over `input`: the view, the expression and the
    /// first event it fails on, when a single batch of the input fails on
    /// its own (else the engine's error as it came).
    async fn explain_query_failure(
        &self,
        partition: &str,
        source: DataFusionError,
        input: &EventsOfClass,
        offsets: &RowOffsets,
    ) -> RunFailure {
        match self.locate_failure(partition, input, offsets).await {
            Some(failure) => failure,
            None => RunFailure::Query {
                partition: partition.to_string(),
                source,
            },
        }
    }

    /// The view, expression and first event of `input` the query fails on,
    /// if a single batch of it fails on its own.
    async fn locate_failure(
        &self,
        partition: &str,
        input: &EventsOfClass,
        offsets: &RowOffsets,
    ) -> Option<RunFailure> {
        let event = |row: u64, offset: Option<&str>| {
            let at = offset
                .map(|o| format!("offset {o}"))
                .or_else(|| offsets.describe(row))
                .unwrap_or_else(|| format!("row {row}"));
            format!("partition {partition}, {at}")
        };
        self.topic
            .mapping()
            .locate_failure(&self.engine, input.numbered(), event)
            .await
            .map(RunFailure::QueryFailed)
    }

    /// Applies the mapping to `events` and streams the rows into files.
    pub(super) async fn write_mapped(
        &self,
        kind: FileKind,
        partition: &str,
        events: Arc<StreamingTable>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let ctx = self.engine.session();
        let frame = self.topic.mapping().apply(&ctx, events).await?;
        let rows = crate::mapping::engine::execute(frame)
            .await
            .map_err(|source| RunFailure::Query {
                partition: partition.to_string(),
                source,
            })?;
        self.writer.write_rows(kind, partition, rows).await
    }
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
        Box::pin(RecordBatchStreamAdapter::new(
            self.events.schema().clone(),
            futures::stream::iter(self.of_class(batches)),
        ))
    }
}

/// The class of the events whose rows go to files of `kind`.
fn class_of(kind: FileKind) -> Class {
    match kind {
        FileKind::Main => Class::Main,
        FileKind::Older => Class::Older,
        _ => Class::Correction,
    }
}

/// Reads `events` once, in order, and sends each batch's rows of each class
/// of `wanted` to the sender at the same place of `senders`; the streams
/// end when it returns (the senders are dropped).
async fn split_spool(
    partition: &str,
    events: &Spooled,
    classes: Classes,
    wanted: &[Class],
    senders: Vec<tokio::sync::mpsc::Sender<RecordBatch>>,
) -> Result<(), RunFailure> {
    let query_error = |source: DataFusionError| RunFailure::Query {
        partition: partition.to_string(),
        source,
    };
    let external = |e: Box<dyn std::error::Error + Send + Sync>| DataFusionError::External(e);
    let mut classes: Box<dyn Iterator<Item = Result<Class, DataFusionError>> + Send> = match classes
    {
        Classes::Memory(classes) => Box::new((0..classes.len()).map(move |i| Ok(classes[i]))),
        Classes::Runs(runs) => {
            let merged = runs
                .merged()
                .map_err(|e| query_error(external(Box::new(e))))?;
            Box::new(merged.map(move |c| c.map_err(|e| external(Box::new(e)))))
        }
    };
    let mut rows = Vec::new();
    for batch in events.batches() {
        let batch = batch.map_err(|e| query_error(external(Box::new(e))))?;
        let parts = split_by_class(&batch, &mut classes, wanted, &mut rows).map_err(query_error)?;
        for (sender, part) in senders.iter().zip(parts) {
            if let Some(part) = part
                && sender.send(part).await.is_err()
            {
                // The mapping of this class stopped: its error ends the run.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The column that numbers a partition's rows while they are filtered.
const ROW_NUMBER: &str = "__row";

impl EventsOfClass {
    /// The rows of `batches` (all the partition's, in order) of the wanted class.
    fn of_class(
        &self,
        batches: impl Iterator<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
    ) -> Box<dyn Iterator<Item = Result<RecordBatch, DataFusionError>> + Send> {
        match (&self.classes, self.wanted) {
            (Some(Classes::Memory(classes)), wanted) => {
                Box::new(of_class(batches, classes.clone(), wanted))
            }
            (Some(Classes::Runs(runs)), wanted) => match runs.merged() {
                Ok(classes) => Box::new(of_streamed_class(
                    batches,
                    classes.map(|c| c.map_err(|e| DataFusionError::External(Box::new(e)))),
                    wanted,
                )),
                Err(e) => Box::new(std::iter::once(Err(DataFusionError::External(Box::new(e))))),
            },
            (None, Class::Main) => Box::new(batches),
            (None, _) => Box::new(std::iter::empty()),
        }
    }

    /// The rows of the wanted class, each batch with the rows' places among
    /// the partition's rows (until a batch cannot be read).
    fn numbered(&self) -> impl Iterator<Item = NumberedBatch> + use<> {
        let mut next = 0u64;
        let batches = self.events.batches().map(move |batch| {
            let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
            let rows = batch.num_rows() as u64;
            let numbers = UInt64Array::from_iter_values(next..next + rows);
            next += rows;
            let mut fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(ROW_NUMBER, DataType::UInt64, false));
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(numbers));
            Ok(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?)
        });
        self.of_class(batches).map_while(|batch| {
            let batch = batch.ok()?;
            let last = batch.num_columns().checked_sub(1)?;
            let numbers = batch
                .column(last)
                .as_any()
                .downcast_ref::<UInt64Array>()?
                .values()
                .to_vec();
            let events = batch.project(&(0..last).collect::<Vec<_>>()).ok()?;
            Some((events, numbers))
        })
    }
}
