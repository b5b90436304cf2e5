//! The key state against a real store: lookups, segments, compaction.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};

use super::*;
use crate::sink::S3Settings;
use crate::test_support::Lcg;

type Key = (Option<String>, Option<i64>);

fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("__key_0", DataType::Utf8, true),
        Field::new("__key_1", DataType::Int64, true),
        Field::new("__ordering", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(Key, Option<i64>)]) -> RecordBatch {
    RecordBatch::try_new(
        state_schema(),
        vec![
            Arc::new(rows.iter().map(|r| r.0.0.clone()).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| r.0.1).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
        ],
    )
    .unwrap()
}

/// Keys from a small universe, sometimes with a null part.
fn key(rng: &mut Lcg) -> Key {
    let shop = (rng.below(30) != 0).then(|| format!("shop-{}", rng.below(4)));
    let id = (rng.below(30) != 0).then(|| rng.below(300) as i64);
    (shop, id)
}

/// Per key, the highest ordering key in `batches`.
fn highest(batches: &[RecordBatch]) -> HashMap<Key, i64> {
    let mut found = HashMap::new();
    for b in batches {
        let shops = b.column(0).as_string::<i32>();
        let ids = b.column(1).as_primitive::<Int64Type>();
        let ordering = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let key = (
                shops.is_valid(i).then(|| shops.value(i).to_string()),
                ids.is_valid(i).then(|| ids.value(i)),
            );
            if ordering.is_valid(i) {
                let best = found.entry(key).or_insert(i64::MIN);
                *best = (*best).max(ordering.value(i));
            }
        }
    }
    found
}

/// Many runs of random versions, committed and compacted: every lookup
/// finds, for the keys it asks for, the highest ordering key committed.
#[tokio::test]
async fn lookups_find_what_the_runs_committed() {
    let dir = tempfile::tempdir().unwrap();
    let location =
        OutputLocation::parse(&dir.path().display().to_string(), &S3Settings::default()).unwrap();
    let layout = TopicLayout::new(&location.prefix, "topic");
    let mut store = StateStore::with_schema(&location, &layout, state_schema());
    // Row groups of a few rows, so that lookups skip some.
    store.group_rows = 5;
    let mut rng = Lcg(7);
    let mut model: HashMap<Key, i64> = HashMap::new();
    let mut committed = CommittedState::Empty;
    let mut compacted = false;
    for sequence in 1..=40u64 {
        let n = 1 + rng.below(if sequence % 9 == 0 { 400 } else { 40 }) as usize;
        let versions: Vec<(Key, Option<i64>)> = (0..n)
            .map(|_| {
                (
                    key(&mut rng),
                    (rng.below(20) != 0).then(|| rng.below(50) as i64),
                )
            })
            .collect();
        let asked: Vec<(Key, Option<i64>)> = (0..60).map(|_| (key(&mut rng), None)).collect();
        let asked_batch = batch(&asked);
        let found = store
            .lookup(&committed, &[asked_batch.columns()])
            .await
            .unwrap();
        let expected: HashMap<Key, i64> = asked
            .iter()
            .filter(|(k, _)| k.0.is_some() && k.1.is_some())
            .filter_map(|(k, _)| model.get(k).map(|o| (k.clone(), *o)))
            .collect();
        assert_eq!(highest(&found.batches), expected, "run {sequence}");

        let index = store
            .commit(&committed, vec![batch(&versions)], sequence, "attempt")
            .await
            .unwrap();
        for (k, o) in &versions {
            if let (Some(o), (Some(_), Some(_))) = (o, k) {
                let best = model.entry(k.clone()).or_insert(i64::MIN);
                *best = (*best).max(*o);
            }
        }
        for bucket in 0..index.buckets {
            let segments = index.segments.iter().filter(|s| s.bucket == bucket).count();
            assert!(segments <= MAX_SEGMENTS, "run {sequence}: {segments}");
        }
        // A compaction leaves segments of earlier runs out of the index.
        if let CommittedState::Buckets(before) = &committed {
            compacted |= before.segments.iter().any(|s| !index.segments.contains(s));
        }
        committed = CommittedState::Buckets(index);
    }
    assert!(compacted);
}

fn segments_of(keys: &[u64]) -> Vec<Segment> {
    keys.iter()
        .map(|&keys| Segment {
            bucket: 0,
            path: String::new(),
            keys,
            bytes: 0,
            sha256: String::new(),
        })
        .collect()
}

/// Runs of equal size leave segments like the bits of a binary counter.
#[test]
fn compaction_carries_as_a_binary_counter() {
    let mut bucket: Vec<u64> = Vec::new();
    let mut rewritten = 0;
    for _ in 0..64 {
        let merged = merged_with(&segments_of(&bucket), 1);
        let keys = 1 + bucket.split_off(bucket.len() - merged).iter().sum::<u64>();
        rewritten += keys;
        bucket.push(keys);
        assert!(bucket.windows(2).all(|w| w[0] > w[1]), "{bucket:?}");
    }
    assert_eq!(bucket, vec![64]);
    // 64 keys written, each rewritten once per carry: 64 * (1 + log2 64) / 2 + ...
    assert!(rewritten <= 64 * 7, "{rewritten}");
    assert_eq!(merged_with(&segments_of(&[1000, 10]), 1), 0);
    assert_eq!(merged_with(&segments_of(&[1000, 10]), 10), 1);
    assert_eq!(merged_with(&segments_of(&[1000, 10]), 990), 2);
}

#[test]
fn too_many_segments_are_merged_whatever_their_sizes() {
    let many: Vec<u64> = (0..MAX_SEGMENTS as u64).map(|i| 1 << (20 - i)).collect();
    assert_eq!(merged_with(&segments_of(&many), 1), 1);
    assert_eq!(merged_with(&segments_of(&many[1..]), 1), 0);
}

#[test]
fn file_names_tell_their_run() {
    assert_eq!(written_by_run("0000000012-ab12.parquet"), Some(12));
    assert_eq!(written_by_run("keys-0000000003-ab12.parquet"), Some(3));
    assert_eq!(written_by_run("_SUCCESS"), None);
}
