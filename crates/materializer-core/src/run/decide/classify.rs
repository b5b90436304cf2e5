//! Classification of a run's events into MAIN input, CORRECTION input, OLDER
//! input and superseded versions, computed directly over Arrow arrays.
//!
//! A key's versions may come from any Nakadi partition (an event type's
//! default partition strategy is `random`), so a key is decided over all the
//! partitions of the run: the events come partition after partition, in
//! [`partition_cmp`](crate::source::partition_cmp) order, each partition's in
//! arrival order. Per key:
//! - MAIN: the highest ordering key of the run; among equal ones, the last
//!   in that order (the last to arrive in the partition that sorts last);
//! - CORRECTION (late): an event whose ordering key is lower than one of its
//!   key that arrived before it *in the same partition*, or not higher than
//!   the one an earlier run committed; where a partition's events came from
//!   does not matter otherwise;
//! - a version that arrives more than once counts once: the last copy in
//!   that order;
//! - the rest are older versions (one superseded only by a version from
//!   another partition among them): superseded, or OLDER input for a topic
//!   that keeps a history.
//!
//! The rules are those of [`Compaction::classify_sql`](crate::mapping::compaction::Compaction::classify_sql),
//! which `materializer explain` shows and the tests below run side by side
//! with this code. Run as SQL they need window functions, each sorting the
//! events by key; here one pass with a hash table per key does the same work,
//! which matters when a run holds millions of events.
//!
//! Keys and ordering keys are compared in Arrow's row format, so any scalar
//! type orders as it does in a SQL `ORDER BY`.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::num::NonZeroU128;

use foldhash::fast::RandomState;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::{concat, filter_record_batch};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{Row, RowConverter, Rows, SortField};

use super::class::{Class, of_class};
use crate::decode::column_at_path;
use crate::mapping::compaction::Compaction;
use crate::state::KeyState;

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
    let events = batches.iter().map(RecordBatch::num_rows).sum();
    let classes = classes(keys, &key_batches, &[events], state, false)?;
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

/// Per key: the best candidate for MAIN with its ordering key, the highest
/// ordering key seen so far in the partition being read (`highest_in`), and
/// the highest one committed by earlier runs.
struct KeyHistory<O> {
    latest_ordering: Option<O>,
    highest: Option<O>,
    highest_in: usize,
    committed: Option<O>,
    latest: usize,
}

/// The class of every event. `key_batches` hold the events' partitioning key
/// parts and then their ordering key, as columns: partition after partition
/// in partition order, each partition's events in arrival order;
/// `partition_ends[p]` is the number of events of partitions `0..=p`. With
/// `keep_history`, the last copy of each older version is [`Class::Older`]
/// instead of superseded.
pub fn classes(
    keys: &Compaction,
    key_batches: &[Vec<ArrayRef>],
    partition_ends: &[usize],
    state: &KeyState,
    keep_history: bool,
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
    let event_ordering = ordering_converter.convert_columns(std::slice::from_ref(&ordering))?;
    let (state_keys, state_ordering) = state_rows(state, &key_converter, &ordering_converter)?;

    let n = ordering.len();
    if partition_ends.last() != Some(&n) {
        return Err(ArrowError::InvalidArgumentError(format!(
            "the partitions hold {:?} events, the key columns {n}",
            partition_ends.last()
        )));
    }
    let events = Events {
        n,
        partition_ends,
        key_is_null: |i: usize| key_columns.iter().any(|c| c.is_null(i)),
        has_ordering: |i: usize| ordering.is_valid(i),
        keep_history,
    };
    // Keys and ordering keys of fixed-width types (integers, dates...) fit in
    // a u128 each: kept in the hash table itself, they spare a lookup in the
    // row buffers per comparison.
    if let (Some(k), Some(o), Some(sk), Some(so)) = (
        packed(&event_keys),
        packed(&event_ordering),
        packed(&state_keys),
        packed(&state_ordering),
    ) {
        drop((event_keys, event_ordering, state_keys, state_ordering));
        return Ok(events.classify(|i| k[i], |i| o[i], &sk, &so));
    }
    let state_keys: Vec<Row<'_>> = state_keys.iter().collect();
    let state_ordering: Vec<Row<'_>> = state_ordering.iter().collect();
    Ok(events.classify(
        |i| event_keys.row(i),
        |i| event_ordering.row(i),
        &state_keys,
        &state_ordering,
    ))
}

