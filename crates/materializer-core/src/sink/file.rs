//! Writing files to an object store: streamed (multipart past a few MiB), with
//! row count, byte count and SHA-256 of the bytes as stored.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::SinkError;
use super::csv::CsvEncoder;
use crate::config::{CsvCompression, Format, OutputSettings, ParquetCompression};

/// Bytes buffered before an upload turns multipart, and the size of each part.
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one file uploading at once.
const PARTS_IN_FLIGHT: usize = 2;
/// What an open file may hold in memory: the part being filled and those
/// uploading.
pub const OPEN_FILE_BYTES: usize = PART_BYTES * (1 + PARTS_IN_FLIGHT);
/// Encoded bytes collected before they are handed to the upload.
const FLUSH_BYTES: usize = 1 << 20;

/// A file as stored: what a manifest records of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: Path,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// `column=value` pairs of the output partition the file belongs to.
    pub output_partition: Vec<(String, String)>,
}

/// Streams bytes to one object and hashes them on the way.
pub struct ObjectWriter {
    path: Path,
    inner: BufWriter,
    hasher: Sha256,
    bytes: u64,
}

impl ObjectWriter {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> ObjectWriter {
        ObjectWriter {
            inner: BufWriter::with_capacity(store, path.clone(), PART_BYTES)
                .with_max_concurrency(PARTS_IN_FLIGHT),
            path,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        if data.is_empty() {
            return Ok(());
        }
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.inner
            .write_all(data)
            .await
            .map_err(|e| self.io_error(e))
    }

    /// Completes the upload; returns bytes and SHA-256 (hex).
    pub async fn finish(mut self) -> Result<(u64, String), SinkError> {
        self.inner.shutdown().await.map_err(|e| self.io_error(e))?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }

    /// Gives up the upload (a multipart upload is aborted, nothing appears).
    pub async fn abort(mut self) {
        let _ = self.inner.abort().await;
    }

    fn io_error(&self, e: std::io::Error) -> SinkError {
        SinkError::Upload {
            path: self.path.to_string(),
            source: e,
        }
    }
}

enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

enum Encoding {
    Csv {
        encoder: CsvEncoder,
        compressor: Option<Compressor>,
    },
    Parquet(Box<ArrowWriter<Vec<u8>>>),
}

/// One data file: CSV (optionally compressed) or Parquet.
pub struct FileWriter {
    object: ObjectWriter,
    encoding: Encoding,
    buffer: Vec<u8>,
    rows: u64,
    output_partition: Vec<(String, String)>,
}

/// The file name extension for a topic's data files.
pub fn data_extension(output: &OutputSettings) -> &'static str {
    match (output.format, output.csv.compression) {
        (Format::Parquet, _) => "parquet",
        (Format::Csv, CsvCompression::None) => "csv",
        (Format::Csv, CsvCompression::Gzip) => "csv.gz",
        (Format::Csv, CsvCompression::Zstd) => "csv.zst",
    }
}

