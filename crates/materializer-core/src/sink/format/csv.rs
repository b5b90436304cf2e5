//! CSV files: rows encoded by [`CsvEncoder`], optionally compressed (gzip or
//! zstd) as a whole stream.

use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::csv_cells::CsvEncoder;
use super::{EncodeError, Encoder};
use crate::config::{CsvCompression, CsvOptions};

/// Plain CSV collected before it goes through the compressor: larger
/// chunks compress faster.
const COMPRESS_BYTES: usize = 1 << 20;

/// The file name extension of CSV files with these options.
pub fn extension(options: &CsvOptions) -> &'static str {
    match options.compression {
        CsvCompression::None => "csv",
        CsvCompression::Gzip => "csv.gz",
        CsvCompression::Zstd => "csv.zst",
    }
}

enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    fn new(compression: CsvCompression) -> Result<Option<Compressor>, EncodeError> {
        Ok(match compression {
            CsvCompression::None => None,
            CsvCompression::Gzip => Some(Compressor::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            CsvCompression::Zstd => Some(Compressor::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                3,
            )?)),
        })
    }

    /// Compresses `plain`, appending the compressed bytes ready to `out`.
    fn compress(&mut self, plain: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let compressed = match self {
            Compressor::Gzip(z) => {
                z.write_all(plain)?;
                z.get_mut()
            }
            Compressor::Zstd(z) => {
                z.write_all(plain)?;
                z.get_mut()
            }
        };
        out.append(compressed);
        Ok(())
    }

    /// Ends the stream, appending its last bytes to `out`.
    fn finish(self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let tail = match self {
            Compressor::Gzip(z) => z.finish()?,
            Compressor::Zstd(z) => z.finish()?,
        };
        out.extend_from_slice(&tail);
        Ok(())
    }
}

/// A CSV file being written.
pub struct CsvFile {
    encoder: CsvEncoder,
    compressor: Option<Compressor>,
    /// Plain CSV waiting for the compressor (unused without compression:
    /// rows are encoded straight into the file's bytes).
    plain: Vec<u8>,
}

impl CsvFile {
    pub fn new(options: &CsvOptions) -> Result<CsvFile, EncodeError> {
        Ok(CsvFile {
            encoder: CsvEncoder::new(options)?,
            compressor: Compressor::new(options.compression)?,
            plain: Vec::new(),
        })
    }

    /// Hands the waiting plain CSV to the compressor once there is enough.
    fn compress_when_full(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(compressor) = &mut self.compressor
            && self.plain.len() >= COMPRESS_BYTES
        {
            compressor.compress(&self.plain, out)?;
            self.plain.clear();
        }
        Ok(())
    }
}

impl Encoder for CsvFile {
    fn begin(&mut self, schema: &SchemaRef, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Plain CSV goes to the file's bytes, or to the compressor's input.
        let plain = match self.compressor {
            Some(_) => &mut self.plain,
            None => &mut *out,
        };
        self.encoder.header(schema, plain);
        self.compress_when_full(out)
    }

    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let plain = match self.compressor {
            Some(_) => &mut self.plain,
            None => &mut *out,
        };
        self.encoder.encode(batch, plain)?;
        self.compress_when_full(out)
    }

    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let CsvFile {
            compressor, plain, ..
        } = *self;
        if let Some(mut compressor) = compressor {
            compressor.compress(&plain, out)?;
            compressor.finish(out)?;
        }
        Ok(())
    }
}
