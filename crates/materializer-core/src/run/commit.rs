//! Commit: the manifest that makes a run visible, what follows it, and the
//! source's cursors (a subscription's) once the run is visible.

use std::collections::HashMap;

use chrono::Utc;
use tracing::info;

use super::attempt::Attempt;
use super::error::RunFailure;
use super::map::PartitionOutput;
use crate::commit::{Manifest, ManifestFile, PartitionCursors, Plan, RunCounts};
use crate::failpoint::{failpoint, hold};
use crate::state::CommittedState;

/// Commits the run of `plan` with the files of `outputs` and the key state
/// `state`: the manifest, what follows it, then the source's cursors.
pub(crate) async fn commit(
    attempt: &Attempt<'_>,
    plan: &Plan,
    outputs: Vec<PartitionOutput>,
    state: CommittedState,
) -> Result<Manifest, RunFailure> {
    let manifest = manifest(attempt, plan, outputs, state);
    attempt.committer.commit(&manifest).await?;
    attempt
        .progress()
        .committed_sequence
        .store(manifest.sequence, std::sync::atomic::Ordering::Relaxed);
    failpoint("committed");
    info!(topic = %attempt.topic.name(), sequence = manifest.sequence, files = manifest.files.len(), "run committed");
    hold("markers").await;
    attempt.committer.post_commit(&manifest).await?;
    failpoint("post-committed");
    attempt
        .request
        .source
        .commit(&manifest.end_cursors())
        .await
        .map_err(|source| RunFailure::CursorCommit {
            sequence: manifest.sequence,
            source,
        })?;
    Ok(manifest)
}

fn manifest(
    attempt: &Attempt<'_>,
    plan: &Plan,
    outputs: Vec<PartitionOutput>,
    state: CommittedState,
) -> Manifest {
    let layout = &attempt.layout;
    let mut counts = RunCounts::default();
    let mut files = Vec::new();
    let mut events_per_partition: HashMap<String, u64> = HashMap::new();
    for output in outputs {
        counts.add(&output.counts);
        events_per_partition.insert(output.partition.clone(), output.counts.events_read);
        for (kind, file) in output.files {
            files.push(ManifestFile {
                path: layout.relative(&file.path),
                kind,
                partition: output.partition.clone(),
                output_partition: file.output_partition,
                rows: file.rows,
                bytes: file.bytes,
                sha256: file.sha256,
            });
        }
    }
    // Format 2 names the key state by its segments.
    let format_version = if matches!(state, CommittedState::Buckets(_)) {
        2
    } else {
        1
    };
    let (state, key_state) = state.into_manifest_fields();
    Manifest {
        format_version,
        topic: attempt.name(),
        event_type: attempt.topic.event_type().to_string(),
        sequence: plan.sequence,
        run_id: format!("{}-{}", attempt.topic.name(), plan.sequence),
        attempt: attempt.id.clone(),
        started_at: attempt.started_at,
        committed_at: Utc::now(),
        fingerprint: attempt.topic.fingerprint().to_string(),
        output_format: attempt.topic.output().format,
        partitions: plan
            .partitions
            .iter()
            .map(|p| PartitionCursors {
                events: Some(events_per_partition.get(&p.partition).copied().unwrap_or(0)),
                ..p.clone()
            })
            .collect(),
        files,
        counts,
        state,
        key_state,
        recording: plan.recording.clone(),
        shape: Some(attempt.topic.run_shape()),
    }
}
