//! Classification of a partition's events into MAIN input, CORRECTION input
//! and superseded versions, computed directly over Arrow arrays.
//!
//! The rules are those of [`Compaction::classify_sql`](crate::mapping::compaction::Compaction::classify_sql),
//! which `materializer explain` shows and the tests below run side by side
//! with this code. Run as SQL they need two window functions, each sorting the
//! events by key; here one pass in arrival order with a hash table per key does
//! the same work, which matters when a partition holds millions of events.
//!
//! Keys and ordering keys are compared in Arrow's row format, so any scalar
//! type orders as it does in a SQL `ORDER BY`.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::{concat, filter_record_batch};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{Row, RowConverter, Rows, SortField};

use crate::decode::column_at_path;
use crate::mapping::compaction::Compaction;
use crate::run::KeyState;

/// What became of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// An older version, removed by compaction.
    Superseded,
    /// The latest version of its key: MAIN input.
    Main,
    /// Arrived after a newer version of its key: CORRECTION input.
    Correction,
}

/// Splits a partition's events (`batches`, in arrival order) into
/// (MAIN input, CORRECTION input), both in arrival order with all columns.
/// A topic with `compact = false` sends every event to MAIN.
pub fn classify(
    keys: &Compaction,
    batches: Vec<RecordBatch>,
    state: &KeyState,
) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>), ArrowError> {
    if !keys.compact || batches.is_empty() {
        return Ok((batches, Vec::new()));
    }
    let key_batches = batches
        .iter()
        .map(|b| key_columns(keys, b))
        .collect::<Result<Vec<_>, _>>()?;
    let classes = classes(keys, &key_batches, state)?;
    let main = of_class(batches.iter().cloned().map(Ok), &classes[..], Class::Main)
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let correction = of_class(batches.into_iter().map(Ok), &classes[..], Class::Correction)
        .collect::<Result<Vec<_>, ArrowError>>()?;
    Ok((main, correction))
}

/// The partitioning key parts and the ordering key of `batch`, in that order.
fn key_columns(keys: &Compaction, batch: &RecordBatch) -> Result<Vec<ArrayRef>, ArrowError> {
    keys.partitioning_key
        .iter()
        .chain([&keys.ordering_key])
        .map(|path| {
            column_at_path(batch, path).ok_or_else(|| {
                ArrowError::SchemaError(format!("key column {path} is not in the events"))
            })
        })
        .collect()
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
    let mut start = 0;
    batches.filter_map(move |batch| {
        let classes = classes.as_ref();
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e)),
        };
        let end = (start + batch.num_rows()).min(classes.len());
        let rows = &classes[start.min(end)..end];
        start += batch.num_rows();
        if rows.len() != batch.num_rows() {
            return Some(Err(ArrowError::InvalidArgumentError(
                "events and their classification differ in length".into(),
            )
            .into()));
        }
        let mask: BooleanArray = rows.iter().map(|c| Some(*c == wanted)).collect();
        match filter_record_batch(&batch, &mask) {
            Ok(kept) if kept.num_rows() == 0 => None,
            Ok(kept) => Some(Ok(kept)),
            Err(e) => Some(Err(e.into())),
        }
    })
}

/// Per key: the best candidate for MAIN, the highest ordering key seen so
/// far, and the highest one committed by earlier runs.
struct KeyHistory {
    latest: usize,
    highest: Option<usize>,
    committed: Option<usize>,
}

