//! Where a partition's decoded events wait for mapping.
//!
//! A compacting topic's partition is mapped only after all of it was read
//! (compaction needs every version of a key), so decoded events are held until
//! then. They stay in memory while the engine's memory pool grants room and go
//! to an Arrow IPC file in the engine's temp folder after that; the pool is the
//! one DataFusion's sorts draw from, so `--memory-mb` bounds both. Reading a
//! spool gives the batches back in the order they were pushed.
//!
//! A topic that does not compact needs no waiting: its spool passes every
//! batch on to a mapping that runs while the partition is read
//! ([`Spool::passing_to`]), and holds nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::execution::SpillFile;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::spill_file::SpillWriter;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create a spill file for decoded events")]
    Create(#[source] DataFusionError),
    #[error("writing decoded events to the spill file {path}")]
    Write {
        path: String,
        #[source]
        source: ArrowError,
    },
    #[error("reading decoded events back from the spill file {path}")]
    Read {
        path: String,
        #[source]
        source: ArrowError,
    },
}

/// Decoded events being collected.
pub struct Spool {
    schema: SchemaRef,
    budget: Option<Budget>,
    memory: Vec<RecordBatch>,
    file: Option<(
        Arc<dyn SpillFile>,
        StreamWriter<BufWriter<Box<dyn SpillWriter>>>,
    )>,
    /// Where every batch goes at once, when the spool holds nothing.
    onward: Option<mpsc::Sender<RecordBatch>>,
}

/// The most that the spools sharing it hold in memory together, whatever the
/// pool would grant: the partitions of a run share one, so that a recording
/// whose partitions are found as it is read stays within the run's share
/// however many it has.
#[derive(Clone, Debug)]
pub struct SpoolCap(Arc<CapState>);

#[derive(Debug)]
struct CapState {
    limit: usize,
    held: AtomicUsize,
}

impl SpoolCap {
    pub fn new(limit: usize) -> SpoolCap {
        SpoolCap(Arc::new(CapState {
            limit,
            held: AtomicUsize::new(0),
        }))
    }