/// What the classification asks of the events besides their keys.
struct Events<'p, N, V> {
    n: usize,
    /// Where each partition's events end.
    partition_ends: &'p [usize],
    key_is_null: N,
    has_ordering: V,
    keep_history: bool,
}

impl<N: Fn(usize) -> bool, V: Fn(usize) -> bool> Events<'_, N, V> {
    /// One pass over the events with a hash table per key. `key(i)` and
    /// `ordering(i)` give an event's key and ordering key in a form that
    /// compares as the row format does; `state_*` the key state's, alike.
    fn classify<K: Hash + Eq + Copy, O: Ord + Hash + Copy>(
        &self,
        key: impl Fn(usize) -> K,
        ordering: impl Fn(usize) -> O,
        state_keys: &[K],
        state_ordering: &[O],
    ) -> Vec<Class> {
        let committed = committed_by_key(state_keys, state_ordering);
        let ordering_of = |i: usize| (self.has_ordering)(i).then(|| ordering(i));
        let mut classes = vec![Class::Superseded; self.n];
        let mut histories: HashMap<K, KeyHistory<O>, RandomState> = HashMap::default();
        // The partition of event `i`: events come partition after partition.
        let mut partition = 0;
        // `i` is the event's position in every column and in `classes`.
        #[allow(clippy::needless_range_loop)]
        for i in 0..self.n {
            while self
                .partition_ends
                .get(partition)
                .is_some_and(|&end| i >= end)
            {
                partition += 1;
            }
            let key = key(i);
            let own = ordering_of(i);
            let history = histories.entry(key).or_insert_with(|| KeyHistory {
                latest: i,
                latest_ordering: own,
                highest: None,
                highest_in: partition,
                // A null key part matches nothing in SQL, not even a null.
                committed: if (self.key_is_null)(i) {
                    None
                } else {
                    committed.get(&key).copied()
                },
            });
            // Arrival order holds within a partition only: a newer version
            // from another partition does not make this one late.
            if history.highest_in != partition {
                history.highest = None;
                history.highest_in = partition;
            }
            if let Some(own) = own {
                let newer_arrived = history.highest.is_some_and(|h| h > own);
                let already_committed = history.committed.is_some_and(|c| own <= c);
                if newer_arrived || already_committed {
                    classes[i] = Class::Correction;
                }
                if history.highest.is_none_or(|h| own > h) {
                    history.highest = Some(own);
                }
            }
            // The latest version: highest ordering key (nulls last), then the
            // last among equals (the last to arrive in the partition that
            // sorts last).
            if history.latest != i {
                let ranks_first = match (own, history.latest_ordering) {
                    (Some(own), Some(current)) => own >= current,
                    (Some(_), None) | (None, None) => true,
                    (None, Some(_)) => false,
                };
                if ranks_first {
                    history.latest = i;
                    history.latest_ordering = own;
                }
            }
        }
        for history in histories.values() {
            if classes[history.latest] == Class::Superseded {
                classes[history.latest] = Class::Main;
            }
        }
        // A version that arrives more than once counts once: of the events
        // with one key and ordering key, the last in partition and arrival
        // order. (The MAIN event is the last of its version by construction.)
        let mut represented: HashSet<(K, O), RandomState> = HashSet::default();
        for i in (0..self.n).rev() {
            let Some(own) = ordering_of(i) else { continue };
            let first_seen = represented.insert((key(i), own));
            classes[i] = match classes[i] {
                Class::Correction if !first_seen => Class::Superseded,
                Class::Superseded if self.keep_history && first_seen => Class::Older,
                Class::Superseded if first_seen => {
                    // Not kept: let a copy of it arriving earlier stay superseded too.
                    Class::Superseded
                }
                class => class,
            };
        }
        classes
    }
}

