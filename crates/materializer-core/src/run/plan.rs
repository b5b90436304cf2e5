//! Plan: which cursors a run reads, fixed before it reads anything.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use tracing::{info, warn};

use crate::source::{Offset, PartitionRange, check_available, partition_cmp, plan_ranges};

use super::{Manifest, PartitionCursors, Plan, Run, RunFailure};

impl Run<'_> {
    /// The plan in force for the next sequence number, or `None` when there is
    /// nothing new. Also finishes the post-commit steps of the newest run.
    pub(super) async fn plan(&self) -> Result<Option<(Plan, bool, Option<Manifest>)>, RunFailure> {
        let committed = self.ledger.latest().await?;
        if let Some(manifest) = &committed
            && !self.ledger.post_commit_done(manifest).await?
        {
            info!(topic = %self.topic.name(), sequence = manifest.sequence, "completing the post-commit steps of the last run");
            self.ledger.post_commit(manifest).await?;
        }
        let committed_ends = committed
            .as_ref()
            .map(Manifest::end_cursors)
            .unwrap_or_default();
        self.request.source.prepare(&committed_ends).await?;
        let sequence = committed.as_ref().map_or(1, |m| m.sequence + 1);

        let existing = self.ledger.plan(sequence).await?;
        if let Some(plan) = &existing
            && follows(plan, &committed_ends)
        {
            return Ok(Some((plan.clone(), true, committed)));
        }

        let partitions = self.request.source.partitions().await?;
        check_available(&partitions, &committed_ends)?;
        let mut ranges = plan_ranges(&partitions, &committed_ends);
        // Partitions the source no longer lists keep their cursors.
        for (partition, offset) in &committed_ends {
            if !ranges.iter().any(|r| &r.partition == partition) {
                ranges.push(PartitionRange {
                    partition: partition.clone(),
                    start: offset.clone(),
                    end: offset.clone(),
                });
            }
        }
        ranges.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
        if ranges.iter().all(PartitionRange::is_empty) {
            return Ok(None);
        }
        let plan = Plan {
            topic: self.name(),
            event_type: self.topic.event_type().to_string(),
            sequence,
            created_at: Utc::now(),
            fingerprint: self.topic.fingerprint().to_string(),
            partitions: ranges
                .into_iter()
                .map(|r| PartitionCursors {
                    partition: r.partition,
                    start: r.start,
                    end: r.end,
                    events: None,
                })
                .collect(),
        };
        if existing.is_some() {
            // A stale plan (its start cursors do not follow the committed run).
            warn!(topic = %self.topic.name(), sequence, "replacing a plan that does not follow the committed cursors");
            self.ledger.replace_plan(&plan).await?;
            return Ok(Some((plan, false, committed)));
        }
        let in_force = self.ledger.fix_plan(plan.clone()).await?;
        let resumed = in_force != plan;
        Ok(Some((in_force, resumed, committed)))
    }
}

/// Whether a plan starts where the committed runs end.
fn follows(plan: &Plan, committed_ends: &BTreeMap<String, Offset>) -> bool {
    let planned: HashMap<&str, &Offset> = plan
        .partitions
        .iter()
        .map(|p| (p.partition.as_str(), &p.start))
        .collect();
    let starts_match = plan
        .partitions
        .iter()
        .all(|p| match committed_ends.get(&p.partition) {
            Some(end) => end == &p.start,
            None => p.start.is_begin(),
        });
    starts_match
        && committed_ends
            .keys()
            .all(|k| planned.contains_key(k.as_str()))
}
