//! A key state written directly, without the runs that would have built it:
//! a benchmark (or a tool) that wants a topic with a hundred million keys
//! writes each bucket's segment from keys it generates, then names the
//! segments in a manifest's [`StateIndex`].
//!
//! The segment goes through the engine's own writer, so its row groups, key
//! ranges and checksum are those a run would write; the rows are checked to
//! be in key order, each key once, and all of the bucket.

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};

use super::bucket::{KeyFormat, bucket_of};
use super::{KeyStateError, Segment, StateStore};
use crate::sink::{OutputLocation, TopicLayout};

/// Writes `rows` as a segment of `bucket` of `topic`'s key state in
/// `location`, named as attempt `attempt` of run `sequence` names its
/// segments, and returns its entry for the manifest's [`StateIndex`].
///
/// `rows` have the key state's `schema` (key parts, then the ordering key),
/// sorted by key in the row format (for a non-negative integer key, its
/// numeric order), each key once, every key in `bucket` of
/// [`BUCKETS`](super::BUCKETS). A batch that breaks this fails the write.
pub async fn write_segment(
    location: &OutputLocation,
    topic: &str,
    schema: SchemaRef,
    bucket: u32,
    sequence: u64,
    attempt: &str,
    rows: impl Stream<Item = Result<RecordBatch, KeyStateError>> + Send + 'static,
) -> Result<Segment, KeyStateError> {
    let layout = TopicLayout::new(&location.prefix, topic);
    let store = StateStore::with_schema(location, &layout, schema.clone());
    let check = KeyFormat::new(&schema)?;
    let mut last: Option<Vec<u8>> = None;
    let checked = rows.map(move |batch| {
        let batch = batch?;
        let keys = check.key_rows(batch.columns())?;
        for key in keys.iter() {
            let key = key.data();
            if last.as_deref().is_some_and(|before| before >= key) {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "segment of bucket {bucket}: keys out of order or repeated"
                ))
                .into());
            }
            if bucket_of(key, super::BUCKETS) != bucket {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "segment of bucket {bucket}: a key of another bucket"
                ))
                .into());
            }
            last = Some(key.to_vec());
        }
        Ok(batch)
    });
    let format = KeyFormat::new(&schema)?;
    let path = store.segment_path(bucket, sequence, attempt);
    store
        .write(&format, bucket, path, vec![checked.boxed()])
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::sink::S3Settings;
    use crate::state::{CommittedState, StateIndex};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("__key_0", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]))
    }

    fn batch(keys: &[i64], version: i64) -> Result<RecordBatch, KeyStateError> {
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(keys.to_vec())),
                Arc::new(Int64Array::from(vec![version; keys.len()])),
            ],
        )?)
    }

    fn location(dir: &tempfile::TempDir) -> OutputLocation {
        OutputLocation::parse(&dir.path().display().to_string(), &S3Settings::default()).unwrap()
    }

    /// The keys 0..n of `bucket`, in order.
    fn keys_of(bucket: u32, n: i64) -> Vec<i64> {
        let format = KeyFormat::new(&schema()).unwrap();
        let all: arrow::array::ArrayRef = Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()));
        let rows = format.key_rows(&[all]).unwrap();
        (0..n)
            .filter(|&k| bucket_of(rows.row(k as usize).data(), super::super::BUCKETS) == bucket)
            .collect()
    }

    /// A generated state is found by a lookup as a committed one is.
    #[tokio::test]
    async fn a_lookup_finds_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let location = location(&dir);
        let mut segments = Vec::new();
        for bucket in 0..super::super::BUCKETS {
            let keys = keys_of(bucket, 2_000);
            let (low, high) = keys.split_at(keys.len() / 2);
            let rows = futures::stream::iter([batch(low, 3), batch(high, 3)]);
            let segment = write_segment(&location, "t", schema(), bucket, 1, "gen", rows)
                .await
                .unwrap();
            assert_eq!(segment.keys, keys.len() as u64);
            assert_eq!(
                segment.path,
                format!("_state/b{bucket:03}/0000000001-gen.parquet")
            );
            segments.push(segment);
        }
        let index = StateIndex {
            buckets: super::super::BUCKETS,
            segments,
        };
        assert_eq!(index.rows(), 2_000);
        let layout = TopicLayout::new(&location.prefix, "t");
        let store = StateStore::with_schema(&location, &layout, schema());
        let asked: arrow::array::ArrayRef = Arc::new(Int64Array::from(vec![5, 1_999, 2_000]));
        let found = store
            .lookup(&CommittedState::Buckets(index), &[&[asked.clone(), asked]])
            .await
            .unwrap();
        let rows: usize = found.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 2, "5 and 1999 are in the state, 2000 is not");
    }

    /// Sorted integer keys are stored as bit-packed deltas, which is what
    /// keeps a state of 100M keys small and quick to read.
    #[tokio::test]
    async fn integer_keys_are_stored_as_deltas() {
        use parquet::basic::{Compression, Encoding};
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let dir = tempfile::tempdir().unwrap();
        let location = location(&dir);
        let keys = keys_of(0, 20_000);
        let rows = futures::stream::iter([batch(&keys, 2)]);
        let segment = write_segment(&location, "t", schema(), 0, 1, "gen", rows)
            .await
            .unwrap();
        let file = find(dir.path(), segment.path.rsplit('/').next().unwrap()).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        let key = group.column(0);
        assert!(key.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
        assert!(!key.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
        assert_eq!(key.compression(), Compression::UNCOMPRESSED);
        assert!(
            key.compressed_size() < keys.len() as i64 * 2,
            "{} bytes for {} keys",
            key.compressed_size(),
            keys.len()
        );
    }

    /// The file named `name` under `dir`.
    fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = find(&path, name) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|n| n == name) {
                return Some(path);
            }
        }
        None
    }

    #[tokio::test]
    async fn keys_out_of_order_or_of_another_bucket_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let location = location(&dir);
        let keys = keys_of(0, 200);
        let mut reversed = keys.clone();
        reversed.reverse();
        let rows = futures::stream::iter([batch(&reversed, 1)]);
        assert!(
            write_segment(&location, "t", schema(), 0, 1, "gen", rows)
                .await
                .is_err()
        );
        let rows = futures::stream::iter([batch(&keys, 1)]);
        assert!(
            write_segment(&location, "t", schema(), 1, 1, "gen", rows)
                .await
                .is_err()
        );
    }
}
