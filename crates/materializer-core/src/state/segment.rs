//! A segment: one Parquet file of a bucket, its rows sorted by key, each key
//! once. Row groups are cut at a fixed number of rows and the footer records
//! each group's first and last key (in the row format), so that a run reads
//! only the groups whose range holds one of its keys.

use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::Row;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions, RowFilter};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::KeyStateError;
use super::bucket::{KeyFormat, RunKeys};
use crate::sink::ObjectWriter;

/// Rows per row group: the unit a run reads. Small enough that a run with
/// few keys skips most of a large segment, large enough that the footer
/// stays small (a few bytes per thousand keys).
pub const ROW_GROUP_ROWS: usize = 16 * 1024;
/// Rows per batch when a segment is read.
const READ_BATCH_ROWS: usize = 16 * 1024;
/// Footer key holding the row groups' key ranges.
const KEY_RANGES: &str = "materializer.key_ranges";

/// A segment as stored.
pub struct WrittenSegment {
    pub path: Path,
    pub keys: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Writes a segment from batches given in key order.
pub struct SegmentWriter {
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    object: ObjectWriter,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Per row group written: first and last key, hex.
    ranges: Vec<(String, String)>,
    keys: u64,
    group_rows: usize,
}

impl SegmentWriter {
    pub fn create(
        store: Arc<dyn ObjectStore>,
        path: Path,
        schema: SchemaRef,
        group_rows: usize,
    ) -> Result<SegmentWriter, KeyStateError> {
        let group_rows = group_rows.max(1);
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(group_rows))
            .set_created_by(format!("materializer {}", env!("CARGO_PKG_VERSION")));
        let parts = schema.fields().len().saturating_sub(1);
        for field in schema.fields().iter().take(parts) {
            if let Some((encoding, compression)) = sorted_key_encoding(field.data_type()) {
                let column = ColumnPath::from(field.name().as_str());
                properties = properties
                    .set_column_dictionary_enabled(column.clone(), false)
                    .set_column_encoding(column.clone(), encoding)
                    .set_column_compression(column, compression);
            }
        }
        let properties = properties.build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties)).map_err(
            |source| KeyStateError::Encode {
                path: path.to_string(),
                source,
            },
        )?;
        Ok(SegmentWriter {
            schema,
            writer,
            object: ObjectWriter::new(store, path),
            pending: Vec::new(),
            pending_rows: 0,
            ranges: Vec::new(),
            keys: 0,
            group_rows,
        })
    }

    fn path(&self) -> String {
        self.object.path().to_string()
    }

    /// Adds rows that follow, in key order, those written before.
    pub async fn write(
        &mut self,
        format: &KeyFormat,
        batch: RecordBatch,
    ) -> Result<(), KeyStateError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        let n = self.group_rows;
        while self.pending_rows >= n {
            let all = concat_batches(&self.schema, &self.pending)?;
            let rest = all.slice(n, all.num_rows() - n);
            self.pending_rows = rest.num_rows();
            self.pending = vec![rest];
            self.write_group(format, all.slice(0, n)).await?;
        }
        Ok(())
    }

    async fn write_group(
        &mut self,
        format: &KeyFormat,
        group: RecordBatch,
    ) -> Result<(), KeyStateError> {
        let n = group.num_rows();
        let ends = concat_batches(&self.schema, &[group.slice(0, 1), group.slice(n - 1, 1)])?;
        let rows = format.key_rows(ends.columns())?;
        self.ranges.push((
            hex::encode(rows.row(0).data()),
            hex::encode(rows.row(1).data()),
        ));
        let path = self.path();
        let encode_error = |source| KeyStateError::Encode { path, source };
        self.writer
            .write(&group)
            .and_then(|()| self.writer.flush())
            .map_err(encode_error)?;
        self.keys += n as u64;
        let encoded = std::mem::take(self.writer.inner_mut());
        self.upload(&encoded).await
    }

    async fn upload(&mut self, bytes: &[u8]) -> Result<(), KeyStateError> {
        let path = self.path();
        self.object
            .write(bytes)
            .await
            .map_err(|source| KeyStateError::Write { path, source })
    }

    /// Writes the last row group and the footer.
    pub async fn finish(mut self, format: &KeyFormat) -> Result<WrittenSegment, KeyStateError> {
        let rest = std::mem::take(&mut self.pending);
        if self.pending_rows > 0 {
            let last = concat_batches(&self.schema, &rest)?;
            self.write_group(format, last).await?;
        }
        let ranges = serde_json::to_string(&self.ranges).expect("strings serialize");
        self.writer
            .append_key_value_metadata(KeyValue::new(KEY_RANGES.to_string(), ranges));
        let path = self.path();
        let tail = self
            .writer
            .into_inner()
            .map_err(|source| KeyStateError::Encode {
                path: path.clone(),
                source,
            })?;
        self.object
            .write(&tail)
            .await
            .map_err(|source| KeyStateError::Write {
                path: path.clone(),
                source,
            })?;
        let written_path = self.object.path().clone();
        let (bytes, sha256) = self
            .object
            .finish()
            .await
            .map_err(|source| KeyStateError::Write { path, source })?;
        Ok(WrittenSegment {
            path: written_path,
            keys: self.keys,
            bytes,
            sha256,
        })
    }
}

