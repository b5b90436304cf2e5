//! Live counters of a run, shared with whoever watches it (terminal, API, metrics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    #[default]
    Queued,
    Planning,
    Reading,
    Mapping,
    Committing,
    Done,
}

/// Counters a run moves as it goes.
#[derive(Debug, Default)]
pub struct Progress {
    stage: Mutex<Stage>,
    pub partitions_total: AtomicU64,
    pub partitions_finished: AtomicU64,
    /// Events the plan holds, when its offsets tell (0: not known).
    pub events_planned: AtomicU64,
    pub events_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Bytes of the recording a run of a recording reads (0 otherwise).
    pub recording_bytes: AtomicU64,
    /// Of `recording_bytes`, those read so far (the recording's reader
    /// moves it).
    pub recording_bytes_read: Arc<AtomicU64>,
    pub events_rejected: AtomicU64,
    pub main_rows: AtomicU64,
    pub correction_rows: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub retries: AtomicU64,
    /// The run's sequence once its manifest is committed (0 before): a
    /// committed run is known by its sequence before its summary exists.
    pub committed_sequence: AtomicU64,
    /// The cluster's name of the job that runs the run's partitions (a
    /// run on a cluster, once the cluster accepted it).
    workers_job: Mutex<Option<String>>,
}

/// A consistent-enough copy of the counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub stage: Stage,
    pub partitions_total: u64,
    pub partitions_finished: u64,
    /// 0 when not known.
    pub events_planned: u64,
    pub events_read: u64,
    pub bytes_read: u64,
    /// 0 unless the run reads a recording.
    pub recording_bytes: u64,
    pub recording_bytes_read: u64,
    pub events_rejected: u64,
    pub main_rows: u64,
    pub correction_rows: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub retries: u64,
    /// 0 until the run's manifest is committed.
    pub committed_sequence: u64,
    /// The cluster's job, for a run on a cluster.
    pub workers_job: Option<String>,
}

impl Progress {
    pub fn set_stage(&self, stage: Stage) {
        if let Ok(mut s) = self.stage.lock() {
            *s = stage;
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage.lock().map(|s| *s).unwrap_or_default()
    }

    pub fn set_workers_job(&self, job: &str) {
        if let Ok(mut slot) = self.workers_job.lock() {
            *slot = Some(job.to_string());
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProgressSnapshot {
            stage: self.stage(),
            partitions_total: get(&self.partitions_total),
            partitions_finished: get(&self.partitions_finished),
            events_planned: get(&self.events_planned),
            events_read: get(&self.events_read),
            bytes_read: get(&self.bytes_read),
            recording_bytes: get(&self.recording_bytes),
            recording_bytes_read: get(&self.recording_bytes_read),
            events_rejected: get(&self.events_rejected),
            main_rows: get(&self.main_rows),
            correction_rows: get(&self.correction_rows),
            files_written: get(&self.files_written),
            bytes_written: get(&self.bytes_written),
            retries: get(&self.retries),
            committed_sequence: get(&self.committed_sequence),
            workers_job: self.workers_job.lock().ok().and_then(|j| j.clone()),
        }
    }
}
