//! A topic that does not compact, mapped while it is read: each partition's
//! decoder passes its rows on to a MAIN writer of its own, when the mapping
//! reads the events once (as a stream can be read).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

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

use super::mapper::Mapper;
use crate::mapping::MappingError;
use crate::run::error::RunFailure;
use crate::sink::{FileKind, WrittenFile};

impl Mapper {
    /// Whether the mapping reads the events table exactly once (one scan in
    /// its physical plan), so that it can read them as a stream.
    pub async fn reads_events_once(&self) -> Result<bool, RunFailure> {
        let mapping_error = |source: MappingError| RunFailure::Mapping(source);
        let engine_error = |source: DataFusionError| {
            mapping_error(MappingError::Engine {
                context: "planning the mapping over streamed events".into(),
                source,
            })
        };
        let (_, receiver) = mpsc::channel(1);
        let table = self
            .passed_events(receiver, Recent::default())
            .map_err(engine_error)?;
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

    /// The `events` table of a partition whose decoder passes its batches
    /// on; `recent` keeps the last few passed, for naming an event the
    /// mapping fails on.
    fn passed_events(
        &self,
        events: mpsc::Receiver<RecordBatch>,
        recent: Recent,
    ) -> Result<StreamingTable, DataFusionError> {
        let schema = self.topic.schema().read_events.clone();
        StreamingTable::try_new(
            schema.clone(),
            vec![Arc::new(PassedEvents::new(schema, events, recent))],
        )
    }

    /// Writes the MAIN files of a partition from its events as its decoder
    /// passes them on.
    async fn write_passed(
        &self,
        partition: &str,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let recent = Recent::default();
        let table = self
            .passed_events(events, recent.clone())
            .map_err(|source| RunFailure::Query {
                partition: partition.to_string(),
                source,
            })?;
        let source = match self
            .write_mapped(FileKind::Main, partition, Arc::new(table))
            .await
        {
            Err(RunFailure::Query { source, .. }) => source,
            written => return written,
        };
        // The events are gone but the last few: the failing one is likely
        // among them.
        let batches: Vec<(RecordBatch, u64)> = recent
            .lock()
            .map(|recent| recent.iter().cloned().collect())
            .unwrap_or_default();
        let numbered = batches.into_iter().map(|(batch, first)| {
            let rows = first..first + batch.num_rows() as u64;
            (batch, rows.collect())
        });
        let located = self
            .topic
            .mapping()
            .locate_failure(&self.engine, numbered, |row, offset| match offset {
                Some(offset) => format!("partition {partition}, offset {offset}"),
                None => format!("partition {partition}, event {row} of this run (from 0)"),
            })
            .await;
        Err(match located {
            Some(failure) => RunFailure::QueryFailed(failure),
            None => RunFailure::Query {
                partition: partition.to_string(),
                source,
            },
        })
    }

    /// Writes the files of `kind` of a partition from the events passed on
    /// to `events`, as they come (a class of a partition's events split
    /// from its spool: a failure is explained from the spool).
    pub(super) async fn write_passed_as(
        &self,
        kind: FileKind,
        partition: &str,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let table = self
            .passed_events(events, Recent::default())
            .map_err(|source| RunFailure::Query {
                partition: partition.to_string(),
                source,
            })?;
        self.write_mapped(kind, partition, Arc::new(table)).await
    }
}

/// The MAIN writers of a run whose partitions are mapped while they are read,
/// one task per partition. Dropping it aborts the writers still running.
pub(crate) struct MainWriters {
    mapper: Arc<Mapper>,
    tasks: tokio::task::JoinSet<(String, Result<Vec<WrittenFile>, RunFailure>)>,
    written: HashMap<String, Vec<WrittenFile>>,
}

impl MainWriters {
    pub fn new(mapper: Arc<Mapper>) -> MainWriters {
        MainWriters {
            mapper,
            tasks: tokio::task::JoinSet::new(),
            written: HashMap::new(),
        }
    }

    /// Starts the writer of `partition`; its rows go to the sender returned.
    pub fn start(&mut self, partition: &str) -> mpsc::Sender<RecordBatch> {
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
    pub async fn failure(&mut self) -> RunFailure {
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
    pub async fn finish(mut self) -> Result<HashMap<String, Vec<WrittenFile>>, RunFailure> {
        while let Some(joined) = self.tasks.join_next().await {
            self.take(joined)?;
        }
        Ok(self.written)
    }

    pub fn take(
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

/// The last batches a partition's mapping read, each with the number of its
/// first row among the partition's rows in this run.
type Recent = Arc<Mutex<VecDeque<(RecordBatch, u64)>>>;

/// How many of the last batches read are kept: those in flight at most.
const RECENT_BATCHES: usize = 3;

/// A partition's events as its decoder passes them on; they can be read once.
#[derive(Debug)]
struct PassedEvents {
    schema: SchemaRef,
    events: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
    recent: Recent,
}

impl PassedEvents {
    fn new(schema: SchemaRef, events: mpsc::Receiver<RecordBatch>, recent: Recent) -> PassedEvents {
        PassedEvents {
            schema,
            events: Mutex::new(Some(events)),
            recent,
        }
    }
}

impl PartitionStream for PassedEvents {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let events = self.events.lock().ok().and_then(|mut events| events.take());
        let recent = self.recent.clone();
        let stream = match events {
            Some(events) => futures::stream::unfold(
                (events, recent, 0u64),
                |(mut events, recent, read)| async move {
                    let batch = events.recv().await?;
                    let rows = batch.num_rows() as u64;
                    if let Ok(mut kept) = recent.lock() {
                        if kept.len() == RECENT_BATCHES {
                            kept.pop_front();
                        }
                        kept.push_back((batch.clone(), read));
                    }
                    Some((Ok(batch), (events, recent, read + rows)))
                },
            )
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