/// The rows as numbers that compare as the rows do, when every row has at
/// most 15 bytes: the bytes first, zero-padded, then the length (never zero,
/// so that an `Option` of one takes no more room).
fn packed(rows: &Rows) -> Option<Vec<NonZeroU128>> {
    rows.iter()
        .map(|row| {
            let bytes = row.as_ref();
            let mut word = [0u8; 16];
            word.get_mut(..bytes.len())?.copy_from_slice(bytes);
            word[15] = u8::try_from(bytes.len())
                .ok()
                .filter(|len| (1..16).contains(len))?;
            NonZeroU128::new(u128::from_be_bytes(word))
        })
        .collect()
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

/// Per committed key, its highest committed ordering key.
fn committed_by_key<K: Hash + Eq + Copy, O: Ord + Copy>(
    keys: &[K],
    ordering: &[O],
) -> HashMap<K, O, RandomState> {
    let mut committed: HashMap<K, O, RandomState> =
        HashMap::with_capacity_and_hasher(keys.len(), RandomState::default());
    for (key, ordering) in keys.iter().zip(ordering) {
        committed
            .entry(*key)
            .and_modify(|best| *best = (*best).max(*ordering))
            .or_insert(*ordering);
    }
    committed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int32Array, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
    use futures::TryStreamExt;

    use super::*;
    use crate::mapping::compaction::{ARRIVALS_TABLE, KEY_STATE_TABLE};
    use crate::mapping::{Engine, EngineSettings};
    use crate::schema::{PARTITION_COLUMN, SEQ_COLUMN};
    use crate::source::partition_cmp;

    use crate::test_support::Lcg;

    fn keys() -> Compaction {
        Compaction {
            partitioning_key: vec!["shop".into(), "id".into()],
            ordering_key: "version".into(),
            compact: true,
        }
    }

    /// The shop key part: as text (keys compared as rows), or as small
    /// numbers (keys packed into integers).
    fn shop_column(shops: impl Iterator<Item = Option<u64>>, text: bool) -> ArrayRef {
        if text {
            Arc::new(
                shops
                    .map(|s| s.map(|s| format!("shop-{s}")))
                    .collect::<StringArray>(),
            )
        } else {
            Arc::new(shops.map(|s| s.map(|s| s as i32)).collect::<Int32Array>())
        }
    }

    fn shop_type(text: bool) -> DataType {
        if text {
            DataType::Utf8
        } else {
            DataType::Int32
        }
    }

    /// Partition names whose order is numeric, not alphabetical.
    const PARTITIONS: [&str; 4] = ["0", "1", "9", "10"];

    /// One event: (shop, id, version, partition, seq).
    type Event = (Option<u64>, Option<i64>, Option<i64>, &'static str, u64);

    /// Events with a two-part key (shop, sometimes null; number), versions
    /// that repeat, go back and are sometimes null, spread over the first
    /// `partitions` of [`PARTITIONS`] at random (each key's versions on
    /// several); in partition order, each partition's in arrival order (`seq`
    /// counts up); split into several batches.
    fn events(seed: u64, n: usize, text: bool, partitions: u64) -> Vec<RecordBatch> {
        let mut rng = Lcg(seed);
        let mut rows: Vec<Event> = Vec::new();
        for seq in 0..n as u64 {
            let shop = match rng.below(7) {
                0 => None,
                s => Some(s % 3),
            };
            let id = (rng.below(20) != 0).then(|| rng.below(15) as i64);
            let version = (rng.below(12) != 0).then(|| rng.below(9) as i64);
            let partition = PARTITIONS[rng.below(partitions) as usize];
            rows.push((shop, id, version, partition, seq));
        }
        rows.sort_by(|a, b| partition_cmp(a.3, b.3).then(a.4.cmp(&b.4)));
        batches_of(&rows, text)
    }

    fn batches_of(rows: &[Event], text: bool) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("shop", shop_type(text), true),
            Field::new("id", DataType::Int64, true),
            Field::new("version", DataType::Int64, true),
            Field::new(SEQ_COLUMN, DataType::UInt64, false),
            Field::new(PARTITION_COLUMN, DataType::Utf8, false),
        ]));
        rows.chunks(rows.len() / 3 + 1)
            .map(|chunk| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        shop_column(chunk.iter().map(|r| r.0), text),
                        Arc::new(chunk.iter().map(|r| r.1).collect::<Int64Array>()),
                        Arc::new(chunk.iter().map(|r| r.2).collect::<Int64Array>()),
                        Arc::new(chunk.iter().map(|r| r.4).collect::<UInt64Array>()),
                        Arc::new(chunk.iter().map(|r| Some(r.3)).collect::<StringArray>()),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    /// The events of `batches` as rows, in their order.
    fn rows_of(batches: &[RecordBatch]) -> Vec<Event> {
        let mut rows = Vec::new();
        for b in batches {
            let shop: Vec<Option<u64>> = match b.column(0).data_type() {
                DataType::Utf8 => b
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(|s| s["shop-".len()..].parse().unwrap()))
                    .collect(),
                _ => b
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .iter()
                    .map(|s| s.map(|s| s as u64))
                    .collect(),
            };
            let id = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            let version = b.column(2).as_primitive::<arrow::datatypes::Int64Type>();
            let seq = b.column(3).as_primitive::<UInt64Type>();
            let partition = b.column(4).as_string::<i32>();
            for (i, shop) in shop.into_iter().enumerate() {
                let name: &'static str = PARTITIONS
                    .iter()
                    .find(|p| **p == partition.value(i))
                    .unwrap();
                rows.push((
                    shop,
                    id.is_valid(i).then(|| id.value(i)),
                    version.is_valid(i).then(|| version.value(i)),
                    name,
                    seq.value(i),
                ));
            }
        }
        rows
    }

    fn state(seed: u64, text: bool) -> KeyState {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__key_0", shop_type(text), true),
            Field::new("__key_1", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]));
        let mut rng = Lcg(seed);
        let mut rows = Vec::new();
        for shop in 0..3 {
            for id in 0..15 {
                if rng.below(3) == 0 {
                    let version = (rng.below(10) != 0).then(|| rng.below(9) as i64);
                    rows.push((shop, id as i64, version));
                }
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                shop_column(rows.iter().map(|r| Some(r.0)), text),
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

    /// Seqs of the events of each class: (MAIN, CORRECTION, HISTORY).
    type BySeq = (Vec<u64>, Vec<u64>, Vec<u64>);

    /// The generated SQL, run by DataFusion.
    async fn by_sql(batches: &[RecordBatch], state: &KeyState, keep_history: bool) -> BySeq {
        let engine = Engine::new(EngineSettings::default()).unwrap();
        let ctx = engine.session();
        let table =
            datafusion::datasource::MemTable::try_new(batches[0].schema(), vec![batches.to_vec()])
                .unwrap();
        ctx.register_table(ARRIVALS_TABLE, Arc::new(table)).unwrap();
        ctx.register_table(KEY_STATE_TABLE, Arc::new(state.table().unwrap()))
            .unwrap();
        let sql = keys().classify_sql(&[SEQ_COLUMN.to_string()], keep_history);
        let frame = ctx.sql(&sql).await.unwrap();
        let rows: Vec<RecordBatch> = frame
            .execute_stream()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut out: BySeq = Default::default();
        for batch in rows {
            let seq = batch.column(0).as_primitive::<UInt64Type>();
            let class = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                match class.value(i) {
                    "main" => out.0.push(seq.value(i)),
                    "correction" => out.1.push(seq.value(i)),
                    _ => out.2.push(seq.value(i)),
                }
            }
        }
        out.0.sort_unstable();
        out.1.sort_unstable();
        out.2.sort_unstable();
        out
    }

    /// Where each partition's events end in `rows` (in partition order).
    fn partition_ends(rows: &[Event]) -> Vec<usize> {
        let mut ends: Vec<usize> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if i > 0 && rows[i - 1].3 != row.3 {
                ends.push(i);
            }
        }
        ends.push(rows.len());
        ends
    }

    /// The one-pass classification of `batches`, by seq.
    fn by_pass(batches: &[RecordBatch], state: &KeyState, keep_history: bool) -> BySeq {
        let key_batches: Vec<Vec<ArrayRef>> = batches
            .iter()
            .map(|b| key_columns(&keys(), b).unwrap())
            .collect();
        let ends = partition_ends(&rows_of(batches));
        let classes = classes(&keys(), &key_batches, &ends, state, keep_history).unwrap();
        let mut out: BySeq = Default::default();
        for (class, row) in classes.iter().zip(rows_of(batches)) {
            match class {
                Class::Main => out.0.push(row.4),
                Class::Correction => out.1.push(row.4),
                Class::Older => out.2.push(row.4),
                Class::Superseded => {}
            }
        }
        out.0.sort_unstable();
        out.1.sort_unstable();
        out.2.sort_unstable();
        out
    }

    /// The classes as the README defines them, computed event by event over
    /// `rows` (in partition order, each partition's in arrival order), with
    /// `committed` the key state: a plain model, apart from the one-pass code.
    fn by_definition(
        rows: &[Event],
        committed: &HashMap<(u64, i64), i64>,
        keep_history: bool,
    ) -> BySeq {
        let key = |r: &Event| (r.0, r.1);
        let position = |r: &Event| {
            let partition = PARTITIONS.iter().position(|p| *p == r.3).unwrap();
            (partition, r.4)
        };
        let committed_of = |r: &Event| match (r.0, r.1) {
            (Some(shop), Some(id)) => committed.get(&(shop, id)).copied(),
            _ => None,
        };
        let mut out: BySeq = Default::default();
        for r in rows {
            let same_key: Vec<&Event> = rows.iter().filter(|o| key(o) == key(r)).collect();
            // Late: a higher version arrived before it in its partition, or
            // a version at least as high was committed.
            let late = r.2.is_some_and(|v| {
                same_key
                    .iter()
                    .any(|o| o.3 == r.3 && o.4 < r.4 && o.2.is_some_and(|ov| ov > v))
                    || committed_of(r).is_some_and(|c| v <= c)
            });
            // MAIN: the highest version (nulls lowest), the last among equals.
            let newest = same_key
                .iter()
                .max_by_key(|o| (o.2.is_some(), o.2, position(o)))
                .unwrap();
            let main = newest.4 == r.4 && !late;
            // A version counts once: its last copy.
            let last_copy = r.2.is_some()
                && !same_key
                    .iter()
                    .any(|o| o.2 == r.2 && position(o) > position(r));
            if main {
                out.0.push(r.4);
            } else if late && last_copy {
                out.1.push(r.4);
            } else if !late && last_copy && keep_history {
                out.2.push(r.4);
            }
        }
        out.0.sort_unstable();
        out.1.sort_unstable();
        out.2.sort_unstable();
        out
    }

    /// The key state of `state` as a map, for the model.
    fn committed_map(state: &KeyState) -> HashMap<(u64, i64), i64> {
        let mut map = HashMap::new();
        for rows in rows_of_state(state) {
            if let (shop, id, Some(version)) = rows {
                let best = map.entry((shop, id)).or_insert(version);
                *best = (*best).max(version);
            }
        }
        map
    }

    fn rows_of_state(state: &KeyState) -> Vec<(u64, i64, Option<i64>)> {
        let mut rows = Vec::new();
        for b in &state.batches {
            let shops: Vec<u64> = match b.column(0).data_type() {
                DataType::Utf8 => b
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap()["shop-".len()..].parse().unwrap())
                    .collect(),
                _ => b
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .iter()
                    .map(|s| s.unwrap() as u64)
                    .collect(),
            };
            let ids = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            let versions = b.column(2).as_primitive::<arrow::datatypes::Int64Type>();
            for (i, shop) in shops.into_iter().enumerate() {
                rows.push((
                    shop,
                    ids.value(i),
                    versions.is_valid(i).then(|| versions.value(i)),
                ));
            }
        }
        rows
    }

    #[test]
    fn packed_rows_compare_as_rows_do() {
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(5),
            None,
            Some(-3),
            Some(i64::MAX),
            Some(0),
            Some(5),
        ]));
        let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let rows = converter.convert_columns(&[numbers]).unwrap();
        let words = packed(&rows).expect("9-byte rows pack");
        for i in 0..rows.num_rows() {
            for j in 0..rows.num_rows() {
                assert_eq!(words[i].cmp(&words[j]), rows.row(i).cmp(&rows.row(j)));
            }
        }
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a longer text than fits"]));
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        assert!(packed(&converter.convert_columns(&[text]).unwrap()).is_none());
    }

    #[tokio::test]
    async fn classifies_as_the_generated_sql_does() {
        for seed in 1..=12 {
            // Text shops take the row-format path, numeric ones the packed one.
            let text = seed % 3 != 0;
            let batches = events(seed, 400, text, 1);
            let state = if seed % 2 == 0 {
                state(seed, text)
            } else {
                KeyState {
                    schema: state(seed, text).schema,
                    batches: Vec::new(),
                }
            };
            let (main, correction) = classify(&keys(), batches.clone(), &state).unwrap();
            let expected = by_sql(&batches, &state, false).await;
            assert!(
                !expected.0.is_empty() && !expected.1.is_empty() && expected.2.is_empty(),
                "seed {seed}"
            );
            assert_eq!(
                (seqs(&main), seqs(&correction), Vec::new()),
                expected,
                "seed {seed}"
            );
            let with_history = by_sql(&batches, &state, true).await;
            assert!(!with_history.2.is_empty(), "seed {seed}");
            assert_eq!(by_pass(&batches, &state, true), with_history, "seed {seed}");
        }
    }

    #[tokio::test]
    async fn a_key_is_decided_across_partitions_as_defined() {
        for seed in 1..=12 {
            let text = seed % 3 != 0;
            let batches = events(seed, 300, text, 4);
            let state = if seed % 2 == 0 {
                state(seed, text)
            } else {
                KeyState {
                    schema: state(seed, text).schema,
                    batches: Vec::new(),
                }
            };
            let rows = rows_of(&batches);
            assert!(partition_ends(&rows).len() > 1, "seed {seed}");
            for keep_history in [false, true] {
                let expected = by_definition(&rows, &committed_map(&state), keep_history);
                assert!(
                    !expected.0.is_empty() && !expected.1.is_empty(),
                    "seed {seed}: {expected:?}"
                );
                assert_eq!(
                    by_pass(&batches, &state, keep_history),
                    expected,
                    "seed {seed}, history {keep_history}"
                );
                assert_eq!(
                    by_sql(&batches, &state, keep_history).await,
                    expected,
                    "seed {seed}, history {keep_history}: the SQL that explain shows"
                );
            }
        }
    }

    #[test]
    fn versions_on_several_partitions_give_one_main_per_key() {
        // Article 7: version 1 on partition 0, version 2 on partition 1;
        // article 8: version 1 on partition 0, version 3 on partition 1;
        // article 9 once; a redelivery of article 8's version 3 on
        // partition 0, after its version 1.
        let rows: Vec<Event> = vec![
            (Some(0), Some(7), Some(1), "0", 0),
            (Some(0), Some(8), Some(1), "0", 1),
            (Some(0), Some(8), Some(3), "0", 2),
            (Some(0), Some(7), Some(2), "1", 0),
            (Some(0), Some(8), Some(3), "1", 1),
            (Some(0), Some(9), Some(1), "1", 2),
        ];
        let batches = batches_of(&rows, false);
        let key_batches: Vec<Vec<ArrayRef>> = batches
            .iter()
            .map(|b| key_columns(&keys(), b).unwrap())
            .collect();
        let empty = KeyState {
            schema: state(1, false).schema,
            batches: Vec::new(),
        };
        let classes = classes(&keys(), &key_batches, &[3, 6], &empty, true).unwrap();
        use Class::*;
        // Of article 8's version 3, the copy on partition 1 (which sorts
        // last) wins; the one on partition 0 is a redelivery.
        assert_eq!(classes, [Older, Older, Superseded, Main, Main, Main]);
    }

    #[test]
    fn keeps_arrival_order_and_every_column() {
        let batches = events(99, 50, true, 1);
        let (main, correction) = classify(&keys(), batches.clone(), &state(99, true)).unwrap();
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
        let (all, none) = classify(&no_compaction, batches.clone(), &state(99, true)).unwrap();
        assert_eq!(all, batches);
        assert!(none.is_empty());
    }
}
