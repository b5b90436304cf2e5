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

/// Splits `batch` by the classes of its rows, taken from `classes` (in
/// event order, continuing from the batch before): per class of `wanted`,
/// its rows, `None` when it has none. `rows` is a buffer reused from batch
/// to batch.
pub fn split_by_class<E>(
    batch: &RecordBatch,
    classes: &mut impl Iterator<Item = Result<Class, E>>,
    wanted: &[Class],
    rows: &mut Vec<Class>,
) -> Result<Vec<Option<RecordBatch>>, E>
where
    E: From<ArrowError>,
{
    rows.clear();
    for _ in 0..batch.num_rows() {
        match classes.next() {
            Some(class) => rows.push(class?),
            None => {
                return Err(ArrowError::InvalidArgumentError(
                    "events and their classification differ in length".into(),
                )
                .into());
            }
        }
    }
    wanted
        .iter()
        .map(|wanted| {
            if !rows.contains(wanted) {
                return Ok(None);
            }
            let mask: BooleanArray = rows.iter().map(|c| Some(c == wanted)).collect();
            Ok(Some(filter_record_batch(batch, &mask)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    #[test]
    fn a_batch_splits_into_its_classes_in_event_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |values: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        use Class::*;
        let mut classes = [Main, Older, Main, Superseded, Correction, Older, Main]
            .into_iter()
            .map(Ok::<_, ArrowError>);
        let wanted = [Main, Correction, Older];
        let values = |b: &Option<RecordBatch>| -> Option<Vec<i64>> {
            b.as_ref()
                .map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        };
        let mut rows = Vec::new();
        let first =
            split_by_class(&batch(vec![0, 1, 2, 3]), &mut classes, &wanted, &mut rows).unwrap();
        assert_eq!(
            first.iter().map(values).collect::<Vec<_>>(),
            [Some(vec![0, 2]), None, Some(vec![1])]
        );
        let second =
            split_by_class(&batch(vec![4, 5, 6]), &mut classes, &wanted, &mut rows).unwrap();
        assert_eq!(
            second.iter().map(values).collect::<Vec<_>>(),
            [Some(vec![6]), Some(vec![4]), Some(vec![5])]
        );
        // More events than classes: the classification does not fit.
        assert!(split_by_class(&batch(vec![7]), &mut classes, &wanted, &mut rows).is_err());
    }
}
