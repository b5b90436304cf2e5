//! Decoding: Nakadi batches of one partition -> Arrow record batches.
//!
//! Events are decoded against the topic's schema in chunks, first by the
//! one-pass decoder in [`fast`]. A chunk it gives up on is decoded with
//! arrow-json, which reads the same rows but slower; a chunk that fails there
//! is split in halves until the failing events are alone; those go to the
//! partition's rejected list with a reason naming the field, its SQL type and
//! the value found ([`reason`]), and the rest of the
//! chunk decodes as usual. Events whose partitioning or ordering key
//! is null cannot be placed in a key's history and are rejected too. Every event
//! handed to the decoder is therefore either a row or a rejection.
//!
//! Each row gets the system columns `_partition`, `_offset` and `_seq` (the
//! arrival number within the partition in this run), or those of them the
//! events schema has: a run leaves out what its mapping does not read.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, StringArray, StringBuilder, StructArray, UInt64Array,
};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow_json::reader::Decoder;
use bytes::Bytes;

use crate::mapping::deletes::CompiledDeletes;
use crate::schema::{OFFSET_COLUMN, PARTITION_COLUMN, SEQ_COLUMN};
use crate::source::framing::overlap_message;
use crate::source::{Batch, Offset, OffsetSteps};

#[cfg(test)]
mod differential;
mod fast;
mod reason;
mod spool;

use fast::FastDecoder;
pub use spool::{Spool, SpoolCap, SpoolError, Spooled};

/// Rows per decoded record batch.
pub const DEFAULT_CHUNK_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot build a JSON decoder for the topic's schema")]
    Schema(#[source] ArrowError),
    #[error("cannot assemble decoded rows")]
    Assemble(#[source] ArrowError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{at}: {message}")]
    Framing { at: String, message: String },
    #[error("evaluating the delete predicate")]
    Deletes(#[source] datafusion::common::DataFusionError),
}

impl DecodeError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            DecodeError::Schema(_) => ErrorClass::Config,
            DecodeError::Assemble(_) | DecodeError::Spool(_) => ErrorClass::Internal,
            DecodeError::Framing { .. } | DecodeError::Deletes(_) => ErrorClass::Data,
        }
    }
}

/// An event that did not become a row, with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub partition: Arc<str>,
    pub offset: String,
    pub origin: Option<Arc<str>>,
    pub reason: String,
    pub raw: Bytes,
}

/// The columns an event must have to be placed: dotted paths into the payload.
#[derive(Debug, Clone, Default)]
pub struct RequiredKeys {
    pub paths: Vec<String>,
    /// When set, the key columns gain [`DELETED_COLUMN`]: whether each event
    /// deletes its key.
    pub deletes: Option<CompiledDeletes>,
}

/// The key column that tells a delete (present when the topic has deletes).
pub const DELETED_COLUMN: &str = "__deleted";

impl RequiredKeys {
    /// The partitioning key parts and the ordering key of `compaction`.
    pub fn of(
        compaction: &crate::mapping::Compaction,
        deletes: Option<CompiledDeletes>,
    ) -> RequiredKeys {
        RequiredKeys {
            paths: compaction
                .partitioning_key
                .iter()
                .chain([&compaction.ordering_key])
                .cloned()
                .collect(),
            deletes,
        }
    }
}

/// The batch events came in, shared by them.
struct Carrier {
    line: Bytes,
    origin: Option<Arc<str>>,
    cursor: Offset,
    /// The cursor taken apart, to write its events' offsets.
    steps: Option<OffsetSteps>,
}

impl Carrier {
    fn of(batch: &Batch) -> Arc<Carrier> {
        Arc::new(Carrier {
            line: batch.line.clone(),
            origin: batch.origin.clone(),
            steps: OffsetSteps::of(&batch.offset),
            cursor: batch.offset.clone(),
        })
    }
}

/// An event waiting to be decoded.
struct Pending {
    batch: Arc<Carrier>,
    span: Range<usize>,
    /// Events after this one in its batch (the last one's offset is the cursor).
    before_last: u64,
}

impl Pending {
    fn bytes(&self) -> &[u8] {
        &self.batch.line[self.span.clone()]
    }

    /// Appends the event's offset to `out` (its batch's cursor when the
    /// offset cannot be counted back from it).
    fn write_offset(&self, out: &mut String) {
        let counted = self
            .batch
            .steps
            .as_ref()
            .is_some_and(|steps| steps.write_minus(self.before_last, out));
        if !counted {
            out.push_str(self.batch.cursor.as_str());
        }
    }

    fn offset(&self) -> String {
        let mut offset = String::new();
        self.write_offset(&mut offset);
        offset
    }
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
}

