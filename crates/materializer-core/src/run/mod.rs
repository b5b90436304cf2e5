//! A run's life: plan, read, decode, decide, map, write, commit.
//!
//! ```text
//! plan      start cursors = the newest manifest's end cursors; end cursors =
//!           the newest offsets now, or for a recording its files' sizes now
//!           (or the plan an earlier attempt fixed)
//! read      the source's batches, trimmed to each partition's range; a
//!           recording is read once, its end cursors found on the way
//! decode    per partition, on blocking threads: rows + rejected events; the
//!           rows wait in a spool (memory up to a share of --memory-mb, then
//!           a temp file); a compacting topic's key columns go, with each
//!           event's partition and index, to a spool per key-hash bucket
//! decide    bucket by bucket (`decide`), a large bucket in passes by key
//!           hash: look the keys up in the key state, classify each
//!           partition's share (compaction, corrections), write the bucket's
//!           new state segment; the classes come back as one byte per event,
//!           per partition (in memory, or sorted runs on disk for a run of
//!           many events)
//! map       per partition, on its own task: apply the mapping to each class
//!           as it streams out of the spool
//! write     main, correction, older, keys and rejected files under
//!           deterministic names
//! commit    manifest put-if-absent, then _SUCCESS, Redshift manifests, hint
//! ```
//! The CLI and the HTTP API both call [`execute`]; `stages` follows the
//! steps in order, each a function of the module named for it, taking the
//! `Attempt` and what the step before handed on.

mod attempt;
mod commit;
mod decide;
pub mod environment;
mod error;
mod map;
mod plan;
pub mod progress;
mod read;
pub mod remote;
mod summary;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::commit::{Manifest, TopicLock};
use crate::failpoint::{failpoint, hold, panic_point};
use crate::mapping::Engine;
use crate::state::StateStore;
pub use attempt::RunRequest;
pub use decide::classify;
pub use environment::{RunEnvironment, SetupError};
pub use error::{ClassesError, RunError, RunFailure};
pub use progress::{Progress, ProgressSnapshot, Stage};
pub use summary::{Outcome, RunSummary, Timings};

use attempt::Attempt;
use map::Mapper;
use plan::Planned;
use summary::Laps;

/// Runs one topic once: from its committed cursors to the newest offsets.
pub async fn execute(engine: &Engine, request: RunRequest) -> Result<RunSummary, RunError> {
    let _lock = TopicLock::acquire(&request.output, request.topic.name())
        .ok_or_else(|| RunError::new(request.topic.name(), RunFailure::AlreadyRunning))?;
    let started = Instant::now();
    let attempt = Attempt::new(engine, &request);
    let result = match stages(&attempt).await {
        Err(failure) => Err(attempt.explain_failure(failure).await),
        ok => ok,
    };
    request.progress.set_stage(Stage::Done);
    match result {
        Ok(mut summary) => {
            summary.seconds = started.elapsed().as_secs_f64();
            Ok(summary)
        }
        Err(failure) => Err(RunError::new(request.topic.name(), failure)),
    }
}

