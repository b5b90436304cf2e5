//! What a commit records: a run's plan (its cursors, fixed before it reads)
//! and its manifest (cursors, files, counts and key state, written once).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Format, RunShape};
use crate::sink::FileKind;
use crate::source::{Offset, RecordingExtent, partition_cmp};
use crate::state::{CommittedState, StateFile, StateIndex};

/// Cursors of one partition in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCursors {
    pub partition: String,
    /// Exclusive: the run reads the events after it.
    pub start: Offset,
    /// Inclusive: the newest offset when the run was planned.
    pub end: Offset,
    /// Events the run read from this partition (manifests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
}

/// A run's cursors, fixed before it reads anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub topic: String,
    pub event_type: String,
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    /// Hash of the topic's configuration when the run was planned.
    pub fingerprint: String,
    /// The cursors. A plan of a recording holds its start cursors only (each
    /// `end` equals its `start`): the read finds the ends.
    pub partitions: Vec<PartitionCursors>,
    /// A recording's files and sizes to read, instead of end cursors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingExtent>,
}

impl Plan {
    /// Whether the plan holds no event: no partition ends after its start
    /// (a recording that grew by keep-alive lines only, or by lines the
    /// committed runs read already).
    pub fn holds_nothing(&self) -> bool {
        self.partitions.iter().all(|p| !p.end.is_after(&p.start))
    }

    /// The plan of a recording with the ends its read found: `reached`, the
    /// newest offset read per partition; a partition read for the first
    /// time starts at `BEGIN`.
    pub fn with_ends(mut self, reached: &BTreeMap<String, Offset>) -> Plan {
        for p in &mut self.partitions {
            if let Some(end) = reached.get(&p.partition) {
                p.end = end.clone();
            }
        }
        for (partition, end) in reached {
            if !self.partitions.iter().any(|p| &p.partition == partition) {
                self.partitions.push(PartitionCursors {
                    partition: partition.clone(),
                    start: Offset::begin(),
                    end: end.clone(),
                    events: None,
                });
            }
        }
        self.partitions
            .sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
        self
    }
}

/// One file of a committed run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the topic's folder.
    pub path: String,
    pub kind: FileKind,
    /// Nakadi partition whose events the file holds.
    pub partition: String,
    /// `[column, value]` pairs of the output partition, when the topic has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_partition: Vec<(String, String)>,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Counts of a run; `events_read = main_input + superseded + correction_events + events_rejected`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub events_read: u64,
    pub events_rejected: u64,
    /// Events kept by compaction: the latest version per key.
    pub main_input: u64,
    /// Older versions compaction removed.
    pub superseded: u64,
    /// Events that arrived after a newer version of their key.
    pub correction_events: u64,
    /// Rows the mapping produced from `main_input`.
    pub main_rows: u64,
    /// Rows the mapping produced from the correction events.
    pub correction_rows: u64,
    /// Rows the mapping produced from the older versions kept for the
    /// warehouse's history (part of `superseded`).
    #[serde(default)]
    pub older_rows: u64,
    /// MAIN and CORRECTION events that delete their key (the mapping does not
    /// see them; the KEYS file records them).
    #[serde(default)]
    pub deletes: u64,
}

impl RunCounts {
    pub fn add(&mut self, other: &RunCounts) {
        self.events_read += other.events_read;
        self.events_rejected += other.events_rejected;
        self.main_input += other.main_input;
        self.superseded += other.superseded;
        self.correction_events += other.correction_events;
        self.main_rows += other.main_rows;
        self.correction_rows += other.correction_rows;
        self.older_rows += other.older_rows;
        self.deletes += other.deletes;
    }

    /// Share of the decoded events that compaction found superseded by a
    /// newer version of their key in the same run. Corrections are not
    /// counted: they reach the warehouse.
    pub fn compaction_rate(&self) -> f64 {
        let decoded = self.main_input + self.superseded + self.correction_events;
        if decoded == 0 {
            0.0
        } else {
            self.superseded as f64 / decoded as f64
        }
    }
}

/// A committed run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub topic: String,
    pub event_type: String,
    pub sequence: u64,
    pub run_id: String,
    /// Random id of the attempt that wrote the manifest: tells a retried
    /// commit request that succeeded apart from a lost race.
    pub attempt: String,
    pub started_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
    pub fingerprint: String,
    pub output_format: Format,
    pub partitions: Vec<PartitionCursors>,
    pub files: Vec<ManifestFile>,
    pub counts: RunCounts,
    /// The topic's key state after this run, in the single-file form
    /// manifests of format 1 name (read, no longer written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateFile>,
    /// The topic's key state after this run: its segments (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_state: Option<StateIndex>,
    /// The recording's files and sizes the run read to their end, when its
    /// source is a recording: the next run finds nothing new without
    /// reading while they stay as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingExtent>,
    /// The run's files as a warehouse loads them (columns, keys, format),
    /// so that the SQL that loads this run needs nothing but the run (runs
    /// committed by earlier releases have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<RunShape>,
}

impl Manifest {
    pub fn end_cursors(&self) -> std::collections::BTreeMap<String, Offset> {
        self.partitions
            .iter()
            .map(|p| (p.partition.clone(), p.end.clone()))
            .collect()
    }

    /// The key state this run left.
    pub fn committed_state(&self) -> CommittedState {
        CommittedState::named(self.key_state.as_ref(), self.state.as_ref())
    }
}
