//! How a run fails.

use datafusion::common::DataFusionError;

use super::{KeyStateError, LedgerError};
use crate::decode::DecodeError;
use crate::mapping::MappingError;
use crate::sink::SinkError;
use crate::source::{Offset, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("topic {topic} is already running in this process")]
    AlreadyRunning { topic: String },
    #[error("topic {topic}: {source}")]
    Source {
        topic: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "topic {topic}: the source ended before partition {partition} reached offset {end} (last offset read: {reached})"
    )]
    SourceEnded {
        topic: String,
        partition: String,
        reached: Offset,
        end: Offset,
    },
    #[error("topic {topic}, partition {partition}: {source}")]
    Decode {
        topic: String,
        partition: String,
        #[source]
        source: DecodeError,
    },
    #[error("topic {topic}: {source}")]
    Mapping {
        topic: String,
        #[source]
        source: MappingError,
    },
    #[error("topic {topic}, partition {partition}: query failed: {source}")]
    Query {
        topic: String,
        partition: String,
        #[source]
        source: DataFusionError,
    },
    #[error("topic {topic}: {source}")]
    Sink {
        topic: String,
        #[source]
        source: SinkError,
    },
    #[error("topic {topic}: {source}")]
    Ledger {
        topic: String,
        #[source]
        source: LedgerError,
    },
    #[error(
        "topic {topic}: run stopped before its commit; nothing of it is visible and the next run redoes it"
    )]
    Stopped { topic: String },
    #[error(
        "topic {topic}: run {sequence} is committed (its files are visible), but committing its cursors to \
         the Nakadi subscription failed: {source}; the next run commits them before it reads"
    )]
    CursorCommit {
        topic: String,
        sequence: u64,
        #[source]
        source: SourceError,
    },
    #[error("topic {topic}: {source}")]
    KeyState {
        topic: String,
        #[source]
        source: KeyStateError,
    },
    #[error("topic {topic}: internal task failed: {message}")]
    Internal { topic: String, message: String },
}
