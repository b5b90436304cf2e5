//! Plan: which cursors a run reads, fixed before it reads anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use chrono::Utc;
use tracing::{info, warn};

use crate::source::{
    NakadiSource, Offset, PartitionRange, Source, check_available, partition_cmp, plan_ranges,
};

use super::attempt::Attempt;
use super::error::RunFailure;
use crate::commit::{Manifest, PartitionCursors, Plan};

/// The plan a run follows, and what planning learnt on the way.
pub(super) struct Planned {
    pub plan: Plan,
    /// Whether the plan was fixed by an earlier attempt.
    pub resumed: bool,
    /// The newest committed run.
    pub committed: Option<Manifest>,
    /// The cursor before the oldest event of each partition, as the source
    /// said when this attempt planned (none for a resumed plan).
    pub first_cursors: BTreeMap<String, Offset>,
}

impl Planned {
    /// Tells the progress and the log what the run reads, and the attempt
    /// its sequence number.
    pub fn announce(&self, attempt: &Attempt<'_>) {
        let plan = &self.plan;
        attempt
            .progress()
            .events_planned
            .store(self.events().unwrap_or(0), Ordering::Relaxed);
        // A recording's ends are found by its read, which logs the plan.
        if plan.recording.is_none() {
            log_plan(attempt, plan, self.resumed);
        }
        let _ = attempt.planned.set(plan.sequence);
    }

    /// Events the plan holds, when the offsets tell: offsets of a partition
    /// count up one by one within a timeline. A partition read from `BEGIN`
    /// starts at the oldest event the source holds.
    pub fn events(&self) -> Option<u64> {
        if self.plan.recording.is_some() {
            return None; // the read finds the ends
        }
        self.plan
            .partitions
            .iter()
            .filter(|p| p.end.is_after(&p.start))
            .map(|p| {
                let from = if p.start.is_begin() {
                    self.first_cursors.get(&p.partition)?
                } else {
                    &p.start
                };
                from.events_until(&p.end)
            })
            .sum()
    }
}

/// Logs what a run reads: the partitions with events to read (for a
/// recording, once its read found their ends) and a recording's bytes.
pub(super) fn log_plan(attempt: &Attempt<'_>, plan: &Plan, resumed: bool) {
    info!(
        topic = %attempt.topic.name(),
        sequence = plan.sequence,
        partitions = plan.partitions.iter().filter(|p| p.end.is_after(&p.start)).count(),
        recording_bytes = plan.recording.as_ref().map(|r| r.bytes()),
        resumed,
        "run planned"
    );
}

/// The plan in force for the next sequence number, or `None` when there is
/// nothing new. Also finishes the post-commit steps of the newest run.
pub(super) async fn plan(attempt: &Attempt<'_>) -> Result<Option<Planned>, RunFailure> {
    let committed = attempt.committer.latest().await?;
    if let Some(manifest) = &committed
        && !attempt.committer.post_commit_done(manifest).await?
    {
        info!(topic = %attempt.topic.name(), sequence = manifest.sequence, "completing the post-commit steps of the last run");
        attempt.committer.post_commit(manifest).await?;
    }
    let committed_ends = committed
        .as_ref()
        .map(Manifest::end_cursors)
        .unwrap_or_default();
    attempt.request.source.prepare(&committed_ends).await?;
    let sequence = committed.as_ref().map_or(1, |m| m.sequence + 1);

    let recording = attempt.request.source.recording_extent()?;
    let existing = attempt.committer.plan(sequence).await?;
    if let Some(plan) = &existing
            && follows(plan, &committed_ends)
            // A recording's plan needs a recording to read.
            && (plan.recording.is_none() || recording.is_some())
    {
        return Ok(Some(Planned {
            plan: plan.clone(),
            resumed: true,
            committed,
            first_cursors: BTreeMap::new(),
        }));
    }

    let (partitions, first_cursors) = match &*attempt.request.source {
        Source::Recorded(_) => {
            let read_before = committed.as_ref().and_then(|m| m.recording.as_ref());
            if read_before.is_some() && read_before == recording.as_ref() {
                return Ok(None); // the files are as the last run left them
            }
            // The read finds the ends: no pass over the files here.
            let starts = committed_ends
                .iter()
                .map(|(partition, offset)| PartitionCursors {
                    partition: partition.clone(),
                    start: offset.clone(),
                    end: offset.clone(),
                    events: None,
                })
                .collect();
            (starts, BTreeMap::new())
        }
        Source::Nakadi(nakadi) => {
            let Some(planned) = nakadi_ranges(nakadi, &committed_ends).await? else {
                return Ok(None);
            };
            planned
        }
    };
    let plan = Plan {
        topic: attempt.name(),
        event_type: attempt.topic.event_type().to_string(),
        sequence,
        created_at: Utc::now(),
        fingerprint: attempt.topic.fingerprint().to_string(),
        partitions,
        recording,
    };
    if existing.is_some() {
        // A stale plan (its start cursors do not follow the committed run).
        warn!(topic = %attempt.topic.name(), sequence, "replacing a plan that does not follow the committed cursors");
        attempt.committer.replace_plan(&plan).await?;
        return Ok(Some(Planned {
            plan,
            resumed: false,
            committed,
            first_cursors,
        }));
    }
    let in_force = attempt.committer.fix_plan(plan.clone()).await?;
    let resumed = in_force != plan;
    Ok(Some(Planned {
        plan: in_force,
        resumed,
        committed,
        first_cursors,
    }))
}

