//! Decoding: Nakadi batches of one partition -> Arrow record batches.
//!
//! Events are decoded against the topic's schema in chunks, first by the
//! one-pass decoder in [`fast`]. A chunk it gives up on is decoded with
//! arrow-json, which reads the same rows but slower; a chunk that fails there
//! is split in halves until the failing events are alone; those go to the
//! partition's rejected list with a reason naming the field, its SQL type and
//! the value found ([`reason`]), and the rest of the
//! chunk decodes as usual. Events whose partitioning or ordering key
//! is null cannot be placed in a key's history and are rejected too. Every event
//! handed to the decoder is therefore either a row or a rejection.
//!
//! Each row gets the system columns `_partition`, `_offset` and `_seq` (the
//! arrival number within the partition in this run), or those of them the
//! events schema has: a run leaves out what its mapping does not read.
//!
//! The parts: [`partition`] is the decoder of one partition; [`events`] says
//! where each queued event sits and checks a batch's framing; [`keys`] holds
//! the key columns an event must have and where they go; [`slow`] is the
//! arrow-json road with the checks that guard it.

use arrow::error::ArrowError;

#[cfg(test)]
mod differential;
mod events;
mod fast;
mod keys;
mod partition;
mod reason;
mod slow;
mod spool;
#[cfg(test)]
mod tests;

pub use keys::{DELETED_COLUMN, KeySink, RequiredKeys, column_at_path};
pub use partition::{DecodedPartition, PartitionDecoder, Rejected, RowOffsets};
pub use slow::MAX_NESTING;
pub use spool::{Spool, SpoolCap, SpoolError, Spooled};

/// Rows per decoded record batch.
pub const DEFAULT_CHUNK_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot build a JSON decoder for the topic's schema")]
    Schema(#[source] ArrowError),
    #[error("cannot assemble decoded rows")]
    Assemble(#[source] ArrowError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{at}: {message}")]
    Framing { at: String, message: String },
    #[error("evaluating the delete predicate")]
    Deletes(#[source] datafusion::common::DataFusionError),
}

impl DecodeError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            DecodeError::Schema(_) => ErrorClass::Config,
            DecodeError::Assemble(_) | DecodeError::Spool(_) => ErrorClass::Internal,
            DecodeError::Framing { .. } | DecodeError::Deletes(_) => ErrorClass::Data,
        }
    }
}
