//! Keys as bytes: Arrow's row format for the key parts and the ordering key
//! (bytes that compare as the values do in a SQL `ORDER BY`), the bucket of a
//! key, and the distinct keys of one run, sorted per bucket.

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{Row, RowConverter, Rows, SortField};
use foldhash::fast::RandomState;

/// Buckets of a new key state. A manifest records the count its state was
/// written with, so that a later release may choose another.
pub const BUCKETS: u32 = 16;

/// The row formats of a key state's columns: key parts first, the ordering
/// key last.
pub struct KeyFormat {
    keys: RowConverter,
    ordering: RowConverter,
    parts: usize,
}

impl KeyFormat {
    pub fn new(state_schema: &Schema) -> Result<KeyFormat, ArrowError> {
        let fields = state_schema.fields();
        let parts = fields.len().saturating_sub(1);
        let sort_field = |i: usize| SortField::new(fields[i].data_type().clone());
        Ok(KeyFormat {
            keys: RowConverter::new((0..parts).map(sort_field).collect())?,
            ordering: RowConverter::new(vec![sort_field(parts)])?,
            parts,
        })
    }

    /// The key parts of `columns` (key parts first, as in the state and in
    /// the decoded key columns), as rows.
    pub fn key_rows(&self, columns: &[ArrayRef]) -> Result<Rows, ArrowError> {
        self.keys.convert_columns(&columns[..self.parts])
    }

    /// The ordering key of a key state batch, as rows.
    pub fn ordering_rows(&self, batch: &RecordBatch) -> Result<Rows, ArrowError> {
        self.ordering
            .convert_columns(std::slice::from_ref(batch.column(self.parts)))
    }

    /// Which rows of a segment's key columns (sorted by key, each key
    /// once) hold one of `keys` (sorted). Each key is found by a binary
    /// search that starts where the previous one ended: a batch costs its
    /// conversion to rows, not a lookup per row, which counts when a few
    /// thousand keys meet a state of millions.
    pub fn sorted_matches(
        &self,
        key_columns: &[ArrayRef],
        keys: BucketKeys<'_>,
    ) -> Result<BooleanArray, ArrowError> {
        let rows = self.key_rows(key_columns)?;
        let n = rows.num_rows();
        let mut matches = vec![false; n];
        if n == 0 {
            return Ok(BooleanArray::from(matches));
        }
        let (first, last) = (rows.row(0), rows.row(n - 1));
        let from = lower_bound(0, keys.len(), |i| keys.get(i) < first);
        let mut start = 0;
        for key in (from..keys.len()).map(|i| keys.get(i)) {
            if key > last {
                break;
            }
            let low = lower_bound(start, n, |i| rows.row(i) < key);
            if low < n && rows.row(low) == key {
                matches[low] = true;
                start = low + 1;
            } else {
                start = low;
            }
        }
        Ok(BooleanArray::from(matches))
    }

    /// Rows of a key state batch that can ever match an event: a null key
    /// part matches nothing in SQL, and a null ordering key never counts.
    pub fn usable(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let columns = batch.columns();
        if columns.iter().all(|c| c.null_count() == 0) {
            return Ok(batch.clone());
        }
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(columns.iter().all(|c| c.is_valid(i))))
            .collect();
        filter_record_batch(batch, &mask)
    }
}

/// A 64-bit hash of a key's bytes that stays the same from one release to
/// the next (a test pins it): FNV-1a, then splitmix64's finaliser, as FNV's
/// low bits alone spread short keys poorly.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The first index in `from..to` for which `before` is false (`before`
/// holds for a prefix of the range).
fn lower_bound(from: usize, to: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (from, to);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// The bucket of a key, given as its row bytes.
pub fn bucket_of(key: &[u8], buckets: u32) -> u32 {
    bucket_of_hash(stable_hash(key), buckets)
}

/// The bucket of a key, given its [`stable_hash`].
pub fn bucket_of_hash(hash: u64, buckets: u32) -> u32 {
    (hash % u64::from(buckets.max(1))) as u32
}

/// One bucket's keys of a run, sorted.
#[derive(Clone, Copy)]
pub struct BucketKeys<'a> {
    rows: &'a Rows,
    order: &'a [u32],
}

impl<'a> BucketKeys<'a> {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The `i`th key in order.
    pub fn get(&self, i: usize) -> Row<'a> {
        self.rows.row(self.order[i] as usize)
    }
}

/// The distinct keys of a run's events (those without a null part), each
/// bucket's sorted as the state's segments are.
pub struct RunKeys {
    rows: Rows,
    /// Per bucket, indexes into `rows`: sorted, each key once.
    buckets: Vec<Vec<u32>>,
}

