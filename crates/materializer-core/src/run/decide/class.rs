//! What the run decided about one event, and the events of one class picked
//! out of a partition's batches.

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// What became of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// An older version, removed by compaction.
    Superseded,
    /// The latest version of its key: MAIN input.
    Main,
    /// Arrived after a newer version of its key: CORRECTION input.
    Correction,
    /// An older version kept for the warehouse's history (when the topic
    /// keeps one): OLDER input.
    Older,
}

/// The rows of `batches` (in the order `classes` was computed for) that are
/// of class `wanted`.
pub fn of_class<E, C>(
    batches: impl Iterator<Item = Result<RecordBatch, E>>,
    classes: C,
    wanted: Class,
) -> impl Iterator<Item = Result<RecordBatch, E>>
where
    E: From<ArrowError>,
    C: AsRef<[Class]>,
{
    let mut next = 0;
    let in_order = std::iter::from_fn(move || {
        let class = classes.as_ref().get(next).copied();
        next += 1;
        class.map(Ok)
    });
    of_streamed_class(batches, in_order, wanted)
}

/// The rows of `batches` (in event order) that are of class `wanted`, the
/// classes read from `classes` as the batches come.
pub fn of_streamed_class<E>(
    batches: impl Iterator<Item = Result<RecordBatch, E>>,
    mut classes: impl Iterator<Item = Result<Class, E>>,
    wanted: Class,
) -> impl Iterator<Item = Result<RecordBatch, E>>
where
    E: From<ArrowError>,
{
    let mut rows = Vec::new();
    batches.filter_map(move |batch| {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e)),
        };
        rows.clear();
        for _ in 0..batch.num_rows() {
            match classes.next() {
                Some(Ok(class)) => rows.push(class),
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    return Some(Err(ArrowError::InvalidArgumentError(
                        "events and their classification differ in length".into(),
                    )
                    .into()));
                }
            }
        }
        let mask: BooleanArray = rows.iter().map(|c| Some(*c == wanted)).collect();
        match filter_record_batch(&batch, &mask) {
            Ok(kept) if kept.num_rows() == 0 => None,
            Ok(kept) => Some(Ok(kept)),
            Err(e) => Some(Err(e.into())),
        }
    })
}
