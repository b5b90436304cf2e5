//! What the run decided about each partition's events, gathered share after
//! share as the buckets are decided: every event's class, the counts, and
//! the rows of the partition's KEYS file.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;

use super::class::Class;
use super::classes::{Classes, ClassesBuilder};
use super::spools::SPILL_BUFFER;
use crate::decode::{Spool, Spooled};
use crate::run::error::RunFailure;
use crate::state::{CommittedState, KeyStateError, StateIndex};

/// What the run decided about one partition's events.
pub(crate) struct Decision {
    /// Per event in arrival order, its class as the mapping sees it: a delete
    /// counts as superseded, as a deleted key has no rows.
    pub(crate) classes: Classes,
    pub(crate) main_input: u64,
    pub(crate) correction_events: u64,
    pub(crate) deletes: u64,
    /// The rows of the partition's KEYS file, bucket after bucket (buckets
    /// are decided in order, so the file is the same from one attempt to the
    /// next).
    pub(crate) keys: Option<Spooled>,
}

/// What the run decided: per partition (by name), and the key state after it.
pub(crate) struct Decisions {
    pub(crate) partitions: HashMap<String, Decision>,
    pub(crate) state: StateIndex,
    /// Time spent looking keys up in the key state and writing its segments,
    /// summed over the buckets.
    pub(crate) key_state_seconds: f64,
}

impl Decisions {
    /// The key state after the run: the new segments, or what was committed
    /// when the run wrote none.
    pub fn state_after(&self, committed: CommittedState) -> CommittedState {
        if self.state.segments.is_empty() {
            committed
        } else {
            CommittedState::Buckets(self.state.clone())
        }
    }
}

/// What the run decided about one partition so far, share after share.
pub(super) struct PartitionDecided {
    pub(super) name: String,
    pub(super) classes: ClassesBuilder,
    pub(super) main_input: u64,
    pub(super) correction_events: u64,
    pub(super) deletes: u64,
    /// The rows of its KEYS file, in the order the shares come.
    pub(super) keys: Option<Spool>,
}

impl PartitionDecided {
    /// Adds a share: its events' classes (a delete counts as superseded),
    /// counts and KEYS rows. `run` is a buffer reused from share to share.
    pub(super) fn apply(
        &mut self,
        share: Share,
        run: &mut Vec<(u64, Class)>,
        runtime: &Arc<RuntimeEnv>,
        keys_cap: usize,
    ) -> Result<(), RunFailure> {
        run.clear();
        for (i, (&event, &class)) in share.events.iter().zip(&share.classes).enumerate() {
            let deleted = share.deleted.get(i).copied().unwrap_or(false);
            match class {
                Class::Main => self.main_input += 1,
                Class::Correction => self.correction_events += 1,
                _ => {}
            }
            if deleted && class != Class::Superseded {
                self.deletes += 1;
            }
            run.push((event, if deleted { Class::Superseded } else { class }));
        }
        self.classes.add(run).map_err(RunFailure::Classes)?;
        for batch in share.keys {
            let spool = self.keys.get_or_insert_with(|| {
                Spool::labelled(
                    batch.schema(),
                    runtime.clone(),
                    &format!("KEYS rows of partition {}", self.name),
                    keys_cap,
                    SPILL_BUFFER,
                )
            });
            spool.push(batch).map_err(KeyStateError::Spool)?;
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<Decision, RunFailure> {
        Ok(Decision {
            classes: self.classes.finish().map_err(RunFailure::Classes)?,
            main_input: self.main_input,
            correction_events: self.correction_events,
            deletes: self.deletes,
            keys: self
                .keys
                .map(Spool::finish)
                .transpose()
                .map_err(KeyStateError::Spool)?,
        })
    }
}

/// One partition's share of a bucket, decided.
pub(super) struct Share {
    pub(super) partition: u32,
    /// Positions of the share's events in their partition.
    pub(super) events: Vec<u64>,
    pub(super) classes: Vec<Class>,
    pub(super) deleted: Vec<bool>,
    pub(super) keys: Vec<RecordBatch>,
}
