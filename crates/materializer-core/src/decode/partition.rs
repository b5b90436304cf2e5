//! The decoder of one partition: it queues the partition's events in
//! chunks, decodes each chunk by the fast road or, when that gives up, the
//! slow one, rejects the events that fail or lack a key, adds the system
//! columns and hands the rows to its spool. What it produces
//! ([`DecodedPartition`], [`Rejected`]) is defined with it.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt64Array};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use super::events::{Carrier, Pending, closes_the_line, offsets, overlap};
use super::fast::FastDecoder;
use super::keys::{KeyOutput, KeySink, RequiredKeys, column_at_path, key_columns};
use super::slow::{decode_events, new_json_decoder};
use super::spool::{Spool, Spooled};
use super::{DEFAULT_CHUNK_ROWS, DecodeError, reason};
use crate::schema::{OFFSET_COLUMN, PARTITION_COLUMN, SEQ_COLUMN};
use crate::source::{Batch, Offset};

/// An event that did not become a row, with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub partition: Arc<str>,
    pub offset: String,
    pub origin: Option<Arc<str>>,
    pub reason: String,
    pub raw: Bytes,
}

/// Decodes the events of one Nakadi partition.
pub struct PartitionDecoder {
    payload_schema: SchemaRef,
    events_schema: SchemaRef,
    partition: Arc<str>,
    required: RequiredKeys,
    /// The one-pass decoder, when the schema's types allow it.
    fast: Option<FastDecoder>,
    chunk_rows: usize,
    pending: Vec<Pending>,
    /// The fast decoder gave up on an event of the pending chunk.
    slow_chunk: bool,
    /// Cursor of the last batch pushed.
    last_offset: Option<Offset>,
    /// Events and bytes queued since `take_seen`.
    seen: (u64, u64),
    next_seq: u64,
    output: Spool,
    /// Where the key columns of the rows go, for the classification (`None`:
    /// not kept).
    keys: Option<KeyOutput>,
    rows: u64,
    rejected: Vec<Rejected>,
    offsets: RowOffsets,
}

/// What decoding one partition produced.
pub struct DecodedPartition {
    pub partition: Arc<str>,
    /// The rows, with the system columns, in arrival order.
    pub events: Spooled,
    /// The same rows' key columns (the required paths, in their order), kept
    /// in memory for the classification; empty when not kept or when they
    /// went to a [`KeySink`].
    pub keys: Vec<RecordBatch>,
    pub rejected: Vec<Rejected>,
    pub rows: u64,
    /// Where the rows came from: the offsets of each decoded chunk's events.
    pub offsets: RowOffsets,
}

/// The offsets of a partition's rows, kept per decoded chunk (its first
/// and last event), so that a row can be named by its offset whether or not
/// the rows carry `_offset`.
#[derive(Clone, Debug, Default)]
pub struct RowOffsets {
    chunks: Vec<OffsetChunk>,
}

#[derive(Clone, Debug)]
struct OffsetChunk {
    /// The chunk's first row (in arrival order among the partition's rows).
    row: u64,
    rows: u64,
    first: Offset,
    last: Offset,
}

impl RowOffsets {
    /// The offset of row `row` (0-based, in arrival order), or the offsets
    /// it lies between when its chunk had events rejected.
    pub fn describe(&self, row: u64) -> Option<String> {
        let chunk = self
            .chunks
            .iter()
            .find(|c| (c.row..c.row + c.rows).contains(&row))?;
        let consecutive = chunk.first.distance_to(&chunk.last) == Some(chunk.rows - 1);
        if consecutive && let Some(offset) = chunk.first.plus(row - chunk.row) {
            return Some(format!("offset {offset}"));
        }
        if chunk.rows == 1 {
            return Some(format!("offset {}", chunk.first));
        }
        Some(format!("an offset from {} to {}", chunk.first, chunk.last))
    }
}

impl PartitionDecoder {
    /// `events_schema` is `payload_schema` plus system columns (all or some).
    pub fn new(
        payload_schema: SchemaRef,
        events_schema: SchemaRef,
        partition: Arc<str>,
        required: RequiredKeys,
    ) -> Result<Self, DecodeError> {
        // Fail early on a schema arrow-json cannot decode into.
        new_json_decoder(&payload_schema, 1).map_err(DecodeError::Schema)?;
        let fast = FastDecoder::new(&payload_schema);
        Ok(PartitionDecoder {
            fast,
            payload_schema,
            output: Spool::in_memory(events_schema.clone()),
            events_schema,
            partition,
            required,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            pending: Vec::new(),
            slow_chunk: false,
            last_offset: None,
            seen: (0, 0),
            next_seq: 0,
            keys: Some(KeyOutput::Memory(Vec::new())),
            rows: 0,
            rejected: Vec::new(),
            offsets: RowOffsets::default(),
        })
    }

    /// Collects the rows in `spool` (by default they stay in memory).
    pub fn with_spool(mut self, spool: Spool) -> Self {
        self.output = spool;
        self
    }

    /// Keeps no key columns (a topic that does not compact needs none). Events
    /// whose keys are null are still rejected.
    pub fn without_key_columns(mut self) -> Self {
        self.keys = None;
        self
    }