impl FileWriter {
    pub fn create(
        store: Arc<dyn ObjectStore>,
        path: Path,
        schema: &SchemaRef,
        output: &OutputSettings,
        output_partition: Vec<(String, String)>,
    ) -> Result<FileWriter, SinkError> {
        let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError::Encode {
            path: path.to_string(),
            source,
        };
        let mut buffer = Vec::with_capacity(FLUSH_BYTES + (64 << 10));
        let encoding = match output.format {
            Format::Csv => {
                let encoder = CsvEncoder::new(&output.csv).map_err(|e| encode_error(e.into()))?;
                encoder.header(schema, &mut buffer);
                let compressor = match output.csv.compression {
                    CsvCompression::None => None,
                    CsvCompression::Gzip => Some(Compressor::Gzip(flate2::write::GzEncoder::new(
                        Vec::new(),
                        flate2::Compression::default(),
                    ))),
                    CsvCompression::Zstd => Some(Compressor::Zstd(
                        zstd::stream::write::Encoder::new(Vec::new(), 3)
                            .map_err(|e| encode_error(e.into()))?,
                    )),
                };
                Encoding::Csv {
                    encoder,
                    compressor,
                }
            }
            Format::Parquet => {
                let compression = match output.parquet.compression {
                    ParquetCompression::None => Compression::UNCOMPRESSED,
                    ParquetCompression::Snappy => Compression::SNAPPY,
                    ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
                };
                let properties = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(output.parquet.row_group_rows.max(1)))
                    .set_created_by(format!("materializer {}", env!("CARGO_PKG_VERSION")))
                    .build();
                let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
                    .map_err(|e| encode_error(e.into()))?;
                Encoding::Parquet(Box::new(writer))
            }
        };
        Ok(FileWriter {
            object: ObjectWriter::new(store, path),
            encoding,
            buffer,
            rows: 0,
            output_partition,
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.rows += batch.num_rows() as u64;
        let path = self.object.path().to_string();
        let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError::Encode {
            path: path.clone(),
            source,
        };
        match &mut self.encoding {
            Encoding::Csv { encoder, .. } => encoder
                .encode(batch, &mut self.buffer)
                .map_err(|e| encode_error(e.into()))?,
            Encoding::Parquet(writer) => {
                writer.write(batch).map_err(|e| encode_error(e.into()))?;
                self.buffer.append(writer.inner_mut());
            }
        }
        if self.buffer.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let path = self.object.path().to_string();
        let data = match &mut self.encoding {
            Encoding::Csv {
                compressor: Some(compressor),
                ..
            } => {
                let io = |e: std::io::Error| SinkError::Encode {
                    path: path.clone(),
                    source: e.into(),
                };
                match compressor {
                    Compressor::Gzip(z) => {
                        z.write_all(&self.buffer).map_err(io)?;
                        self.buffer.clear();
                        std::mem::take(z.get_mut())
                    }
                    Compressor::Zstd(z) => {
                        z.write_all(&self.buffer).map_err(io)?;
                        self.buffer.clear();
                        std::mem::take(z.get_mut())
                    }
                }
            }
            _ => std::mem::take(&mut self.buffer),
        };
        self.object.write(&data).await?;
        self.buffer = data;
        self.buffer.clear();
        Ok(())
    }

    pub async fn finish(mut self) -> Result<WrittenFile, SinkError> {
        let path = self.object.path().to_string();
        let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError::Encode {
            path: path.clone(),
            source,
        };
        let tail: Vec<u8> = match std::mem::replace(
            &mut self.encoding,
            Encoding::Csv {
                encoder: CsvEncoder::new(&Default::default())
                    .map_err(|e| encode_error(e.into()))?,
                compressor: None,
            },
        ) {
            Encoding::Csv {
                compressor: None, ..
            } => std::mem::take(&mut self.buffer),
            Encoding::Csv {
                compressor: Some(compressor),
                ..
            } => {
                let buffered = std::mem::take(&mut self.buffer);
                let finished = match compressor {
                    Compressor::Gzip(mut z) => z.write_all(&buffered).and_then(|_| z.finish()),
                    Compressor::Zstd(mut z) => z.write_all(&buffered).and_then(|_| z.finish()),
                };
                finished.map_err(|e| encode_error(e.into()))?
            }
            Encoding::Parquet(writer) => {
                let mut tail = std::mem::take(&mut self.buffer);
                let rest = writer.into_inner().map_err(|e| encode_error(e.into()))?;
                tail.extend_from_slice(&rest);
                tail
            }
        };
        self.object.write(&tail).await?;
        let path = self.object.path().clone();
        let (bytes, sha256) = self.object.finish().await?;
        Ok(WrittenFile {
            path,
            rows: self.rows,
            bytes,
            sha256,
            output_partition: self.output_partition,
        })
    }

    pub async fn abort(self) {
        self.object.abort().await;
    }
}

/// Names the file of an output partition (`column=value` pairs).
pub type PathForPartition = Box<dyn Fn(&[(String, String)]) -> Path + Send + Sync>;

/// Writes a stream of rows to one file per output partition (one file in all
/// when the topic is not partitioned by columns).
pub struct PartitionedWriter {
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    output: OutputSettings,
    path_for: PathForPartition,
    columns: Vec<usize>,
    writers: BTreeMap<Vec<(String, String)>, FileWriter>,
}

/// Value used in a path for NULL, as Hive writes it.
pub const NULL_PARTITION_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

impl PartitionedWriter {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        schema: SchemaRef,
        output: &OutputSettings,
        path_for: PathForPartition,
    ) -> Result<PartitionedWriter, SinkError> {
        let columns = output
            .partition_by
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .map_err(|_| SinkError::PartitionColumn {
                        column: name.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut writer = PartitionedWriter {
            store,
            schema,
            output: output.clone(),
            path_for,
            columns,
            writers: BTreeMap::new(),
        };
        if writer.columns.is_empty() {
            // Unpartitioned output always has its file, even without rows.
            writer.writer_for(Vec::new())?;
        }
        Ok(writer)
    }

    fn writer_for(&mut self, key: Vec<(String, String)>) -> Result<&mut FileWriter, SinkError> {
        if !self.writers.contains_key(&key) {
            let path = (self.path_for)(&key);
            let writer = FileWriter::create(
                self.store.clone(),
                path,
                &self.schema,
                &self.output,
                key.clone(),
            )?;
            self.writers.insert(key.clone(), writer);
        }
        Ok(self.writers.get_mut(&key).expect("inserted above"))
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.columns.is_empty() {
            return self.writer_for(Vec::new())?.write(batch).await;
        }
        for (key, rows) in self.group_rows(batch)? {
            let indices = UInt32Array::from(rows);
            let part = take_record_batch(batch, &indices).map_err(|e| SinkError::Encode {
                path: String::new(),
                source: e.into(),
            })?;
            self.writer_for(key)?.write(&part).await?;
        }
        Ok(())
    }

    /// Row indices of `batch` per output partition, in first-seen order.
    fn group_rows(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(Vec<(String, String)>, Vec<u32>)>, SinkError> {
        let options = FormatOptions::default().with_null(NULL_PARTITION_VALUE);
        let arrays: Vec<&ArrayRef> = self.columns.iter().map(|&i| batch.column(i)).collect();
        let formatters = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SinkError::Encode {
                path: String::new(),
                source: e.into(),
            })?;
        let mut groups: Vec<(Vec<(String, String)>, Vec<u32>)> = Vec::new();
        let mut index: std::collections::HashMap<Vec<String>, usize> =
            std::collections::HashMap::new();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            let slot = *index.entry(values.clone()).or_insert_with(|| {
                let key = self
                    .columns
                    .iter()
                    .zip(&values)
                    .map(|(&c, v)| (self.schema.field(c).name().clone(), v.clone()))
                    .collect();
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(row as u32);
        }
        Ok(groups)
    }

    pub async fn finish(self) -> Result<Vec<WrittenFile>, SinkError> {
        let mut files = Vec::with_capacity(self.writers.len());
        let mut writers = self.writers.into_values();
        while let Some(writer) = writers.next() {
            match writer.finish().await {
                Ok(file) => files.push(file),
                Err(e) => {
                    for rest in writers {
                        rest.abort().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(files)
    }

    pub async fn abort(self) {
        for writer in self.writers.into_values() {
            writer.abort().await;
        }
    }
}