    /// Bytes the spools sharing the cap hold now.
    pub fn held(&self) -> usize {
        self.0.held.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.0
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&h| h <= self.0.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.0.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Memory a spool holds: granted by the pool and counted against its cap,
/// both given back when it is dropped.
struct Held {
    reservation: MemoryReservation,
    cap: SpoolCap,
}

impl Held {
    fn try_grow(&self, bytes: usize) -> bool {
        if !self.cap.try_take(bytes) {
            return false;
        }
        if self.reservation.try_grow(bytes).is_err() {
            self.cap.give_back(bytes);
            return false;
        }
        true
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.cap.give_back(self.reservation.size());
    }
}

/// Room in the memory pool, and the temp folder for what does not fit.
struct Budget {
    runtime: Arc<RuntimeEnv>,
    held: Held,
    /// What the spool holds, for the pool and the logs.
    label: String,
    /// Buffer of the spill file's writer.
    write_buffer: usize,
}

impl Spool {
    /// A spool that keeps everything in memory (previews, tests).
    pub fn in_memory(schema: SchemaRef) -> Spool {
        Spool {
            schema,
            budget: None,
            memory: Vec::new(),
            file: None,
            onward: None,
        }
    }

    /// A spool that hands every batch to `onward` as it comes, waiting while
    /// the receiver is behind. Pushing blocks the thread: for a decoder on a
    /// blocking thread, feeding a mapping that reads as the partition is read.
    /// Once the receiver is gone (a mapping that stops early, as with
    /// `LIMIT`, or one that failed and reports it itself) batches are dropped:
    /// decoding goes on, so that every event is still counted or rejected.
    pub fn passing_to(schema: SchemaRef, onward: mpsc::Sender<RecordBatch>) -> Spool {
        Spool {
            onward: Some(onward),
            ..Spool::in_memory(schema)
        }
    }

    /// A spool that keeps nothing: for a read that wants only the keys its
    /// decoder hands on elsewhere.
    pub fn discarding(schema: SchemaRef) -> Spool {
        // A receiver that is gone: every batch is dropped as it comes.
        let (onward, _) = mpsc::channel(1);
        Spool::passing_to(schema, onward)
    }

    /// A spool of a partition's decoded events that holds, together with the
    /// other spools sharing `cap`, up to its limit in memory, as far as
    /// `runtime`'s memory pool grants it, and spills the rest.
    pub fn bounded(
        schema: SchemaRef,
        runtime: Arc<RuntimeEnv>,
        partition: &str,
        cap: SpoolCap,
    ) -> Spool {
        Spool::labelled_sharing(
            schema,
            runtime,
            &format!("decoded events of partition {partition}"),
            cap,
            1 << 20,
        )
    }

    /// A bounded spool of anything: `label` says what it holds (in the pool
    /// and the logs); `write_buffer` sizes its spill file's buffer, small
    /// where many spools spill at once.
    pub fn labelled(
        schema: SchemaRef,
        runtime: Arc<RuntimeEnv>,
        label: &str,
        cap: usize,
        write_buffer: usize,
    ) -> Spool {
        Spool::labelled_sharing(schema, runtime, label, SpoolCap::new(cap), write_buffer)
    }

    /// A bounded spool of anything that holds, together with the other
    /// spools sharing `cap`, up to its limit in memory.
    pub fn labelled_sharing(
        schema: SchemaRef,
        runtime: Arc<RuntimeEnv>,
        label: &str,
        cap: SpoolCap,
        write_buffer: usize,
    ) -> Spool {
        let reservation = MemoryConsumer::new(label.to_string())
            .with_can_spill(true)
            .register(&runtime.memory_pool);
        Spool {
            schema,
            budget: Some(Budget {
                runtime,
                held: Held { reservation, cap },
                label: label.to_string(),
                write_buffer,
            }),
            memory: Vec::new(),
            file: None,
            onward: None,
        }
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<(), SpoolError> {
        if let Some(onward) = &self.onward {
            // An error means the receiver is gone: nothing wants the batch.
            let _ = onward.blocking_send(batch);
            return Ok(());
        }
        if self.file.is_none() {
            let granted = match &self.budget {
                None => true,
                Some(budget) => budget.held.try_grow(batch.get_array_memory_size()),
            };
            if granted {
                self.memory.push(batch);
                return Ok(());
            }
        }
        self.spill(&batch)
    }

    /// Writes `batch` to the spill file, opening it first if need be. Once a
    /// spool spills, every later batch goes to the file, which keeps the order.
    fn spill(&mut self, batch: &RecordBatch) -> Result<(), SpoolError> {
        if self.file.is_none() {
            let Some(budget) = &self.budget else {
                self.memory.push(batch.clone()); // unbounded: nothing to spill to
                return Ok(());
            };
            let file = budget
                .runtime
                .disk_manager
                .create_tmp_file(&budget.label)
                .map_err(SpoolError::Create)?;
            let handle = file.open_writer().map_err(SpoolError::Create)?;
            let writer = StreamWriter::try_new(
                BufWriter::with_capacity(budget.write_buffer, handle),
                &self.schema,
            )
            .map_err(|source| write_error(&file, source))?;
            tracing::info!(
                spool = %budget.label,
                held_bytes = budget.held.reservation.size(),
                spill_file = %describe(&file),
                "the memory budget is reached: spilling the rest to disk"
            );
            self.file = Some((file, writer));
        }
        if let Some((file, writer)) = &mut self.file {
            writer
                .write(batch)
                .map_err(|source| write_error(file, source))?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Spooled, SpoolError> {
        let file = match self.file {
            Some((file, mut writer)) => {
                writer
                    .finish()
                    .map_err(|source| write_error(&file, source))?;
                let mut handle = writer
                    .into_inner()
                    .map_err(|source| write_error(&file, source))?
                    .into_inner()
                    .map_err(|e| write_error(&file, e.into_error().into()))?;
                handle
                    .finish()
                    .map_err(|e| write_error(&file, ArrowError::ExternalError(Box::new(e))))?;
                Some(file)
            }
            None => None,
        };
        Ok(Spooled {
            schema: self.schema,
            memory: self.memory,
            file,
            _held: self.budget.map(|b| b.held),
        })
    }
}

fn write_error(file: &Arc<dyn SpillFile>, source: ArrowError) -> SpoolError {
    SpoolError::Write {
        path: describe(file),
        source,
    }
}

fn describe(file: &Arc<dyn SpillFile>) -> String {
    file.path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(in the spill store)".into())
}

/// A partition's decoded events, ready to be read (as often as needed).
/// Dropping it gives back its memory and deletes its spill file.
pub struct Spooled {
    schema: SchemaRef,
    memory: Vec<RecordBatch>,
    file: Option<Arc<dyn SpillFile>>,
    _held: Option<Held>,
}

impl std::fmt::Debug for Spooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spooled")
            .field("batches_in_memory", &self.memory.len())
            .field("spill_file", &self.file.as_ref().map(describe))
            .finish()
    }
}

impl Spooled {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether some of the events went to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// The batches, in the order they were pushed.
    pub fn batches(
        &self,
    ) -> Box<dyn Iterator<Item = Result<RecordBatch, SpoolError>> + Send + 'static> {
        let memory = self.memory.clone().into_iter().map(Ok);
        let Some(file) = &self.file else {
            return Box::new(memory);
        };
        let path = describe(file);
        let read_error = move |source: ArrowError| SpoolError::Read {
            path: path.clone(),
            source,
        };
        let reader = file
            .path()
            .ok_or_else(|| {
                ArrowError::IoError(
                    "spill file has no path".into(),
                    std::io::ErrorKind::Unsupported.into(),
                )
            })
            .and_then(|p| File::open(p).map_err(ArrowError::from))
            .map_err(read_error.clone())
            .and_then(|handle| {
                StreamReader::try_new(BufReader::with_capacity(1 << 20, handle), None)
                    .map_err(read_error.clone())
            });
        match reader {
            Ok(reader) => Box::new(memory.chain(reader.map(move |b| b.map_err(&read_error)))),
            Err(e) => Box::new(memory.chain(std::iter::once(Err(e)))),
        }
    }

    /// All batches in memory (for previews, which never spill).
    pub fn into_batches(self) -> Result<Vec<RecordBatch>, SpoolError> {
        self.batches().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]))
    }

    fn batch(schema: &SchemaRef, from: i64) -> RecordBatch {
        let ids: Vec<i64> = (from..from + 1000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("name-{i:06}")).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn what_does_not_fit_goes_to_disk_and_comes_back_in_order() {
        let schema = schema();
        let one = batch(&schema, 0).get_array_memory_size();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(one * 2 + one / 2, 1.0)
            .build_arc()
            .unwrap();
        let mut spool = Spool::bounded(
            schema.clone(),
            runtime.clone(),
            "0",
            SpoolCap::new(usize::MAX),
        );
        let pushed: Vec<RecordBatch> = (0..6).map(|i| batch(&schema, i * 1000)).collect();
        for b in &pushed {
            spool.push(b.clone()).unwrap();
        }
        let spooled = spool.finish().unwrap();
        assert!(spooled.spilled());
        assert_eq!(runtime.memory_pool.reserved(), one * 2);
        let read: Vec<RecordBatch> = spooled.batches().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, pushed);
        // a second read gives the same
        assert_eq!(spooled.batches().count(), 6);
        drop(spooled);
        assert_eq!(runtime.memory_pool.reserved(), 0);
    }

    #[test]
    fn a_spool_holds_no_more_than_its_cap() {
        let schema = schema();
        let one = batch(&schema, 0).get_array_memory_size();
        let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
        let mut spool =
            Spool::bounded(schema.clone(), runtime.clone(), "0", SpoolCap::new(one * 3));
        for i in 0..5 {
            spool.push(batch(&schema, i * 1000)).unwrap();
        }
        assert_eq!(runtime.memory_pool.reserved(), one * 3);
        let spooled = spool.finish().unwrap();
        assert!(spooled.spilled());
        assert_eq!(spooled.batches().count(), 5);
    }

    #[test]
    fn spools_sharing_a_cap_hold_no_more_than_it_together_and_give_it_back() {
        let schema = schema();
        let one = batch(&schema, 0).get_array_memory_size();
        let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
        let cap = SpoolCap::new(one * 3);
        let mut first = Spool::bounded(schema.clone(), runtime.clone(), "0", cap.clone());
        let mut second = Spool::bounded(schema.clone(), runtime.clone(), "1", cap.clone());
        first.push(batch(&schema, 0)).unwrap();
        first.push(batch(&schema, 1000)).unwrap();
        // One batch's room is left for the second partition, then it spills.
        for i in 0..3 {
            second.push(batch(&schema, i * 1000)).unwrap();
        }
        assert_eq!(cap.held(), one * 3);
        let first = first.finish().unwrap();
        let second = second.finish().unwrap();
        assert!(!first.spilled());
        assert!(second.spilled());
        assert_eq!(second.batches().count(), 3);
        drop(first);
        assert_eq!(cap.held(), one);
        drop(second);
        assert_eq!(cap.held(), 0);
        assert_eq!(runtime.memory_pool.reserved(), 0);
    }

    #[test]
    fn a_passing_spool_hands_batches_on_in_order_and_holds_none() {
        let schema = schema();
        let (sender, mut receiver) = mpsc::channel(1);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(b) = receiver.blocking_recv() {
                got.push(b);
            }
            got
        });
        let mut spool = Spool::passing_to(schema.clone(), sender);
        let pushed: Vec<RecordBatch> = (0..3).map(|i| batch(&schema, i * 1000)).collect();
        for b in &pushed {
            spool.push(b.clone()).unwrap();
        }
        let spooled = spool.finish().unwrap();
        assert_eq!(reader.join().unwrap(), pushed);
        assert_eq!(spooled.batches().count(), 0);
    }

    #[test]
    fn a_passing_spool_whose_reader_is_gone_drops_batches() {
        let schema = schema();
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        let mut spool = Spool::passing_to(schema.clone(), sender);
        spool.push(batch(&schema, 0)).unwrap();
        assert_eq!(spool.finish().unwrap().batches().count(), 0);
    }

    #[test]
    fn an_unbounded_spool_keeps_everything() {
        let schema = schema();
        let mut spool = Spool::in_memory(schema.clone());
        spool.push(batch(&schema, 0)).unwrap();
        let spooled = spool.finish().unwrap();
        assert!(!spooled.spilled());
        assert_eq!(spooled.into_batches().unwrap(), vec![batch(&schema, 0)]);
    }
}
