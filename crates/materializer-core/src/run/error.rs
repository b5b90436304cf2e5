//! How a run fails: a [`RunError`] names the topic once and keeps the
//! [`RunFailure`] that ended the run, with its sources.

use datafusion::common::DataFusionError;

use crate::commit::LedgerError;
use crate::decode::DecodeError;
use crate::error::ErrorClass;
use crate::mapping::MappingError;
use crate::sink::SinkError;
use crate::source::{Offset, SourceError};
use crate::state::KeyStateError;

/// Why the events' classes could not be kept until their partition is mapped.
#[derive(Debug, thiserror::Error)]
pub enum ClassesError {
    #[error("cannot create a spill file for the events' classes")]
    Create(#[source] DataFusionError),
    #[error("writing the events' classes to {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the events' classes back from {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the events' classes in {path} are out of order or cut short")]
    Corrupt { path: String },
    #[error("a class was decided for event {event} of a partition of {events} events")]
    PastTheEnd { event: u64, events: u64 },
}

/// A run of a topic that failed.
#[derive(Debug, thiserror::Error)]
#[error("topic {topic}")]
pub struct RunError {
    topic: String,
    #[source]
    failure: RunFailure,
}

impl RunError {
    pub fn new(topic: impl Into<String>, failure: RunFailure) -> RunError {
        RunError {
            topic: topic.into(),
            failure,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn failure(&self) -> &RunFailure {
        &self.failure
    }

    pub fn class(&self) -> ErrorClass {
        self.failure.class()
    }
}

/// What ended a run.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("already running in this process")]
    AlreadyRunning,
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(
        "the source ended before partition {partition} reached offset {end} (last offset read: {reached})"
    )]
    SourceEnded {
        partition: String,
        reached: Offset,
        end: Offset,
    },
    #[error("partition {partition}")]
    Decode {
        partition: String,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("partition {partition}: the query failed")]
    Query {
        partition: String,
        #[source]
        source: DataFusionError,
    },
    /// The query failed on an event: where and on which.
    #[error(transparent)]
    QueryFailed(crate::mapping::QueryFailure),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("run stopped before its commit; nothing of it is visible and the next run redoes it")]
    Stopped,
    #[error(
        "run {sequence} is committed (its files are visible), but its cursors could not be committed \
         to the Nakadi subscription; the next run commits them before it reads"
    )]
    CursorCommit {
        sequence: u64,
        #[source]
        source: SourceError,
    },
    #[error(transparent)]
    KeyState(#[from] KeyStateError),
    #[error("keeping the events' classes until they are mapped")]
    Classes(#[from] ClassesError),
    #[error("the delete predicate does not plan over the events")]
    Deletes(#[source] DataFusionError),
    #[error("an internal task failed")]
    Internal(#[source] tokio::task::JoinError),
    /// The workers of a cluster failed, or cannot take the run.
    #[error(transparent)]
    Remote(super::remote::RemoteFailure),
}

impl RunFailure {
    /// A broken invariant of the run's own bookkeeping.
    pub(crate) fn invariant(message: impl Into<String>) -> RunFailure {
        RunFailure::KeyState(KeyStateError::Arrow(
            arrow::error::ArrowError::InvalidArgumentError(message.into()),
        ))
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            RunFailure::AlreadyRunning => ErrorClass::Conflict,
            RunFailure::Source(e) | RunFailure::CursorCommit { source: e, .. } => e.class(),
            RunFailure::SourceEnded { .. } => ErrorClass::SourceUnavailable,
            RunFailure::Decode { source, .. } => source.class(),
            RunFailure::Mapping(e) => e.class(),
            RunFailure::Query { .. } | RunFailure::QueryFailed(_) => ErrorClass::Data,
            RunFailure::Sink(e) => e.class(),
            RunFailure::Ledger(e) => e.class(),
            RunFailure::Stopped => ErrorClass::Stopped,
            RunFailure::KeyState(e) => e.class(),
            RunFailure::Classes(_) => ErrorClass::Internal,
            RunFailure::Deletes(_) => ErrorClass::Config,
            RunFailure::Internal(_) => ErrorClass::Internal,
            RunFailure::Remote(e) => e.class,
        }
    }
}