/// How a key column of a segment is stored, for the types a better choice
/// than the default (a dictionary, then zstd) is known for. Keys are sorted
/// and distinct, so a dictionary never pays: integers are stored as the
/// deltas between neighbours, bit-packed (a few bits per key, decoded
/// without a decompressor, which is most of a lookup's time on a large
/// state), strings as the suffix each adds to its neighbour, then zstd.
fn sorted_key_encoding(data_type: &DataType) -> Option<(Encoding, Compression)> {
    use DataType::*;
    match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Date32 | Date64
        | Timestamp(..) | Time32(_) | Time64(_) => {
            Some((Encoding::DELTA_BINARY_PACKED, Compression::UNCOMPRESSED))
        }
        Utf8 | LargeUtf8 | Binary | LargeBinary => Some((
            Encoding::DELTA_BYTE_ARRAY,
            Compression::ZSTD(ZstdLevel::default()),
        )),
        _ => None,
    }
}

/// A stored file as the Parquet reader asks for it: byte ranges and the footer.
struct StoredFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    bytes: u64,
}

impl AsyncFileReader for StoredFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let bytes = self.bytes;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, bytes)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The Parquet reader of a stored file of the key state.
async fn open(
    store: Arc<dyn ObjectStore>,
    path: &Path,
    bytes: u64,
) -> Result<ParquetRecordBatchStreamBuilder<StoredFile>, KeyStateError> {
    let reader = StoredFile {
        store,
        path: path.clone(),
        bytes,
    };
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map(|builder| builder.with_batch_size(READ_BATCH_ROWS))
        .map_err(|source| KeyStateError::Read {
            path: path.to_string(),
            source,
        })
}

/// Every row of a stored file of the key state, in its order, with the
/// state's schema.
pub async fn read_all(
    store: Arc<dyn ObjectStore>,
    path: Path,
    bytes: u64,
    schema: SchemaRef,
) -> Result<BoxStream<'static, Result<RecordBatch, KeyStateError>>, KeyStateError> {
    let name = path.to_string();
    let stream =
        open(store, &path, bytes)
            .await?
            .build()
            .map_err(|source| KeyStateError::Read {
                path: name.clone(),
                source,
            })?;
    Ok(stream
        .map(move |batch| {
            let batch = batch.map_err(|source| KeyStateError::Read {
                path: name.clone(),
                source,
            })?;
            Ok(batch.with_schema(schema.clone())?)
        })
        .boxed())
}