/// Where a decoder sends the key columns of its rows.
pub trait KeySink: Send {
    /// The key columns of rows `first..first + keys.num_rows()` of the
    /// partition (positions in arrival order).
    fn push(&mut self, first: u64, keys: RecordBatch) -> Result<(), DecodeError>;
}

enum KeyOutput {
    Memory(Vec<RecordBatch>),
    Sink(Box<dyn KeySink>),
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

/// The offsets of `events`, as a column.
fn offsets(events: &[&Pending]) -> StringArray {
    let offset_bytes = events.first().map_or(0, |p| p.batch.cursor.as_str().len());
    let mut offsets = StringBuilder::with_capacity(events.len(), events.len() * offset_bytes);
    let mut offset = String::new();
    for event in events {
        offset.clear();
        event.write_offset(&mut offset);
        offsets.append_value(&offset);
    }
    offsets.finish()
}

/// The key columns of `batch` (the required paths, in their order).
fn key_columns(required: &RequiredKeys, batch: &RecordBatch) -> Result<RecordBatch, DecodeError> {
    let mut fields = Vec::with_capacity(required.paths.len());
    let mut columns = Vec::with_capacity(required.paths.len());
    for path in &required.paths {
        let column = column_at_path(batch, path).ok_or_else(|| {
            DecodeError::Assemble(ArrowError::SchemaError(format!(
                "key column {path} is not in the decoded events"
            )))
        })?;
        fields.push(Field::new(path, column.data_type().clone(), true));
        columns.push(column);
    }
    if let Some(deletes) = &required.deletes {
        let flags = deletes.evaluate(batch).map_err(DecodeError::Deletes)?;
        fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
        columns.push(Arc::new(flags));
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(DecodeError::Assemble)
}

/// Whether `rest` (what follows a line's events array) just closes the batch.
fn closes_the_line(rest: &[u8]) -> bool {
    let mut bytes = rest
        .iter()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    bytes.next() == Some(&b'}') && bytes.next().is_none()
}

/// A recorded batch whose first event is not after the previous batch's last.
fn overlap(origin: &str, batch: &Batch, previous: &Offset) -> DecodeError {
    let first = batch
        .event_offset(0)
        .unwrap_or_else(|| batch.offset.clone());
    DecodeError::Framing {
        at: origin.to_string(),
        message: overlap_message(&batch.offset, &batch.partition, &first, previous),
    }
}

fn new_json_decoder(schema: &SchemaRef, rows: usize) -> Result<Decoder, ArrowError> {
    arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .build_decoder()
}

/// How deep objects and arrays may nest in an event. Deeper events are
/// rejected with that reason before any parser that recurses sees them.
pub const MAX_NESTING: usize = 128;

/// Whether objects and arrays in `bytes` nest deeper than `limit` (strings
/// skipped; the bytes need not be valid JSON).
fn nests_deeper_than(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Decodes a run of events into one record batch, or fails as a whole.
fn decode_events(schema: &SchemaRef, events: &[Pending]) -> Result<RecordBatch, ArrowError> {
    let mut decoder = new_json_decoder(schema, events.len())?;
    for event in events {
        let bytes = event.bytes();
        // arrow-json describes a value it did not expect by printing it,
        // recursively: an event nested thousands deep would end the process.
        if nests_deeper_than(bytes, MAX_NESTING) {
            return Err(ArrowError::JsonError(format!(
                "the event nests objects and arrays deeper than {MAX_NESTING} levels"
            )));
        }
        // arrow-json's tokenizer is lenient (it accepts `{"a":1,,"b":2}`) and
        // makes integers of fractions: check the syntax and the numbers first,
        // so that such events are rejected, not misread.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ArrowError::JsonError(format!("not valid JSON: {e}")))?;
        check_integers(&value, schema.fields(), "").map_err(ArrowError::JsonError)?;
        let read = decoder.decode(bytes)?;
        if read != bytes.len() || decoder.has_partial_record() {
            return Err(ArrowError::JsonError(
                "event is not one complete JSON object".into(),
            ));
        }
    }
    if decoder.len() != events.len() {
        return Err(ArrowError::JsonError(format!(
            "expected {} JSON objects, found {}",
            events.len(),
            decoder.len()
        )));
    }
    let batch = decoder
        .flush()?
        .ok_or_else(|| ArrowError::JsonError("no rows decoded".into()))?;
    Ok(batch)
}

/// Refuses a number that an integer column cannot hold as it is: a
/// fraction, or a value out of the 64-bit range. (Integral values written
/// with an exponent or `.0`, such as `1e3`, are integers.)
fn check_integers(
    value: &serde_json::Value,
    fields: &arrow::datatypes::Fields,
    parent: &str,
) -> Result<(), String> {
    let serde_json::Value::Object(object) = value else {
        return Ok(());
    };
    for field in fields {
        if let Some(child) = object.get(field.name()) {
            let path = if parent.is_empty() {
                field.name().clone()
            } else {
                format!("{parent}.{}", field.name())
            };
            check_value(child, field.data_type(), &path)?;
        }
    }
    Ok(())
}

fn check_value(value: &serde_json::Value, data_type: &DataType, path: &str) -> Result<(), String> {
    match (data_type, value) {
        (DataType::Int64, serde_json::Value::Number(n)) => {
            integer_fits(n).map_err(|problem| format!("field '{path}': {n} {problem}"))
        }
        (DataType::Struct(children), _) => check_integers(value, children, path),
        (DataType::List(item) | DataType::LargeList(item), serde_json::Value::Array(items)) => {
            items
                .iter()
                .try_for_each(|v| check_value(v, item.data_type(), &format!("{path}[]")))
        }
        _ => Ok(()),
    }
}

/// Whether a JSON number is a 64-bit integer; why not, otherwise.
fn integer_fits(n: &serde_json::Number) -> Result<(), &'static str> {
    if n.as_i64().is_some() {
        return Ok(());
    }
    if n.as_u64().is_some() {
        return Err("is out of the 64-bit integer range");
    }
    // Parsed as a double: written with a fraction or an exponent, or an
    // integer too long for 64 bits.
    let v = n.as_f64().unwrap_or(f64::NAN);
    if v.fract() != 0.0 || !v.is_finite() {
        return Err("is not an integer");
    }
    // 2^63: the first double out of range (and what -2^63 - 1 rounds to, in
    // the negative; exactly -2^63 is parsed as an integer above).
    if v.abs() >= 9_223_372_036_854_775_808.0 {
        return Err("is out of the 64-bit integer range");
    }
    Ok(())
}

/// The column at a dotted path, with parents' nulls applied.
pub fn column_at_path(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    let mut parts = path.split('.');
    let mut column = batch.column_by_name(parts.next()?)?.clone();
    for part in parts {
        let DataType::Struct(_) = column.data_type() else {
            return None;
        };
        let parent = column.as_any().downcast_ref::<StructArray>()?;
        let child = parent.column_by_name(part)?.clone();
        column = match parent.nulls() {
            Some(parent_nulls) => {
                let merged = arrow::buffer::NullBuffer::union(Some(parent_nulls), child.nulls());
                arrow::array::make_array(child.to_data().into_builder().nulls(merged).build().ok()?)
            }
            None => child,
        };
    }
    Some(column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::with_system_columns;
    use crate::source::framing::parse_line;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Fields, Schema};

    fn schema() -> (SchemaRef, SchemaRef) {
        let payload = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "meta",
                DataType::Struct(Fields::from(vec![Field::new("v", DataType::Int64, true)])),
                true,
            ),
        ]);
        let events = with_system_columns(&payload);
        (Arc::new(payload), events)
    }

    fn decode(lines: &[&str], chunk: usize) -> DecodedPartition {
        decode_with(lines, chunk, parse_line, None).unwrap()
    }

    /// Decodes `lines` parsed by `parse` (framed whole, or just their head),
    /// as lines of a recording when `origin` is given.
    fn decode_with(
        lines: &[&str],
        chunk: usize,
        parse: fn(Bytes) -> Result<Batch, crate::source::FramingError>,
        origin: Option<&str>,
    ) -> Result<DecodedPartition, DecodeError> {
        let (payload, events) = schema();
        let mut decoder = PartitionDecoder::new(
            payload,
            events,
            Arc::from("0"),
            RequiredKeys {
                paths: vec!["id".into(), "meta.v".into()],
                deletes: None,
            },
        )
        .unwrap()
        .with_chunk_rows(chunk);
        for (n, line) in lines.iter().enumerate() {
            let mut batch = parse(Bytes::copy_from_slice(line.as_bytes())).unwrap();
            batch.origin = origin.map(|o| Arc::from(format!("{o}:{}", n + 1)));
            decoder.push(&batch)?;
        }
        decoder.finish()
    }

    /// Rows (as text) and rejected events (offset, reason) of a decode.
    fn outcome(out: DecodedPartition) -> (Vec<String>, Vec<(String, String)>) {
        let batches = out.events.into_batches().unwrap();
        let rows = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .skip(3)
            .filter(|l| !l.starts_with('+'))
            .map(str::to_string)
            .collect();
        let rejected = out
            .rejected
            .iter()
            .map(|r| (r.offset.clone(), r.reason.clone()))
            .collect();
        (rows, rejected)
    }

    const LINES: [&str; 5] = [
        r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"id":1,"meta":{"v":1}},{"id":2,"name":"b","meta":{"v":2}}]}"#,
        r#"{"cursor":{"partition":"0","offset":"5"},"events":[ {"id":3,"meta":{"v":3}} , {"id":4,"name":"d\u00e9","meta":{"v":4}},{"id":5,"meta":{"v":5}} ] }"#,
        r#"{"cursor":{"partition":"0","offset":"7"},"events":[{"id":"x","meta":{"v":6}},{"id":7,"meta":{}}]}"#,
        r#"{"cursor":{"partition":"0","offset":"9"},"events":[{"id":8,"meta":{"v":8}},{"id":9,"meta":{"v":9}}],"info":{"debug":"]}"}}"#,
        r#"{"cursor":{"partition":"0","offset":"10"},"events":[{"id":10,"meta":{"v":10}}]}"#,
    ];

    /// Lines whose events the decoder frames itself give the same rows,
    /// rejections and offsets as lines framed beforehand, across chunk
    /// boundaries, a chunk with a bad event, and a line with more after its
    /// events.
    #[test]
    fn unframed_lines_decode_as_framed_ones() {
        for chunk in [1, 3, 4, 100] {
            let framed = outcome(decode_with(&LINES, chunk, parse_line, None).unwrap());
            let unframed = outcome(
                decode_with(&LINES, chunk, crate::source::framing::parse_head, None).unwrap(),
            );
            assert_eq!(framed.0.len(), 8, "chunk {chunk}");
            assert_eq!(framed.1.len(), 2, "chunk {chunk}");
            assert_eq!(unframed, framed, "chunk {chunk}");
        }
    }

    #[test]
    fn a_recorded_batch_that_overlaps_the_previous_is_an_error_naming_its_line() {
        let lines = [
            r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"id":1,"meta":{"v":1}},{"id":2,"meta":{"v":2}}]}"#,
            r#"{"cursor":{"partition":"0","offset":"3"},"events":[{"id":2,"meta":{"v":2}},{"id":3,"meta":{"v":3}}]}"#,
        ];
        let err = decode_with(
            &lines,
            100,
            crate::source::framing::parse_head,
            Some("a.jsonl"),
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(
            err.starts_with("a.jsonl:2: ")
                && err.contains("overlaps the previous batch, which ended at 2"),
            "{err}"
        );
        // From a live stream, the events delivered before are dropped.
        let live =
            outcome(decode_with(&lines, 100, crate::source::framing::parse_head, None).unwrap());
        assert_eq!(live.0.len(), 3);
    }

    #[test]
    fn good_events_become_rows_with_system_columns() {
        let out = decode(
            &[
                r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"id":1,"meta":{"v":1}},{"id":2,"name":"b","meta":{"v":2}}]}"#,
            ],
            8,
        );
        assert_eq!(out.rows, 2);
        assert!(out.rejected.is_empty());
        let batches = out.events.into_batches().unwrap();
        let batch = &batches[0];
        let offsets = batch.column_by_name("_offset").unwrap().as_string::<i32>();
        assert_eq!(offsets.value(0), "1");
        assert_eq!(offsets.value(1), "2");
        let seq = batch
            .column_by_name("_seq")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(seq.values().to_vec(), vec![0, 1]);
    }

    #[test]
    fn bad_events_are_rejected_alone_with_a_reason() {
        let out = decode(
            &[
                r#"{"cursor":{"partition":"0","offset":"4"},"events":[{"id":1,"meta":{"v":1}},{"id":"x","meta":{"v":1}},{"id":3,,"meta":{"v":1}},{"id":4,"meta":{"v":1}}]}"#,
                r#"{"cursor":{"partition":"0","offset":"6"},"events":[{"name":"no id","meta":{"v":1}},{"id":6,"meta":{}}]}"#,
            ],
            3,
        );
        let ids: Vec<i64> = out
            .events
            .batches()
            .map(|b| b.unwrap())
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, vec![1, 4]);
        let rejected: Vec<(&str, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.offset.as_str(), std::str::from_utf8(&r.raw).unwrap()))
            .collect();
        assert_eq!(
            rejected,
            vec![
                ("2", r#"{"id":"x","meta":{"v":1}}"#),
                ("3", r#"{"id":3,,"meta":{"v":1}}"#),
                ("5", r#"{"name":"no id","meta":{"v":1}}"#),
                ("6", r#"{"id":6,"meta":{}}"#),
            ]
        );
        assert!(
            out.rejected[3].reason.contains("meta.v"),
            "{}",
            out.rejected[3].reason
        );
        for r in &out.rejected {
            assert!(!r.reason.is_empty());
        }
        // arrival numbers stay dense over the rows that were kept
        let seqs: Vec<u64> = out
            .events
            .batches()
            .map(|b| b.unwrap())
            .flat_map(|b| {
                b.column_by_name("_seq")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::UInt64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(seqs, vec![0, 1]);
    }
}
