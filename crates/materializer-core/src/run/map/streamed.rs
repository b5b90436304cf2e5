//! A topic that does not compact, mapped while it is read: each partition's
//! decoder passes its rows on to a MAIN writer of its own, when the mapping
//! reads the events once (as a stream can be read).

use std::collections::HashMap;
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
    fn passed_events(
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
    async fn write_passed(
        &self,
        partition: &str,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        self.write_passed_as(FileKind::Main, partition, events)
            .await
    }

    /// Writes the files of `kind` of a partition from the events passed on
    /// to `events`, as they come.
    pub(super) async fn write_passed_as(
        &self,
        kind: FileKind,
        partition: &str,
        events: mpsc::Receiver<RecordBatch>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let table = self
            .passed_events(events)
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
