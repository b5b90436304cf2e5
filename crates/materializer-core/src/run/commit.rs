//! Commit: the manifest that makes a run visible.

use std::collections::HashMap;

use chrono::Utc;

use crate::sink::TopicLayout;

use super::Run;
use super::map::PartitionOutput;
use crate::commit::{Manifest, ManifestFile, PartitionCursors, Plan, RunCounts};
use crate::state::CommittedState;

impl Run<'_> {
    pub(super) fn manifest(
        &self,
        plan: &Plan,
        outputs: Vec<PartitionOutput>,
        state: CommittedState,
    ) -> Manifest {
        let layout: &TopicLayout = self.ledger.layout();
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
            topic: self.name(),
            event_type: self.topic.event_type().to_string(),
            sequence: plan.sequence,
            run_id: format!("{}-{}", self.topic.name(), plan.sequence),
            attempt: self.attempt.clone(),
            started_at: self.started_at,
            committed_at: Utc::now(),
            fingerprint: self.topic.fingerprint().to_string(),
            output_format: self.topic.output().format,
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
        }
    }
}
