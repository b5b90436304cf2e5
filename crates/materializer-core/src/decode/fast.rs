//! One strict pass from event bytes to Arrow columns, for the common case.
//!
//! arrow-json decodes any JSON into any schema through a token tape, and its
//! tokenizer is lenient (it reads `{"a":1,,"b":2}`), so every event used to be
//! parsed twice: by serde_json to check the syntax, then by arrow-json. This
//! decoder walks each event once, checks the syntax as strictly as serde_json
//! and appends values straight into column buffers laid out by the schema.
//!
//! It only takes the plain road. When a chunk holds anything it does not
//! decode exactly as arrow-json would (a number written as a string, a
//! duplicate or escaped key, a required field missing, malformed JSON, a type
//! it does not know), it gives up on the whole chunk and the caller decodes
//! that chunk with arrow-json, which finds and describes the culprit. Rows are
//! therefore the same on either road; only the time differs.
//!
//! The parts: [`columns`] holds the column buffers the values go into,
//! [`cursor`] reads the JSON grammar from an event's bytes.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

mod columns;
mod cursor;
#[cfg(test)]
mod tests;

use columns::StructColumn;
use cursor::Cursor;

/// The fast road is closed for this chunk; decode it with arrow-json.
#[derive(Debug)]
pub(crate) struct GiveUp;

type Step<T = ()> = Result<T, GiveUp>;

/// Deeper events go the slow way, where they are rejected before any
/// recursive parser sees them.
const MAX_DEPTH: usize = super::MAX_NESTING;

/// Decodes chunks of events (one JSON object each) into record batches of
/// the payload schema. Events are appended one by one, or a whole events
/// array of a stream line at once; `finish` hands out the chunk.
pub struct FastDecoder {
    schema: SchemaRef,
    root: StructColumn,
    rows: usize,
}

impl FastDecoder {
    /// `None` when the schema has a type this decoder does not handle.
    pub fn new(schema: &SchemaRef) -> Option<FastDecoder> {
        Some(FastDecoder {
            schema: schema.clone(),
            root: StructColumn::new(schema.fields())?,
            rows: 0,
        })
    }

    /// Appends one event. After giving up, the chunk is spoilt: `reset`.
    pub fn append(&mut self, event: &[u8]) -> Result<(), GiveUp> {
        // arrow-json refuses bytes that are not UTF-8 anywhere in an
        // event, also in fields nobody reads: so do we.
        simdutf8::basic::from_utf8(event).map_err(|_| GiveUp)?;
        let mut cursor = Cursor { buf: event, pos: 0 };
        cursor.ws();
        self.root.object(&mut cursor, 0)?;
        cursor.ws();
        if cursor.pos != event.len() {
            return Err(GiveUp);
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends the events of the JSON array whose content starts at `from`
    /// in `line` (after its `[`), pushing the span of each event to `spans`.
    /// Returns the position after the array's `]`. After giving up, the
    /// chunk is spoilt: `reset`.
    pub fn append_array(
        &mut self,
        line: &[u8],
        from: usize,
        spans: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<usize, GiveUp> {
        simdutf8::basic::from_utf8(&line[from..]).map_err(|_| GiveUp)?;
        let mut cursor = Cursor {
            buf: line,
            pos: from,
        };
        cursor.items(b']', |c, _| {
            let start = c.pos;
            self.root.object(c, 0)?;
            spans.push(start..c.pos);
            self.rows += 1;
            Ok(())
        })?;
        Ok(cursor.pos)
    }

    /// The chunk as a record batch; `None` when its columns do not assemble
    /// (the caller decodes the chunk the other way). Starts the next chunk.
    pub fn finish(&mut self) -> Option<RecordBatch> {
        let rows = std::mem::take(&mut self.rows);
        let batch = self.assemble(rows);
        if batch.is_none() {
            self.reset();
        }
        batch
    }

    /// Drops whatever the chunk holds.
    pub fn reset(&mut self) {
        if let Some(root) = StructColumn::new(self.schema.fields()) {
            self.root = root;
        }
        self.rows = 0;
    }

    /// Decodes every event of the chunk, or gives up on all of them.
    #[cfg(test)]
    pub fn decode<'a>(
        &mut self,
        events: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Option<RecordBatch> {
        for event in events {
            if self.append(event).is_err() {
                self.reset();
                return None;
            }
        }
        self.finish()
    }

    fn assemble(&mut self, rows: usize) -> Option<RecordBatch> {
        let (columns, nulls) = self.root.finish().ok()?;
        if nulls.is_some() {
            return None;
        }
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .ok()
    }
}