/// The class of every event, in arrival order. `key_batches` hold the
/// events' partitioning key parts and then their ordering key, as columns.
pub fn classes(
    keys: &Compaction,
    key_batches: &[Vec<ArrayRef>],
    state: &KeyState,
) -> Result<Vec<Class>, ArrowError> {
    let parts = keys.partitioning_key.len();
    let column = |i: usize| -> Result<ArrayRef, ArrowError> {
        let arrays: Vec<&dyn Array> = key_batches
            .iter()
            .map(|b| {
                b.get(i).map(|a| a.as_ref()).ok_or_else(|| {
                    ArrowError::InvalidArgumentError(format!(
                        "key batches have fewer than {} columns",
                        parts + 1
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        if arrays.is_empty() {
            return Err(ArrowError::InvalidArgumentError("no key batches".into()));
        }
        concat(&arrays)
    };
    let key_columns: Vec<ArrayRef> = (0..parts).map(column).collect::<Result<_, _>>()?;
    let ordering = column(parts)?;

    let key_converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let ordering_converter = RowConverter::new(vec![SortField::new(ordering.data_type().clone())])?;
    let event_keys = key_converter.convert_columns(&key_columns)?;
    let event_ordering = ordering_converter.convert_columns(&[ordering.clone()])?;
    let (state_keys, state_ordering) = state_rows(state, &key_converter, &ordering_converter)?;
    let committed = committed_by_key(&state_keys, &state_ordering);

    let key_is_null = |i: usize| -> bool { key_columns.iter().any(|c| c.is_null(i)) };
    let ordering_of =
        |i: usize| -> Option<Row<'_>> { ordering.is_valid(i).then(|| event_ordering.row(i)) };

    let n = ordering.len();
    let mut classes = vec![Class::Superseded; n];
    let mut histories: HashMap<Row<'_>, KeyHistory> = HashMap::new();
    for i in 0..n {
        let key = event_keys.row(i);
        let history = histories.entry(key).or_insert_with(|| KeyHistory {
            latest: i,
            highest: None,
            // A null key part matches nothing in SQL, not even a null.
            committed: if key_is_null(i) {
                None
            } else {
                committed.get(&key).copied()
            },
        });
        let own = ordering_of(i);
        if let Some(own) = own {
            let newer_arrived = history.highest.is_some_and(|h| event_ordering.row(h) > own);
            let already_committed = history
                .committed
                .is_some_and(|c| own <= state_ordering.row(c));
            if newer_arrived || already_committed {
                classes[i] = Class::Correction;
            }
            if history.highest.is_none_or(|h| own > event_ordering.row(h)) {
                history.highest = Some(i);
            }
        }
        // The latest version: highest ordering key (nulls last), then the
        // latest arrival among equals.
        if history.latest != i {
            let current = ordering_of(history.latest);
            let ranks_first = match (own, current) {
                (Some(own), Some(current)) => own >= current,
                (Some(_), None) | (None, None) => true,
                (None, Some(_)) => false,
            };
            if ranks_first {
                history.latest = i;
            }
        }
    }
    for history in histories.values() {
        if classes[history.latest] == Class::Superseded {
            classes[history.latest] = Class::Main;
        }
    }
    Ok(classes)
}

/// The key state's keys and ordering keys, in the events' row formats.
fn state_rows(
    state: &KeyState,
    key_converter: &RowConverter,
    ordering_converter: &RowConverter,
) -> Result<(Rows, Rows), ArrowError> {
    let mut keys = key_converter.empty_rows(0, 0);
    let mut ordering = ordering_converter.empty_rows(0, 0);
    for batch in &state.batches {
        let (key_columns, ordering_column) = batch.columns().split_at(batch.num_columns() - 1);
        // Rows with a null key part or ordering key can never match or count.
        let usable: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                Some(key_columns.iter().all(|c| c.is_valid(i)) && ordering_column[0].is_valid(i))
            })
            .collect();
        let batch = filter_record_batch(batch, &usable)?;
        let (key_columns, ordering_column) = batch.columns().split_at(batch.num_columns() - 1);
        key_converter.append(&mut keys, key_columns)?;
        ordering_converter.append(&mut ordering, ordering_column)?;
    }
    Ok((keys, ordering))
}

/// Per committed key, the index of its highest committed ordering key.
fn committed_by_key<'a>(keys: &'a Rows, ordering: &'a Rows) -> HashMap<Row<'a>, usize> {
    let mut committed: HashMap<Row<'a>, usize> = HashMap::with_capacity(keys.num_rows());
    for i in 0..keys.num_rows() {
        committed
            .entry(keys.row(i))
            .and_modify(|best| {
                if ordering.row(i) > ordering.row(*best) {
                    *best = i;
                }
            })
            .or_insert(i);
    }
    committed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
    use futures::TryStreamExt;

    use super::*;
    use crate::mapping::compaction::{ARRIVALS_TABLE, KEY_STATE_TABLE};
    use crate::mapping::{Engine, EngineSettings};
    use crate::schema::SEQ_COLUMN;

    /// A small deterministic generator, so that a failure can be replayed.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn keys() -> Compaction {
        Compaction {
            partitioning_key: vec!["shop".into(), "id".into()],
            ordering_key: "version".into(),
            compact: true,
        }
    }

    /// Events with a two-part key (text, sometimes null; number), versions
    /// that repeat, go back and are sometimes null; split into several batches.
    fn events(seed: u64, n: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("shop", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("version", DataType::Int64, true),
            Field::new(SEQ_COLUMN, DataType::UInt64, false),
        ]));
        let mut rng = Lcg(seed);
        let mut rows = Vec::new();
        for seq in 0..n as u64 {
            let shop = match rng.below(7) {
                0 => None,
                s => Some(format!("shop-{}", s % 3)),
            };
            let id = (rng.below(20) != 0).then(|| rng.below(15) as i64);
            let version = (rng.below(12) != 0).then(|| rng.below(9) as i64);
            rows.push((shop, id, version, seq));
        }
        rows.chunks(n / 3 + 1)
            .map(|chunk| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(chunk.iter().map(|r| r.0.clone()).collect::<StringArray>()),
                        Arc::new(chunk.iter().map(|r| r.1).collect::<Int64Array>()),
                        Arc::new(chunk.iter().map(|r| r.2).collect::<Int64Array>()),
                        Arc::new(chunk.iter().map(|r| r.3).collect::<UInt64Array>()),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn state(seed: u64) -> KeyState {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__key_0", DataType::Utf8, true),
            Field::new("__key_1", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]));
        let mut rng = Lcg(seed);
        let mut rows = Vec::new();
        for shop in 0..3 {
            for id in 0..15 {
                if rng.below(3) == 0 {
                    let version = (rng.below(10) != 0).then(|| rng.below(9) as i64);
                    rows.push((format!("shop-{shop}"), id as i64, version));
                }
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.0.clone()))
                        .collect::<StringArray>(),
                ),
                Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
            ],
        )
        .unwrap();
        KeyState {
            schema,
            batches: vec![batch],
        }
    }

    fn seqs(batches: &[RecordBatch]) -> Vec<u64> {
        let mut seqs: Vec<u64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name(SEQ_COLUMN)
                    .unwrap()
                    .as_primitive::<UInt64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// The generated SQL, run by DataFusion: (MAIN seqs, CORRECTION seqs).
    async fn by_sql(batches: &[RecordBatch], state: &KeyState) -> (Vec<u64>, Vec<u64>) {
        let engine = Engine::new(EngineSettings::default()).unwrap();
        let ctx = engine.session();
        let table =
            datafusion::datasource::MemTable::try_new(batches[0].schema(), vec![batches.to_vec()])
                .unwrap();
        ctx.register_table(ARRIVALS_TABLE, Arc::new(table)).unwrap();
        ctx.register_table(KEY_STATE_TABLE, Arc::new(state.table().unwrap()))
            .unwrap();
        let sql = keys().classify_sql(&[SEQ_COLUMN.to_string()]);
        let frame = ctx.sql(&sql).await.unwrap();
        let rows: Vec<RecordBatch> = frame
            .execute_stream()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let (mut main, mut correction) = (Vec::new(), Vec::new());
        for batch in rows {
            let seq = batch.column(0).as_primitive::<UInt64Type>();
            let flag = batch.column(1).as_boolean();
            for i in 0..batch.num_rows() {
                if flag.value(i) {
                    correction.push(seq.value(i));
                } else {
                    main.push(seq.value(i));
                }
            }
        }
        main.sort_unstable();
        correction.sort_unstable();
        (main, correction)
    }

    #[tokio::test]
    async fn classifies_as_the_generated_sql_does() {
        for seed in 1..=12 {
            let batches = events(seed, 400);
            let state = if seed % 2 == 0 {
                state(seed)
            } else {
                KeyState {
                    schema: state(seed).schema,
                    batches: Vec::new(),
                }
            };
            let (main, correction) = classify(&keys(), batches.clone(), &state).unwrap();
            let expected = by_sql(&batches, &state).await;
            assert!(
                !expected.0.is_empty() && !expected.1.is_empty(),
                "seed {seed}"
            );
            assert_eq!((seqs(&main), seqs(&correction)), expected, "seed {seed}");
        }
    }

    #[test]
    fn keeps_arrival_order_and_every_column() {
        let batches = events(99, 50);
        let (main, correction) = classify(&keys(), batches.clone(), &state(99)).unwrap();
        for out in [&main, &correction] {
            for batch in out.iter() {
                assert_eq!(batch.schema(), batches[0].schema());
            }
            let in_order: Vec<u64> = out
                .iter()
                .flat_map(|b| b.column(3).as_primitive::<UInt64Type>().values().to_vec())
                .collect();
            assert!(in_order.windows(2).all(|w| w[0] < w[1]));
        }
        let no_compaction = Compaction {
            compact: false,
            ..keys()
        };
        let (all, none) = classify(&no_compaction, batches.clone(), &state(99)).unwrap();
        assert_eq!(all, batches);
        assert!(none.is_empty());
    }
}
