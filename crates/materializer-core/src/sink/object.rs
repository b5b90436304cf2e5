//! Streaming bytes to one object of the store: multipart past a few MiB,
//! hashed on the way.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::SinkError;

/// Bytes buffered before an upload turns multipart, and the size of each part.
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one file uploading at once.
const PARTS_IN_FLIGHT: usize = 2;
/// What an open file may hold in memory: the part being filled and those
/// uploading.
pub const OPEN_FILE_BYTES: usize = PART_BYTES * (1 + PARTS_IN_FLIGHT);

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
