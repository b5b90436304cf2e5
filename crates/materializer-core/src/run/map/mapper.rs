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
    Class, Classes, Decision, of_class, of_streamed_class, topic_keys_schema,
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
        for &kind in kinds {
            let wanted = match kind {
                FileKind::Main => Class::Main,
                FileKind::Older => Class::Older,
                _ => Class::Correction,
            };
            let written = match (kind, main.take()) {
                (FileKind::Main, Some(written)) => written,
                _ => {
                    let input = Arc::new(EventsOfClass {
                        events: events.clone(),
                        classes: classes.clone(),
                        wanted,
                    });
                    let table = StreamingTable::try_new(events_schema.clone(), vec![input.clone()])
                        .map_err(&query_error)?;
                    match self.write_mapped(kind, &partition, Arc::new(table)).await {
                        Err(RunFailure::Query { source, .. }) => {
                            return Err(self
                                .explain_query_failure(&partition, source, &input, &part.offsets)
                                .await);
                        }
                        written => written?,
                    }
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
        let event = |row: u64, offset: Option<&str>| {
            let at = offset
                .map(|o| format!("offset {o}"))
                .or_else(|| offsets.describe(row))
                .unwrap_or_else(|| format!("row {row}"));
            format!("partition {partition}, {at}")
        };
        let located = self
            .topic
            .mapping()
            .locate_failure(&self.engine, input.numbered(), event)
            .await;
        match located {
            Some(failure) => RunFailure::QueryFailed(failure),
            None => RunFailure::Query {
                partition: partition.to_string(),
                source,
            },
        }
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
