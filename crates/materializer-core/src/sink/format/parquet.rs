//! Parquet files: the Arrow types kept (timestamps with time zone, 64-bit
//! integers, decimals), compressed per `[output.parquet]`.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{EncodeError, Encoder};
use crate::config::{ParquetCompression, ParquetOptions};

/// A Parquet file being written; its bytes are handed on as the row groups
/// are completed.
pub struct ParquetFile {
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetFile {
    pub fn new(options: &ParquetOptions, schema: &SchemaRef) -> Result<ParquetFile, EncodeError> {
        let compression = match options.compression {
            ParquetCompression::None => Compression::UNCOMPRESSED,
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        };
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
            .set_created_by(format!("materializer {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?;
        Ok(ParquetFile { writer })
    }
}

impl Encoder for ParquetFile {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.writer.write(batch)?;
        out.append(self.writer.inner_mut());
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let rest = self.writer.into_inner()?;
        out.extend_from_slice(&rest);
        Ok(())
    }
}