/// The rows of a segment of `bucket` whose key is one of the run's `keys`
/// in that bucket. Only the row groups whose key range holds one are read,
/// and in those only the key columns are decoded whole: the ordering key is
/// decoded for the rows that match. Owns what it needs, so that segments are
/// read on several threads at once.
pub async fn read_matching(
    store: Arc<dyn ObjectStore>,
    path: Path,
    bytes: u64,
    schema: SchemaRef,
    keys: Arc<RunKeys>,
    bucket: u32,
) -> Result<Vec<RecordBatch>, KeyStateError> {
    let path = &path;
    let builder = open(store, path, bytes).await?;
    let ranges = key_ranges(&builder, path)?;
    let groups = groups_holding(&ranges, &keys.of_bucket(bucket));
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let format = KeyFormat::new(&schema)?;
    let key_parts = schema.fields().len().saturating_sub(1);
    let key_columns = ProjectionMask::roots(builder.parquet_schema(), 0..key_parts);
    let matches = ArrowPredicateFn::new(key_columns, move |batch: RecordBatch| {
        format.sorted_matches(batch.columns(), keys.bucket(bucket))
    });
    let read_error = |source| KeyStateError::Read {
        path: path.to_string(),
        source,
    };
    let mut stream = builder
        .with_row_groups(groups)
        .with_row_filter(RowFilter::new(vec![Box::new(matches)]))
        .build()
        .map_err(read_error)?;
    let mut found = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(read_error)? {
        if batch.num_rows() > 0 {
            found.push(batch.with_schema(schema.clone())?);
        }
    }
    Ok(found)
}

/// The row groups, given by their first and last keys, that may hold one of
/// `keys` (sorted).
fn groups_holding(ranges: &[(Vec<u8>, Vec<u8>)], keys: &[Row<'_>]) -> Vec<usize> {
    ranges
        .iter()
        .enumerate()
        .filter(|(_, (first, last))| {
            // The first key not before the group's first key, if it is not
            // after its last one, is inside the group.
            let at = keys.partition_point(|k| k.data() < first.as_slice());
            keys.get(at).is_some_and(|k| k.data() <= last.as_slice())
        })
        .map(|(i, _)| i)
        .collect()
}

/// The first and last key of each row group, from the footer.
fn key_ranges(
    builder: &ParquetRecordBatchStreamBuilder<StoredFile>,
    path: &Path,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KeyStateError> {
    let corrupt = || KeyStateError::Corrupt {
        path: path.to_string(),
    };
    let text = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == KEY_RANGES))
        .and_then(|kv| kv.value.as_deref())
        .ok_or_else(corrupt)?;
    let ranges: Vec<(String, String)> = serde_json::from_str(text).map_err(|_| corrupt())?;
    if ranges.len() != builder.metadata().num_row_groups() {
        return Err(corrupt());
    }
    ranges
        .into_iter()
        .map(|(first, last)| Ok((hex::decode(first)?, hex::decode(last)?)))
        .collect::<Result<_, hex::FromHexError>>()
        .map_err(|_| corrupt())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn only_the_groups_whose_range_holds_a_key_are_read() {
        let schema = Schema::new(vec![
            Field::new("__key_0", DataType::Int64, true),
            Field::new("__ordering", DataType::Int64, true),
        ]);
        let format = KeyFormat::new(&schema).unwrap();
        let rows = |values: &[i64]| {
            let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
            format.key_rows(&[column]).unwrap()
        };
        // Groups [0, 9], [10, 19], [20, 29], [40, 49]
        let bounds = rows(&[0, 9, 10, 19, 20, 29, 40, 49]);
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
            .map(|g| {
                (
                    bounds.row(2 * g).data().to_vec(),
                    bounds.row(2 * g + 1).data().to_vec(),
                )
            })
            .collect();
        let keys = rows(&[-5, 9, 35, 40, 60]);
        let keys: Vec<Row<'_>> = keys.iter().collect();
        assert_eq!(groups_holding(&ranges, &keys), vec![0, 3]);
        let between = rows(&[30, 31]);
        let between: Vec<Row<'_>> = between.iter().collect();
        assert!(groups_holding(&ranges, &between).is_empty());
    }
}
