//! Where each queued event sits: the batch it came in (shared by its
//! events), its span in that batch's line and its offset; and the checks on
//! a batch's framing (what follows an unframed line's events, a recorded
//! batch that overlaps the one before). Apart from the decoder, which only
//! queues events and hands them on.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{StringArray, StringBuilder};
use bytes::Bytes;

use super::DecodeError;
use crate::source::framing::overlap_message;
use crate::source::{Batch, Offset, OffsetSteps};

/// The batch events came in, shared by them.
pub(super) struct Carrier {
    pub(super) line: Bytes,
    pub(super) origin: Option<Arc<str>>,
    cursor: Offset,
    /// The cursor taken apart, to write its events' offsets.
    steps: Option<OffsetSteps>,
}

impl Carrier {
    pub(super) fn of(batch: &Batch) -> Arc<Carrier> {
        Arc::new(Carrier {
            line: batch.line.clone(),
            origin: batch.origin.clone(),
            steps: OffsetSteps::of(&batch.offset),
            cursor: batch.offset.clone(),
        })
    }
}

/// An event waiting to be decoded.
pub(super) struct Pending {
    pub(super) batch: Arc<Carrier>,
    pub(super) span: Range<usize>,
    /// Events after this one in its batch (the last one's offset is the cursor).
    pub(super) before_last: u64,
}

impl Pending {
    pub(super) fn bytes(&self) -> &[u8] {
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

    pub(super) fn offset(&self) -> String {
        let mut offset = String::new();
        self.write_offset(&mut offset);
        offset
    }
}

/// The offsets of `events`, as a column.
pub(super) fn offsets(events: &[&Pending]) -> StringArray {
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

/// Whether `rest` (what follows a line's events array) just closes the batch.
pub(super) fn closes_the_line(rest: &[u8]) -> bool {
    let mut bytes = rest
        .iter()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    bytes.next() == Some(&b'}') && bytes.next().is_none()
}

/// A recorded batch whose first event is not after the previous batch's last.
pub(super) fn overlap(origin: &str, batch: &Batch, previous: &Offset) -> DecodeError {
    let first = batch
        .event_offset(0)
        .unwrap_or_else(|| batch.offset.clone());
    DecodeError::Framing {
        at: origin.to_string(),
        message: overlap_message(&batch.offset, &batch.partition, &first, previous),
    }
}
