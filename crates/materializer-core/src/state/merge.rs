//! Merging sorted inputs of one bucket into one segment: a k-way merge that
//! holds one batch per input, so a compaction's memory does not depend on the
//! size of what it merges. Of a key found in several inputs the highest
//! ordering key is kept, as the state means "the highest committed".

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, interleave_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::Rows;
use futures::TryStreamExt;
use futures::stream::BoxStream;

use super::KeyStateError;
use super::bucket::{KeyFormat, bucket_of};
use super::segment::SegmentWriter;

/// Rows collected before they go to the writer.
const OUTPUT_ROWS: usize = 8 * 1024;

/// A stream of key state batches in key order, each key once.
pub type SortedInput = BoxStream<'static, Result<RecordBatch, KeyStateError>>;

/// One input: its current batch and the position in it.
struct Cursor {
    input: SortedInput,
    batch: RecordBatch,
    keys: Rows,
    ordering: Rows,
    at: usize,
    done: bool,
}

impl Cursor {
    fn new(input: SortedInput, format: &KeyFormat, schema: &SchemaRef) -> Cursor {
        let batch = RecordBatch::new_empty(schema.clone());
        Cursor {
            input,
            keys: format
                .key_rows(batch.columns())
                .expect("empty rows convert"),
            ordering: format.ordering_rows(&batch).expect("empty rows convert"),
            batch,
            at: 0,
            done: false,
        }
    }

    fn is_live(&self) -> bool {
        self.at < self.batch.num_rows()
    }

    fn key(&self) -> &[u8] {
        self.keys.row(self.at).data()
    }

    /// Moves to the next non-empty batch, or marks the input done.
    async fn load(&mut self, format: &KeyFormat) -> Result<(), KeyStateError> {
        while !self.done && !self.is_live() {
            match self.input.try_next().await? {
                Some(batch) => {
                    let batch = format.usable(&batch)?;
                    self.keys = format.key_rows(batch.columns())?;
                    self.ordering = format.ordering_rows(&batch)?;
                    self.batch = batch;
                    self.at = 0;
                }
                None => self.done = true,
            }
        }
        Ok(())
    }
}

/// Merges `inputs` into `out`; returns the number of keys written.
pub async fn merge(
    format: &KeyFormat,
    schema: &SchemaRef,
    inputs: Vec<SortedInput>,
    out: &mut SegmentWriter,
) -> Result<u64, KeyStateError> {
    // One input (a bucket's first segment, a delta merged with nothing) is
    // already in key order with each key once: it is written as it comes.
    let mut inputs = inputs;
    if inputs.len() == 1
        && let Some(mut input) = inputs.pop()
    {
        let mut written = 0u64;
        while let Some(batch) = input.try_next().await? {
            let batch = format.usable(&batch)?;
            written += batch.num_rows() as u64;
            out.write(format, batch).await?;
        }
        return Ok(written);
    }
    let mut cursors: Vec<Cursor> = inputs
        .into_iter()
        .map(|input| Cursor::new(input, format, schema))
        .collect();
    // (cursor, row) of each key chosen, pointing into the cursors' batches.
    let mut chosen: Vec<(usize, usize)> = Vec::with_capacity(OUTPUT_ROWS);
    let mut key = Vec::new();
    let mut written = 0u64;
    loop {
        if cursors.iter().any(|c| !c.done && !c.is_live()) {
            // The chosen rows point into the batches about to be replaced.
            written += flush(&mut cursors, &mut chosen, format, out).await?;
            for cursor in &mut cursors {
                cursor.load(format).await?;
            }
        }
        let Some(first) = (0..cursors.len())
            .filter(|&i| cursors[i].is_live())
            .min_by(|&a, &b| cursors[a].key().cmp(cursors[b].key()))
        else {
            break;
        };
        key.clear();
        key.extend_from_slice(cursors[first].key());
        // Of the inputs holding the key, the row with the highest ordering
        // key (the later input on a tie); every one of them moves on.
        let mut best: Option<(usize, usize)> = None;
        for i in 0..cursors.len() {
            if !cursors[i].is_live() || cursors[i].key() != key.as_slice() {
                continue;
            }
            let at = cursors[i].at;
            let keeps_best = best
                .is_some_and(|(b, rb)| cursors[b].ordering.row(rb) > cursors[i].ordering.row(at));
            if !keeps_best {
                best = Some((i, at));
            }
            cursors[i].at += 1;
        }
        chosen.extend(best);
        if chosen.len() >= OUTPUT_ROWS {
            written += flush(&mut cursors, &mut chosen, format, out).await?;
        }
    }
    written += flush(&mut cursors, &mut chosen, format, out).await?;
    Ok(written)
}

/// Writes the chosen rows out and forgets them.
/// (The cursors are borrowed mutably only so that the future stays `Send`:
/// a stream is not `Sync`.)
async fn flush(
    cursors: &mut [Cursor],
    chosen: &mut Vec<(usize, usize)>,
    format: &KeyFormat,
    out: &mut SegmentWriter,
) -> Result<u64, KeyStateError> {
    if chosen.is_empty() {
        return Ok(0);
    }
    let batches: Vec<&RecordBatch> = cursors.iter().map(|c| &c.batch).collect();
    let rows = interleave_record_batch(&batches, chosen)?;
    chosen.clear();
    let n = rows.num_rows() as u64;
    out.write(format, rows).await?;
    Ok(n)
}

/// Per bucket, the usable rows of `batches` sorted by key, each key once with
/// its highest ordering key (`None` for a bucket without rows).
pub fn sort_by_bucket(
    format: &KeyFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    buckets: u32,
) -> Result<Vec<Option<RecordBatch>>, KeyStateError> {
    let usable = batches
        .iter()
        .map(|b| format.usable(b))
        .collect::<Result<Vec<_>, _>>()?;
    let all = concat_batches(schema, &usable)?;
    let keys = format.key_rows(all.columns())?;
    let ordering = format.ordering_rows(&all)?;
    let mut by_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets.max(1) as usize];
    for (i, key) in keys.iter().enumerate() {
        by_bucket[bucket_of(key.data(), buckets) as usize].push(i as u32);
    }
    by_bucket
        .into_iter()
        .map(|mut rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            // Key ascending, then the highest ordering key first: the first
            // row of each key is the one kept.
            rows.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                keys.row(a)
                    .cmp(&keys.row(b))
                    .then_with(|| ordering.row(b).cmp(&ordering.row(a)))
            });
            rows.dedup_by(|b, a| keys.row(*a as usize) == keys.row(*b as usize));
            let indices = UInt32Array::from(rows);
            Ok(Some(take_record_batch(&all, &indices)?))
        })
        .collect()
}
