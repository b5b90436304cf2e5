//! What a run did, for the terminal, the API and the logs.

use std::time::Instant;

use serde::Serialize;

use super::attempt::Attempt;
use super::error::RunFailure;
use crate::commit::{Manifest, ManifestFile, PartitionCursors, RunCounts};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Committed,
    NothingNew,
}

/// What a run did, for the terminal, the API and the logs.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub topic: String,
    pub outcome: Outcome,
    /// Sequence number of the committed run (or of the newest committed one
    /// when there was nothing new).
    pub sequence: Option<u64>,
    pub output: String,
    pub counts: RunCounts,
    pub compaction_rate: f64,
    pub files: Vec<ManifestFile>,
    pub bytes_written: u64,
    pub partitions: Vec<PartitionCursors>,
    pub seconds: f64,
    /// True when this attempt reused the plan of an earlier, uncommitted attempt.
    pub resumed: bool,
    /// Where the time went.
    pub timings: Timings,
    /// Partitions whose decoded events outgrew their share of the memory
    /// budget (`--memory-mb`) and waited for mapping in a temp file.
    pub spilled_partitions: usize,
    /// Nakadi requests and streams this run repeated after a failure.
    pub retries: u64,
    /// The cluster's job that ran the partitions (its Ballista job id), for
    /// a run on a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers_job: Option<String>,
}

/// Seconds spent in each stage of a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Timings {
    /// Finding the committed run, fixing the plan.
    pub plan: f64,
    /// Reading and decoding the events.
    pub read: f64,
    /// Looking the run's keys up in the key state, classifying, mapping and
    /// writing the files and the key state. A run on a cluster: the
    /// executors' whole time (reading included), `read` 0.
    pub map_write: f64,
    /// Of `map_write`: looking the run's keys up in the key state and
    /// writing its new segments (compactions included).
    pub key_state: f64,
    /// Writing the manifest, the post-commit files and the source's cursors.
    pub commit: f64,
}

/// Times the stages one after the other.
pub(super) struct Laps(Instant);

impl Laps {
    pub fn start() -> Laps {
        Laps(Instant::now())
    }

    /// Puts the seconds since the last lap into `slot`.
    pub fn lap(&mut self, slot: &mut f64) {
        *slot = self.0.elapsed().as_secs_f64();
        self.0 = Instant::now();
    }
}

/// What a committed run did: the seconds are set by the caller.
pub(super) fn committed(
    attempt: &Attempt<'_>,
    manifest: Manifest,
    resumed: bool,
    timings: Timings,
    spilled_partitions: usize,
    retries: u64,
) -> RunSummary {
    RunSummary {
        topic: attempt.name(),
        outcome: Outcome::Committed,
        sequence: Some(manifest.sequence),
        output: attempt.location.url.clone(),
        compaction_rate: manifest.counts.compaction_rate(),
        counts: manifest.counts,
        bytes_written: manifest.files.iter().map(|f| f.bytes).sum(),
        files: manifest.files,
        partitions: manifest.partitions,
        seconds: 0.0,
        resumed,
        timings,
        spilled_partitions,
        retries,
        workers_job: None,
    }
}

/// The summary of a run that found nothing new to read.
pub(super) async fn nothing_new(attempt: &Attempt<'_>) -> Result<RunSummary, RunFailure> {
    let latest = attempt.committer.latest().await?;
    Ok(RunSummary {
        topic: attempt.name(),
        outcome: Outcome::NothingNew,
        sequence: latest.as_ref().map(|m| m.sequence),
        output: attempt.location.url.clone(),
        counts: RunCounts::default(),
        compaction_rate: 0.0,
        files: Vec::new(),
        bytes_written: 0,
        partitions: latest.map(|m| m.partitions).unwrap_or_default(),
        seconds: 0.0,
        resumed: false,
        timings: Timings::default(),
        spilled_partitions: 0,
        retries: 0,
        workers_job: None,
    })
}
