//! Nakadi: cursors, stream framing and the sources of batches.
//!
//! Every source yields the same [`Batch`]es, framed from Nakadi's stream lines,
//! so that everything downstream of the source is shared.

pub mod cursor;
pub mod framing;
pub mod recorded;

use std::collections::BTreeMap;

use futures::stream::BoxStream;

pub use cursor::{Cursor, Offset, partition_cmp};
pub use framing::{Batch, FramingError};
pub use recorded::RecordedSource;

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

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read recorded batches {path}: {source}")]
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
    #[error("no recorded batches found at {0}")]
    NoRecordings(String),
    #[error("partition {partition}: {message}")]
    Partition { partition: String, message: String },
}

/// Where a run's batches come from.
pub enum Source {
    Recorded(RecordedSource),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Recorded(r) => format!("recorded batches at {}", r.root().display()),
        }
    }

    /// The partitions of the event type and their offsets now.
    pub async fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        match self {
            Source::Recorded(r) => r.partitions().await,
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
        }
    }
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
