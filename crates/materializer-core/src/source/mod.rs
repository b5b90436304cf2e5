//! Source: where a run's batches come from, a live Nakadi or recorded stream
//! lines, and the cursors that say how far a run reads.
//!
//! Every source yields the same [`Batch`]es, framed from Nakadi's stream lines,
//! so that everything downstream of the source is shared.

pub mod cursor;
pub mod files;
pub mod framing;
pub(crate) mod lines;
pub mod nakadi;
pub mod record;
pub mod recorded;
pub(crate) mod scan;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;

use futures::stream::BoxStream;

use crate::error::ErrorClass;

pub use cursor::{Cursor, Offset, OffsetSteps, partition_cmp};
pub use files::FileKind;
pub use framing::{Batch, FramingError};
pub use nakadi::{
    NakadiClient, NakadiError, NakadiSettings, NakadiSource, ReadFrom, SubscriptionReader,
    SubscriptionSettings, TokenSource,
};
pub use recorded::{RecordedFile, RecordedSource, RecordingExtent};

/// A partition of an event type and the offsets it holds now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionInfo {
    pub partition: String,
    pub oldest_available_offset: Offset,
    pub newest_available_offset: Offset,
}

/// What one run reads of one partition: after `start` up to and including `end`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionRange {
    pub partition: String,
    pub start: Offset,
    pub end: Offset,
}

impl PartitionRange {
    pub fn is_empty(&self) -> bool {
        !self.end.is_after(&self.start)
    }
}

/// How far a run got in one partition of its plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reached {
    pub partition: String,
    /// The last offset read (the start cursor when nothing was read).
    pub at: Offset,
    pub end: Offset,
}

impl fmt::Display for Reached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {} read to {}, its plan ends at {}",
            self.partition, self.at, self.end
        )
    }
}

/// The partitions a run did not read to their end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished(pub Vec<Reached>);

impl fmt::Display for Unfinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reached) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reached}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the source {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Recorded {
        path: String,
        line: u64,
        message: String,
    },
    #[error(
        "no event files in the folder {0}: a source folder holds *.jsonl, *.ndjson or *.json \
         files, of events (one JSON event per line) or of recorded Nakadi batches"
    )]
    NoRecordings(String),
    #[error(
        "{path} holds {now} bytes, but the run was planned when it held {planned}: a recording may \
         grow between runs, but what a run planned to read must stay as it was"
    )]
    RecordingShrank {
        path: String,
        planned: u64,
        now: u64,
    },
    #[error("partition {partition}: {message}")]
    Partition { partition: String, message: String },
    #[error(transparent)]
    Nakadi(#[from] NakadiError),
    #[error("partition {partition}")]
    NakadiPartition {
        partition: String,
        #[source]
        source: NakadiError,
    },
    #[error(
        "cursor expired: partition {partition}: the last committed run ended at offset {committed}, but the \
         oldest event Nakadi still holds is {oldest}; the events in between were deleted before they were read"
    )]
    Expired {
        partition: String,
        committed: Offset,
        oldest: Offset,
    },
    #[error(
        "subscription {subscription} has committed offset {subscription_offset} of partition {partition}, \
         beyond the last committed run's {committed_offset}: the events in between were never materialized. \
         Reset the subscription's cursors (PATCH /subscriptions/{subscription}/cursors) to the run's"
    )]
    SubscriptionAhead {
        subscription: String,
        partition: String,
        subscription_offset: Offset,
        committed_offset: Offset,
    },
    #[error(
        "subscription {subscription}: no progress in {streams} streams in a row: {unfinished}; the run \
         commits nothing and the next run reads its plan again"
    )]
    NoProgress {
        subscription: String,
        /// Streams (or attempts to open one) since the last that took a partition further.
        streams: u32,
        unfinished: Unfinished,
        /// What ended the last of them.
        #[source]
        last: NakadiError,
    },
}

