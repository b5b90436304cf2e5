//! One data file: rows encoded in the topic's format ([`super::format`]),
//! streamed to the store with row count, byte count and SHA-256 of the bytes
//! as stored.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use object_store::path::Path;

use super::format::{self, EncodeError, Encoder};
use super::{ObjectWriter, SinkError};
use crate::config::OutputSettings;

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

/// One data file being written.
pub struct FileWriter {
    object: ObjectWriter,
    encoder: Box<dyn Encoder>,
    /// Encoded bytes waiting for the upload.
    buffer: Vec<u8>,
    rows: u64,
    output_partition: Vec<(String, String)>,
}

impl FileWriter {
    pub fn create(
        store: Arc<dyn ObjectStore>,
        path: Path,
        schema: &SchemaRef,
        output: &OutputSettings,
        output_partition: Vec<(String, String)>,
    ) -> Result<FileWriter, SinkError> {
        let mut buffer = Vec::with_capacity(FLUSH_BYTES + (64 << 10));
        let encoder = format::encoder(output, schema)
            .and_then(|mut encoder| {
                encoder.begin(schema, &mut buffer)?;
                Ok(encoder)
            })
            .map_err(|source| encode_error(&path, source))?;
        Ok(FileWriter {
            object: ObjectWriter::new(store, path),
            encoder,
            buffer,
            rows: 0,
            output_partition,
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.rows += batch.num_rows() as u64;
        self.encoder
            .encode(batch, &mut self.buffer)
            .map_err(|source| encode_error(self.object.path(), source))?;
        if self.buffer.len() >= FLUSH_BYTES {
            self.object.write(&self.buffer).await?;
            self.buffer.clear();
        }
        Ok(())
    }

    pub async fn finish(self) -> Result<WrittenFile, SinkError> {
        let FileWriter {
            mut object,
            encoder,
            mut buffer,
            rows,
            output_partition,
        } = self;
        encoder
            .finish(&mut buffer)
            .map_err(|source| encode_error(object.path(), source))?;
        object.write(&buffer).await?;
        let path = object.path().clone();
        let (bytes, sha256) = object.finish().await?;
        Ok(WrittenFile {
            path,
            rows,
            bytes,
            sha256,
            output_partition,
        })
    }

    pub async fn abort(self) {
        self.object.abort().await;
    }
}

fn encode_error(path: &Path, source: EncodeError) -> SinkError {
    SinkError::Encode {
        path: path.to_string(),
        source,
    }
}