/// The stages of a run, in order.
async fn stages(attempt: &Attempt<'_>) -> Result<RunSummary, RunFailure> {
    let progress = attempt.progress();
    if attempt.request.workers.is_some()
        && let Some(refusal) = remote::refusal(attempt.request)
    {
        return Err(RunFailure::Remote(remote::RemoteFailure {
            class: crate::error::ErrorClass::Config,
            message: refusal,
        }));
    }
    // The client's counter is the process's: this run's share is the difference.
    let retries_before = attempt.request.source.retries();
    let mut timings = Timings::default();
    let mut laps = Laps::start();

    progress.set_stage(Stage::Planning);
    let Some(planned) = plan::plan(attempt).await? else {
        info!(topic = %attempt.topic.name(), "nothing new since the last committed run");
        return summary::nothing_new(attempt).await;
    };
    planned.announce(attempt);
    let Planned {
        plan,
        resumed,
        committed,
        ..
    } = planned;
    let committed_state = committed
        .as_ref()
        .map(Manifest::committed_state)
        .unwrap_or_default();
    let state_store = StateStore::new(attempt.topic, &attempt.location, &attempt.layout)?;
    laps.lap(&mut timings.plan);
    failpoint("planned");
    panic_point("run");

    if let Some(workers) = &attempt.request.workers {
        return on_workers(
            attempt,
            workers.as_ref(),
            plan,
            resumed,
            committed_state,
            timings,
            laps,
        )
        .await;
    }

    progress.set_stage(Stage::Reading);
    let mapper = Arc::new(Mapper::new(attempt, plan.sequence));
    let read = read::read_plan(
        attempt,
        plan,
        &mapper,
        &state_store,
        &committed_state,
        read::Keep::RowsAndKeys,
    );
    let read = attempt.cancellable(read).await?;
    laps.lap(&mut timings.read);
    if read.plan.recording.is_some() {
        plan::log_plan(attempt, &read.plan, resumed);
    }
    if read.plan.holds_nothing() {
        let sequence = read.plan.sequence;
        info!(topic = %attempt.topic.name(), sequence, "the recording holds nothing new");
        attempt.committer.drop_plan(sequence).await?;
        return summary::nothing_new(attempt).await;
    }
    let spilled_partitions = read.spilled_partitions();

    progress.set_stage(Stage::Mapping);
    let rows = read.rows();
    let (decisions, state_after) = match read.key_spools {
        Some(spools) => {
            let sequence = read.plan.sequence;
            let decide = decide::decide(
                attempt,
                spools,
                &rows,
                &state_store,
                &committed_state,
                sequence,
            );
            let decisions = attempt.cancellable(decide).await?;
            timings.key_state += decisions.key_state_seconds;
            let state_after = decisions.state_after(committed_state);
            (decisions.partitions, state_after)
        }
        None => (HashMap::new(), committed_state),
    };
    let outputs = map::map_and_write(attempt, &mapper, read.decoded, read.main_files, decisions);
    let outputs = attempt.cancellable(outputs).await?;
    laps.lap(&mut timings.map_write);
    failpoint("files-written");
    hold("commit").await;

    progress.set_stage(Stage::Committing);
    let manifest = commit::commit(attempt, &read.plan, outputs, state_after).await?;
    let retries = attempt
        .request
        .source
        .retries()
        .saturating_sub(retries_before);
    progress
        .retries
        .store(retries, std::sync::atomic::Ordering::Relaxed);
    laps.lap(&mut timings.commit);
    Ok(summary::committed(
        attempt,
        manifest,
        resumed,
        timings,
        spilled_partitions,
        retries,
    ))
}

/// The stages after the plan of a run whose partitions `workers` read, map
/// and write: this process commits what they report.
async fn on_workers(
    attempt: &Attempt<'_>,
    workers: &dyn remote::PartitionWorkers,
    plan: crate::commit::Plan,
    resumed: bool,
    committed_state: crate::state::CommittedState,
    mut timings: Timings,
    mut laps: Laps,
) -> Result<RunSummary, RunFailure> {
    let progress = attempt.progress();
    progress.set_stage(Stage::Reading);
    info!(topic = %attempt.topic.name(), sequence = plan.sequence, workers = %workers.describe(), "partitions handed to the workers");
    // Not cut short by a stop: the workers hear it, give their job up, and
    // only then is the run stopped.
    let ran = remote::run_on(attempt, workers, &plan, &committed_state).await?;
    if let Some(job) = &ran.job {
        info!(topic = %attempt.topic.name(), sequence = plan.sequence, job = %job, "the workers ran the partitions");
    }
    laps.lap(&mut timings.map_write);
    timings.key_state += ran.key_state_seconds;
    failpoint("files-written");
    hold("commit").await;

    progress.set_stage(Stage::Committing);
    let manifest = commit::commit(attempt, &plan, ran.outputs, ran.state_after).await?;
    laps.lap(&mut timings.commit);
    progress
        .retries
        .store(ran.retries, std::sync::atomic::Ordering::Relaxed);
    let mut summary = summary::committed(attempt, manifest, resumed, timings, 0, ran.retries);
    summary.workers_job = ran.job;
    Ok(summary)
}