impl SourceError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::Config
            }
            SourceError::Io { .. } => ErrorClass::SourceUnavailable,
            SourceError::NoRecordings(_) => ErrorClass::Config,
            SourceError::Recorded { .. }
            | SourceError::Partition { .. }
            | SourceError::Expired { .. }
            | SourceError::RecordingShrank { .. }
            | SourceError::SubscriptionAhead { .. } => ErrorClass::Data,
            SourceError::Nakadi(e)
            | SourceError::NakadiPartition { source: e, .. }
            | SourceError::NoProgress { last: e, .. } => e.class(),
        }
    }
}

/// Where a run's batches come from.
pub enum Source {
    Recorded(RecordedSource),
    Nakadi(NakadiSource),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Recorded(r) => format!("the files at {}", r.root().display()),
            Source::Nakadi(n) => match &n.subscription {
                None => format!(
                    "Nakadi {} (cursors), event type {}",
                    n.client.settings.url, n.event_type
                ),
                Some(s) => format!("Nakadi {}, {}", n.client.settings.url, s.describe()),
            },
        }
    }

    /// Gets ready for a run after the committed cursors `committed`: a
    /// subscription is found or created and brought to those cursors.
    pub async fn prepare(&self, committed: &BTreeMap<String, Offset>) -> Result<(), SourceError> {
        match self {
            Source::Nakadi(NakadiSource {
                subscription: Some(s),
                ..
            }) => s.recover(committed).await,
            _ => Ok(()),
        }
    }

    /// A recording's files and their sizes now (`None` for Nakadi): what a
    /// run of a recording plans to read, instead of end cursors that only a
    /// pass over the files would find.
    pub fn recording_extent(&self) -> Result<Option<RecordingExtent>, SourceError> {
        match self {
            Source::Recorded(r) => r.extent().map(Some),
            Source::Nakadi(_) => Ok(None),
        }
    }

    /// Batches of the given partitions, each from after its start cursor on.
    /// Batches may reach past a range's end; the run trims them.
    pub fn stream(
        &self,
        ranges: &[PartitionRange],
    ) -> BoxStream<'static, Result<Batch, SourceError>> {
        match self {
            Source::Recorded(r) => r.stream(ranges),
            Source::Nakadi(n) => match &n.subscription {
                None => nakadi::lowlevel::stream(n.client.clone(), n.event_type.clone(), ranges),
                Some(s) => s.stream(ranges),
            },
        }
    }

    /// After a run's manifest: tells the source the run's end cursors are done
    /// (a subscription commits them).
    pub async fn commit(&self, ends: &BTreeMap<String, Offset>) -> Result<(), SourceError> {
        match self {
            Source::Nakadi(NakadiSource {
                subscription: Some(s),
                ..
            }) => s.commit(ends).await,
            _ => Ok(()),
        }
    }

    /// Retries the source needed so far.
    pub fn retries(&self) -> u64 {
        match self {
            Source::Recorded(_) => 0,
            Source::Nakadi(n) => n.client.retries.load(Ordering::Relaxed),
        }
    }
}

/// Refuses to start a partition from a cursor Nakadi no longer holds.
pub fn check_available(
    partitions: &[PartitionInfo],
    committed: &BTreeMap<String, Offset>,
) -> Result<(), SourceError> {
    for p in partitions {
        let Some(start) = committed.get(&p.partition) else {
            continue;
        };
        if start.is_begin() || p.oldest_available_offset.is_begin() {
            continue;
        }
        // Nakadi accepts cursors from the offset before the oldest event on.
        let floor = p
            .oldest_available_offset
            .minus(1)
            .unwrap_or_else(Offset::begin);
        if floor.is_after(start) {
            return Err(SourceError::Expired {
                partition: p.partition.clone(),
                committed: start.clone(),
                oldest: p.oldest_available_offset.clone(),
            });
        }
    }
    Ok(())
}

/// Start cursors for a run: committed end cursors, `BEGIN` for partitions never read.
pub fn plan_ranges(
    partitions: &[PartitionInfo],
    committed: &BTreeMap<String, Offset>,
) -> Vec<PartitionRange> {
    let mut ranges: Vec<PartitionRange> = partitions
        .iter()
        .map(|p| PartitionRange {
            partition: p.partition.clone(),
            start: committed
                .get(&p.partition)
                .cloned()
                .unwrap_or_else(Offset::begin),
            end: p.newest_available_offset.clone(),
        })
        .collect();
    ranges.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
    ranges
}