    /// Sends the key columns to `sink` instead of keeping them in memory.
    pub fn with_key_sink(mut self, sink: Box<dyn KeySink>) -> Self {
        self.keys = Some(KeyOutput::Sink(sink));
        self
    }

    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = rows.max(1);
        self
    }

    /// Queues the events of a batch; decodes whenever a chunk is full.
    /// A batch whose events are not framed yet is framed while it is decoded.
    pub fn push(&mut self, batch: &Batch) -> Result<(), DecodeError> {
        let Some(from) = batch.unframed else {
            return self.push_framed(batch);
        };
        if self.push_unframed(batch, from)? {
            return Ok(());
        }
        let mut framed = batch.clone();
        framed.frame().map_err(|e| DecodeError::Framing {
            at: batch.origin_or_unknown().to_string(),
            message: e.to_string(),
        })?;
        if let Some(previous) = &self.last_offset {
            // A redelivered start (live streams) is trimmed; in a recording
            // it is an error, as the source reports it for framed lines.
            if let Some(origin) = &batch.origin
                && framed.event_count() > 0
                && framed
                    .event_offset(0)
                    .is_some_and(|first| !first.is_after(previous))
            {
                return Err(overlap(origin, &framed, previous));
            }
            let end = framed.offset.clone();
            framed
                .retain_between(previous, &end)
                .map_err(|e| DecodeError::Framing {
                    at: batch.origin_or_unknown().to_string(),
                    message: e.to_string(),
                })?;
        }
        self.push_framed(&framed)
    }

    /// Queues the event at `span` of `batch`, `before_last` events before the
    /// batch's cursor.
    fn queue(&mut self, batch: &Arc<Carrier>, before_last: usize, span: Range<usize>) {
        self.seen.0 += 1;
        self.seen.1 += span.len() as u64;
        self.pending.push(Pending {
            batch: batch.clone(),
            span,
            before_last: before_last as u64,
        });
    }

    /// Events counted since the last call (events, bytes), for progress.
    pub fn take_seen(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.seen)
    }

    fn push_framed(&mut self, batch: &Batch) -> Result<(), DecodeError> {
        let carrier = Carrier::of(batch);
        for (i, span) in batch.events.iter().enumerate() {
            if !self.slow_chunk
                && let Some(fast) = &mut self.fast
                && fast.append(&batch.line[span.clone()]).is_err()
            {
                self.slow_chunk = true;
            }
            self.queue(&carrier, batch.events.len() - 1 - i, span.clone());
            if self.pending.len() >= self.chunk_rows {
                self.decode_pending()?;
            }
        }
        self.last_offset = Some(batch.offset.clone());
        Ok(())
    }

    /// Decodes the events array of an unframed batch straight into the fast
    /// decoder's columns, framing it on the way. `false` when the batch must
    /// be framed first (the fast decoder gave up, or is not there).
    fn push_unframed(&mut self, batch: &Batch, from: usize) -> Result<bool, DecodeError> {
        if self.slow_chunk {
            return Ok(false);
        }
        let Some(fast) = &mut self.fast else {
            return Ok(false);
        };
        let mut spans = Vec::new();
        let appended = fast
            .append_array(&batch.line, from, &mut spans)
            .is_ok_and(|end| closes_the_line(&batch.line[end..]));
        let overlaps = appended
            && !spans.is_empty()
            && self.last_offset.as_ref().is_some_and(|previous| {
                batch
                    .offset
                    .minus((spans.len() - 1) as u64)
                    .is_none_or(|first| !first.is_after(previous))
            });
        if !appended || overlaps {
            // What the line appended (perhaps half an event) cannot be taken
            // back: the rest of the chunk goes the slow way.
            self.slow_chunk = true;
            return Ok(false);
        }
        let n = spans.len();
        let carrier = Carrier::of(batch);
        for (i, span) in spans.into_iter().enumerate() {
            self.queue(&carrier, n - 1 - i, span);
        }
        self.last_offset = Some(batch.offset.clone());
        if self.pending.len() >= self.chunk_rows {
            self.decode_pending()?;
        }
        Ok(true)
    }

    pub fn finish(mut self) -> Result<DecodedPartition, DecodeError> {
        self.decode_pending()?;
        Ok(DecodedPartition {
            partition: self.partition,
            events: self.output.finish()?,
            keys: match self.keys {
                Some(KeyOutput::Memory(keys)) => keys,
                _ => Vec::new(),
            },
            rejected: self.rejected,
            rows: self.rows,
            offsets: self.offsets,
        })
    }

    fn decode_pending(&mut self) -> Result<(), DecodeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut parts: Vec<(Range<usize>, RecordBatch)> = Vec::new();
        let mut failed: Vec<(usize, String)> = Vec::new();
        // The fast decoder holds every pending event, unless it gave up on one.
        let slow = std::mem::take(&mut self.slow_chunk);
        let quick = match &mut self.fast {
            Some(fast) if slow => {
                fast.reset();
                None
            }
            Some(fast) => fast.finish().filter(|b| b.num_rows() == pending.len()),
            None => None,
        };
        match quick {
            Some(batch) => parts.push((0..pending.len(), batch)),
            None => self.decode_range(&pending, 0..pending.len(), &mut parts, &mut failed),
        }
        parts.sort_by_key(|(range, _)| range.start);
        failed.sort_by_key(|(i, _)| *i);

        let mut kept: Vec<&Pending> = Vec::with_capacity(pending.len());
        let mut payload: Vec<RecordBatch> = Vec::with_capacity(parts.len());
        for (range, batch) in parts {
            kept.extend(&pending[range]);
            payload.push(batch);
        }
        for (i, reason) in failed {
            self.reject(&pending[i], reason);
        }
        if kept.is_empty() {
            return Ok(());
        }
        // One part (no event rejected) is the common case: no copy then.
        let payload = if payload.len() == 1 {
            payload
                .pop()
                .unwrap_or_else(|| RecordBatch::new_empty(self.payload_schema.clone()))
        } else {
            concat_batches(&self.payload_schema, &payload).map_err(DecodeError::Assemble)?
        };

        let batch = self.with_system_columns(payload, &kept)?;
        let batch = self.reject_null_keys(batch, &kept)?;
        if batch.num_rows() > 0 {
            match &mut self.keys {
                Some(KeyOutput::Memory(keys)) => keys.push(key_columns(&self.required, &batch)?),
                Some(KeyOutput::Sink(sink)) => {
                    sink.push(self.rows, key_columns(&self.required, &batch)?)?
                }
                None => {}
            }
            if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
                self.offsets.chunks.push(OffsetChunk {
                    row: self.rows,
                    rows: batch.num_rows() as u64,
                    first: Offset::new(first.offset()),
                    last: Offset::new(last.offset()),
                });
            }
            self.rows += batch.num_rows() as u64;
            self.output.push(batch)?;
        }
        Ok(())
    }

    /// Decodes `range` of `pending`; on failure splits it until single events fail.
    fn decode_range(
        &self,
        pending: &[Pending],
        range: Range<usize>,
        parts: &mut Vec<(Range<usize>, RecordBatch)>,
        failed: &mut Vec<(usize, String)>,
    ) {
        match decode_events(&self.payload_schema, &pending[range.clone()]) {
            Ok(batch) => parts.push((range, batch)),
            Err(err) if range.len() == 1 => {
                let reason = reason::rejection_reason(
                    pending[range.start].bytes(),
                    self.payload_schema.fields(),
                    &err,
                );
                failed.push((range.start, reason));
            }
            Err(_) => {
                let mid = range.start + range.len() / 2;
                self.decode_range(pending, range.start..mid, parts, failed);
                self.decode_range(pending, mid..range.end, parts, failed);
            }
        }
    }

    /// Adds the system columns the events schema has (a run leaves out
    /// those its mapping does not read).
    fn with_system_columns(
        &mut self,
        payload: RecordBatch,
        kept: &[&Pending],
    ) -> Result<RecordBatch, DecodeError> {
        let n = payload.num_rows();
        let mut columns = payload.columns().to_vec();
        for field in self.events_schema.fields().iter().skip(columns.len()) {
            let column: ArrayRef = match field.name().as_str() {
                PARTITION_COLUMN => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    &*self.partition,
                    n,
                ))),
                OFFSET_COLUMN => Arc::new(offsets(kept)),
                SEQ_COLUMN => Arc::new(UInt64Array::from_iter_values(
                    self.next_seq..self.next_seq + n as u64,
                )),
                other => {
                    return Err(DecodeError::Assemble(ArrowError::SchemaError(format!(
                        "{other} is not a system column"
                    ))));
                }
            };
            columns.push(column);
        }
        self.next_seq += n as u64;
        RecordBatch::try_new(self.events_schema.clone(), columns).map_err(DecodeError::Assemble)
    }

    fn reject_null_keys(
        &mut self,
        batch: RecordBatch,
        kept: &[&Pending],
    ) -> Result<RecordBatch, DecodeError> {
        let mut missing: Vec<Option<String>> = vec![None; batch.num_rows()];
        for path in &self.required.paths {
            let Some(column) = column_at_path(&batch, path) else {
                continue;
            };
            for (row, slot) in missing.iter_mut().enumerate() {
                if slot.is_none() && column.is_null(row) {
                    *slot = Some(path.clone());
                }
            }
        }
        if missing.iter().all(Option::is_none) {
            return Ok(batch);
        }
        for (row, path) in missing.iter().enumerate() {
            if let Some(path) = path.as_deref() {
                self.reject(kept[row], format!("key column {path} is null or missing"));
            }
        }
        let keep = BooleanArray::from_iter(missing.iter().map(|m| Some(m.is_none())));
        filter_record_batch(&batch, &keep).map_err(DecodeError::Assemble)
    }

    /// The required paths' columns of `batch`, named by path.
    fn reject(&mut self, event: &Pending, reason: String) {
        self.rejected.push(Rejected {
            partition: self.partition.clone(),
            offset: event.offset(),
            origin: event.batch.origin.clone(),
            reason,
            raw: event.batch.line.slice(event.span.clone()),
        });
    }
}
