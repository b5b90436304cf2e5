//! File formats: how a data file's record batches become its bytes.
//!
//! Each format is one file here behind [`Encoder`]; the writer above them
//! ([`super::FileWriter`]) buffers, uploads and hashes the bytes whatever the
//! format. A new format is a new file implementing [`Encoder`], a name in
//! `[output] format` and one line in [`encoder`] and [`extension`].

mod csv;
mod csv_cells;
mod parquet;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::config::{Format, OutputSettings};

pub use csv_cells::{CsvEncoder, CsvError};

/// Why rows cannot be encoded; the writer names the file.
pub type EncodeError = Box<dyn std::error::Error + Send + Sync>;

/// One file's encoding, from its first bytes to its last.
pub trait Encoder: Send {
    /// Appends the bytes that open the file (a CSV header) to `out`.
    fn begin(&mut self, _schema: &SchemaRef, _out: &mut Vec<u8>) -> Result<(), EncodeError> {
        Ok(())
    }

    /// Encodes `batch`, appending to `out` the bytes that are ready (an
    /// encoder may hold some back: a compressor, a Parquet row group).
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Appends what is held back and what closes the file to `out`.
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// The encoder of a topic's data files.
pub fn encoder(
    output: &OutputSettings,
    schema: &SchemaRef,
) -> Result<Box<dyn Encoder>, EncodeError> {
    Ok(match output.format {
        Format::Csv => Box::new(csv::CsvFile::new(&output.csv)?),
        Format::Parquet => Box::new(parquet::ParquetFile::new(&output.parquet, schema)?),
    })
}

/// The file name extension of a topic's data files.
pub fn extension(output: &OutputSettings) -> &'static str {
    match output.format {
        Format::Csv => csv::extension(&output.csv),
        Format::Parquet => "parquet",
    }
}