/// Each partition's cursors from the committed end to the newest offset
/// the source holds, and the cursor before each partition's oldest
/// event; `None` when there is nothing new.
async fn nakadi_ranges(
    nakadi: &NakadiSource,
    committed_ends: &BTreeMap<String, Offset>,
) -> Result<Option<PlannedRanges>, RunFailure> {
    let partitions = nakadi.partitions().await?;
    let first_cursors = partitions
        .iter()
        .map(|p| (p.partition.clone(), NakadiSource::first_cursor(p)))
        .collect();
    check_available(&partitions, committed_ends)?;
    let mut ranges = plan_ranges(&partitions, committed_ends);
    // Partitions the source no longer lists keep their cursors.
    for (partition, offset) in committed_ends {
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
    let cursors = ranges
        .into_iter()
        .map(|r| PartitionCursors {
            partition: r.partition,
            start: r.start,
            end: r.end,
            events: None,
        })
        .collect();
    Ok(Some((cursors, first_cursors)))
}

/// A plan's cursors, and the cursor before each partition's oldest event.
type PlannedRanges = (Vec<PartitionCursors>, BTreeMap<String, Offset>);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn cursors(partition: &str, start: &str, end: &str) -> PartitionCursors {
        PartitionCursors {
            partition: partition.into(),
            start: Offset::new(start),
            end: Offset::new(end),
            events: None,
        }
    }

    fn planned(partitions: Vec<PartitionCursors>, first: &[(&str, &str)]) -> Planned {
        Planned {
            plan: Plan {
                topic: "t".into(),
                event_type: "e".into(),
                sequence: 1,
                created_at: Utc::now(),
                fingerprint: String::new(),
                partitions,
                recording: None,
            },
            resumed: false,
            committed: None,
            first_cursors: first
                .iter()
                .map(|(p, o)| (p.to_string(), Offset::new(*o)))
                .collect(),
        }
    }

    #[test]
    fn planned_events_come_from_the_offsets() {
        let p = planned(
            vec![
                cursors(
                    "0",
                    "001-0001-000000000000000004",
                    "001-0001-000000000000000009",
                ),
                cursors("1", "BEGIN", "001-0001-000000000000000002"),
                cursors("2", "BEGIN", "001-0001-000000000000000007"),
                cursors(
                    "3",
                    "001-0001-000000000000000003",
                    "001-0001-000000000000000003",
                ),
            ],
            &[("1", "BEGIN"), ("2", "001-0001-000000000000000005")],
        );
        // 5 after the cursor, 3 from offset 0, 2 after the oldest cursor, none.
        assert_eq!(p.events(), Some(10));
    }

    #[test]
    fn a_recording_plan_takes_its_ends_from_the_read() {
        let mut plan = planned(
            vec![
                cursors(
                    "10",
                    "001-0001-000000000000000004",
                    "001-0001-000000000000000004",
                ),
                cursors(
                    "2",
                    "001-0001-000000000000000007",
                    "001-0001-000000000000000007",
                ),
            ],
            &[],
        )
        .plan;
        plan.recording = Some(crate::source::RecordingExtent { files: Vec::new() });
        let reached = BTreeMap::from([
            ("10".to_string(), Offset::new("001-0001-000000000000000009")),
            ("3".to_string(), Offset::new("001-0001-000000000000000001")),
        ]);
        let ended = plan.with_ends(&reached);
        let ends: Vec<(&str, &str, &str)> = ended
            .partitions
            .iter()
            .map(|p| (p.partition.as_str(), p.start.as_str(), p.end.as_str()))
            .collect();
        // Read further, nothing new, read for the first time; in partition order.
        assert_eq!(
            ends,
            [
                (
                    "2",
                    "001-0001-000000000000000007",
                    "001-0001-000000000000000007"
                ),
                ("3", "BEGIN", "001-0001-000000000000000001"),
                (
                    "10",
                    "001-0001-000000000000000004",
                    "001-0001-000000000000000009"
                ),
            ]
        );
    }

    #[test]
    fn planned_events_are_unknown_when_a_partition_does_not_tell() {
        let begin_without_oldest = planned(
            vec![cursors("0", "BEGIN", "001-0001-000000000000000009")],
            &[],
        );
        assert_eq!(begin_without_oldest.events(), None);
        let other_timeline = planned(
            vec![cursors(
                "0",
                "001-0001-000000000000000004",
                "001-0002-000000000000000001",
            )],
            &[],
        );
        assert_eq!(other_timeline.events(), None);
    }
}