impl RunKeys {
    /// `key_batches`: the events' key columns, key parts first.
    pub fn new<'a>(
        format: &KeyFormat,
        key_batches: impl IntoIterator<Item = &'a [ArrayRef]>,
        buckets: u32,
    ) -> Result<RunKeys, ArrowError> {
        let mut rows = format.keys.empty_rows(0, 0);
        for columns in key_batches {
            let parts = &columns[..format.parts];
            let usable: BooleanArray = (0..parts.first().map_or(0, |c| c.len()))
                .map(|i| Some(parts.iter().all(|c| c.is_valid(i))))
                .collect();
            let kept: Vec<ArrayRef> = parts
                .iter()
                .map(|c| arrow::compute::filter(c, &usable))
                .collect::<Result<_, _>>()?;
            format.keys.append(&mut rows, &kept)?;
        }
        let mut by_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets.max(1) as usize];
        let mut seen: HashSet<&[u8], RandomState> = HashSet::default();
        for (i, row) in rows.iter().enumerate() {
            if seen.insert(row.data()) {
                by_bucket[bucket_of(row.data(), buckets) as usize].push(i as u32);
            }
        }
        drop(seen);
        for keys in &mut by_bucket {
            keys.sort_unstable_by(|a, b| rows.row(*a as usize).cmp(&rows.row(*b as usize)));
        }
        Ok(RunKeys {
            rows,
            buckets: by_bucket,
        })
    }

    pub fn bucket_count(&self) -> u32 {
        self.buckets.len() as u32
    }

    /// The keys of `bucket`, sorted.
    pub fn of_bucket(&self, bucket: u32) -> Vec<Row<'_>> {
        self.buckets
            .get(bucket as usize)
            .map(|keys| keys.iter().map(|i| self.rows.row(*i as usize)).collect())
            .unwrap_or_default()
    }

    /// The keys of `bucket`, sorted, without copying them.
    pub fn bucket(&self, bucket: u32) -> BucketKeys<'_> {
        BucketKeys {
            rows: &self.rows,
            order: self.buckets.get(bucket as usize).map_or(&[], Vec::as_slice),
        }
    }

    /// Whether the run has keys in `bucket`.
    pub fn has_bucket(&self, bucket: u32) -> bool {
        self.buckets
            .get(bucket as usize)
            .is_some_and(|keys| !keys.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    /// The state's files are found by bucket: a hash or a row format that
    /// changed would send a run to the wrong files.
    #[test]
    fn buckets_stay_the_same_from_one_release_to_the_next() {
        let schema = Schema::new(vec![
            Field::new("__key_0", DataType::Utf8, true),
            Field::new("__key_1", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]);
        let format = KeyFormat::new(&schema).unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                "shop-1",
                "shop-2",
                "a longer shop name",
            ])),
            Arc::new(Int64Array::from(vec![1, 100_000_001, -7])),
        ];
        let rows = format.key_rows(&columns).unwrap();
        let hashes: Vec<u64> = rows.iter().map(|r| stable_hash(r.data())).collect();
        assert_eq!(
            hashes,
            vec![
                0x0609_1651_c81b_6649,
                0x4714_d712_7ecd_1175,
                0x2249_6a34_3a5e_9c00
            ],
            "{hashes:x?}"
        );
        assert_eq!(
            stable_hash(b""),
            0xf52a_15e9_a9b5_e89b,
            "{:x}",
            stable_hash(b"")
        );
    }

    #[test]
    fn run_keys_are_distinct_and_sorted_per_bucket() {
        let schema = Schema::new(vec![
            Field::new("__key_0", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]);
        let format = KeyFormat::new(&schema).unwrap();
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(5),
            Some(3),
            None,
            Some(5),
            Some(-1),
            Some(40),
        ]));
        let columns = [ids];
        let keys = RunKeys::new(&format, [&columns[..]], 4).unwrap();
        let mut all = 0;
        for bucket in 0..4 {
            let rows = keys.of_bucket(bucket);
            assert!(rows.windows(2).all(|w| w[0] < w[1]));
            for row in &rows {
                assert_eq!(bucket_of(row.data(), 4), bucket);
            }
            all += rows.len();
        }
        assert_eq!(all, 4, "5, 3, -1 and 40; the null key matches nothing");
    }

    #[test]
    fn a_sorted_batch_matches_exactly_the_keys_asked_for() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__key_0", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]));
        let format = KeyFormat::new(&schema).unwrap();
        let state = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![2, 4, 6, 8, 10])),
                Arc::new(Int64Array::from(vec![20, 40, 60, 80, 100])),
            ],
        )
        .unwrap();
        let asked = |keys: &[i64]| {
            let column: ArrayRef = Arc::new(Int64Array::from(keys.to_vec()));
            let rows = format.key_rows(&[column]).unwrap();
            let order: Vec<u32> = (0..rows.num_rows() as u32).collect();
            let keys = BucketKeys {
                rows: &rows,
                order: &order,
            };
            let matches = format.sorted_matches(state.columns(), keys).unwrap();
            let kept = filter_record_batch(&state, &matches).unwrap();
            let ordering = kept.column(1).as_any().downcast_ref::<Int64Array>();
            ordering.unwrap().values().to_vec()
        };
        assert_eq!(asked(&[-1, 2, 3, 8, 10, 11]), vec![20, 80, 100]);
        assert_eq!(asked(&[4, 5, 6, 7]), vec![40, 60]);
        assert!(asked(&[1, 3, 5, 7, 9, 12]).is_empty());
        assert!(asked(&[]).is_empty());
    }
}
