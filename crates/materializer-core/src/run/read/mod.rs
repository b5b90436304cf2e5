//! Read: the plan's events from the source, decoded per partition; a topic
//! that does not compact may be mapped and written on the way, a compacting
//! topic's key columns go to the spools of their key buckets.

mod partitions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use partitions::{ReadPartitions, Reading, read};

use super::attempt::Attempt;
use super::decide::KeySpools;
use super::error::RunFailure;
use super::map::{MainWriters, Mapper};
use crate::commit::Plan;
use crate::decode::DecodedPartition;
use crate::sink::WrittenFile;
use crate::source::PartitionRange;
use crate::state::{CommittedState, StateStore};

/// What the read hands on.
pub(crate) struct Read {
    /// The plan, with the ends the read found when it reads a recording.
    pub plan: Plan,
    /// Per partition, its decoded events.
    pub decoded: BTreeMap<String, DecodedPartition>,
    /// The partitions in the order their decoders started: the index their
    /// key columns carry in the key spools.
    pub order: Vec<String>,
    /// The MAIN files written while the partitions were read.
    pub main_files: HashMap<String, Vec<WrittenFile>>,
    /// A compacting topic's key columns, by key bucket.
    pub key_spools: Option<KeySpools>,
}

impl Read {
    /// Each partition's decoded rows, in the order of [`Read::order`].
    pub fn rows(&self) -> Vec<(String, u64)> {
        self.order
            .iter()
            .map(|partition| {
                let rows = self.decoded.get(partition).map_or(0, |p| p.rows);
                (partition.clone(), rows)
            })
            .collect()
    }

    /// Partitions whose decoded events waited in a temp file.
    pub fn spilled_partitions(&self) -> usize {
        self.decoded.values().filter(|p| p.events.spilled()).count()
    }
}

/// What a read keeps of the events it decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The rows, and a compacting topic's keys by bucket: a local run.
    RowsAndKeys,
    /// The rows only: the decisions come from elsewhere.
    Rows,
    /// A compacting topic's keys only: the rows are read again once the
    /// keys are decided.
    Keys,
}

/// Reads what `plan` names, one decoder per partition, keeping `keep`.
pub(crate) async fn read_plan(
    attempt: &Attempt<'_>,
    plan: Plan,
    mapper: &Arc<Mapper>,
    state_store: &StateStore<'_>,
    committed_state: &CommittedState,
    keep: Keep,
) -> Result<Read, RunFailure> {
    let topic = attempt.topic;
    // A topic that does not compact is mapped while it is read, when its
    // mapping reads the events once (as a stream can be read); the read
    // opens a writer per partition while the files fit half the memory
    // budget (all are open at once).
    let mut writers = if !topic.compaction().compact && mapper.reads_events_once().await? {
        Some(MainWriters::new(mapper.clone()))
    } else {
        None
    };
    // A compacting topic's keys wait in spools by bucket for the
    // classification; they may hold an eighth of the memory budget.
    let key_spools = if topic.compaction().compact && keep != Keep::Rows {
        Some(Arc::new(KeySpools::new(
            state_store.schema(),
            committed_state,
            attempt.engine.runtime(),
            attempt.engine.settings().memory_limit / 8,
        )?))
    } else {
        None
    };
    let ranges: Vec<PartitionRange> = plan
        .partitions
        .iter()
        .map(|p| PartitionRange {
            partition: p.partition.clone(),
            start: p.start.clone(),
            end: p.end.clone(),
        })
        .filter(|r| !r.is_empty())
        .collect();
    let reading = match &plan.recording {
        Some(extent) => Reading::Recording {
            starts: plan
                .partitions
                .iter()
                .map(|p| (p.partition.clone(), p.start.clone()))
                .collect(),
            extent,
        },
        None => Reading::Ranges(&ranges),
    };
    let ReadPartitions {
        decoded,
        order,
        reached,
    } = read(
        attempt,
        reading,
        writers.as_mut(),
        key_spools.as_ref(),
        keep != Keep::Keys,
    )
    .await?;
    let main_files = match writers {
        Some(writers) => writers.finish().await?,
        None => HashMap::new(),
    };
    let plan = match plan.recording {
        Some(_) => {
            // Now the read tells how many events the run holds.
            let progress = attempt.progress();
            progress.events_planned.store(
                progress.events_read.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            plan.with_ends(&reached)
        }
        None => plan,
    };
    let key_spools = key_spools
        .map(|spools| {
            Arc::into_inner(spools)
                .ok_or_else(|| RunFailure::invariant("a decoder still holds the run's key spools"))
        })
        .transpose()?;
    Ok(Read {
        plan,
        decoded,
        order,
        main_files,
        key_spools,
    })
}
