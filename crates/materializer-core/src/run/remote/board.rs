//! A run's progress across processes. Each worker task puts its counters,
//! every second and once more when it ends, in a small object of the
//! output location, which workers and driver share already:
//!
//! ```text
//! <topic>/_progress/run=<seq>/<attempt>/<step>-<index>.json
//! ```
//! The driver reads them back into the run's own counters, which the
//! terminal, the API and the metrics show as they show a local run's. The
//! objects are not data: the driver removes its attempt's when the job
//! ends, and the commit of the run removes what any attempt left.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::debug;

use super::PartitionJob;
use crate::run::attempt::Attempt;
use crate::run::progress::{Progress, Stage};
use crate::sink::layout::escape_part;

/// How often a task puts its counters.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the driver reads them.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The step of the job a task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStep {
    /// A topic that keeps every event: a partition read, mapped, written.
    Run,
    /// A compacting topic's first step: a partition read for its keys.
    Keys,
    /// A compacting topic's last step: a partition read again, mapped and
    /// written with its decisions.
    Write,
}

impl TaskStep {
    fn name(self) -> &'static str {
        match self {
            TaskStep::Run => "run",
            TaskStep::Keys => "keys",
            TaskStep::Write => "write",
        }
    }

    /// Whether the step's events read are the run's (the write step reads
    /// the events a keys step read already).
    fn counts_reading(self) -> bool {
        matches!(self, TaskStep::Run | TaskStep::Keys)
    }

    /// Whether the step writes the run's files.
    fn counts_writing(self) -> bool {
        matches!(self, TaskStep::Run | TaskStep::Write)
    }
}

/// What one task put on the board.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TaskCounters {
    step: Option<TaskStep>,
    finished: bool,
    events_read: u64,
    bytes_read: u64,
    events_rejected: u64,
    main_rows: u64,
    correction_rows: u64,
    files_written: u64,
    bytes_written: u64,
    retries: u64,
}

impl TaskCounters {
    fn of(step: TaskStep, progress: &Progress, finished: bool) -> TaskCounters {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        TaskCounters {
            step: Some(step),
            finished,
            events_read: get(&progress.events_read),
            bytes_read: get(&progress.bytes_read),
            events_rejected: get(&progress.events_rejected),
            main_rows: get(&progress.main_rows),
            correction_rows: get(&progress.correction_rows),
            files_written: get(&progress.files_written),
            bytes_written: get(&progress.bytes_written),
            retries: get(&progress.retries),
        }
    }
}

/// The folder of the board of `job`'s attempt.
pub(super) fn folder(attempt: &Attempt<'_>, job: &PartitionJob) -> Path {
    attempt
        .layout
        .progress(job.sequence)
        .join(escape_part(&job.attempt))
}

/// A task's counters, put on the board every second until it finishes.
pub(super) struct Publisher {
    finish: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts putting the counters of `attempt`, the task of `step` on the
    /// partition at `index` of `job`.
    pub(super) fn start(
        attempt: &Attempt<'_>,
        job: &PartitionJob,
        step: TaskStep,
        index: usize,
    ) -> Publisher {
        let path = folder(attempt, job).join(format!("{}-{index}.json", step.name()));
        let store = attempt.location.store.clone();
        let progress = attempt.progress().clone();
        let (finish, mut finished) = oneshot::channel();
        // One writer puts every version of the object, in order, so that
        // the last one put is the finished one.
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut finished => {
                        put(&store, &path, &TaskCounters::of(step, &progress, true)).await;
                        return;
                    }
                    _ = tokio::time::sleep(PUBLISH_INTERVAL) => {
                        put(&store, &path, &TaskCounters::of(step, &progress, false)).await;
                    }
                }
            }
        });
        Publisher {
            finish: Some(finish),
            task: Some(task),
        }
    }

    /// Puts the task's last counters, marked finished.
    pub(super) async fn finish(mut self) {
        if let Some(finish) = self.finish.take() {
            let _ = finish.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Publisher {
    /// A task that fails stops putting its counters.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Progress is shown on a best effort: a counter not put is logged, never
/// the task's failure.
async fn put(store: &Arc<dyn ObjectStore>, path: &Path, counters: &TaskCounters) {
    let body = match serde_json::to_vec(counters) {
        Ok(body) => body,
        Err(e) => {
            debug!(path = %path, error = %e, "progress not put");
            return;
        }
    };
    if let Err(e) = store.put(path, PutPayload::from(body)).await {
        debug!(path = %path, error = %e, "progress not put");
    }
}

/// Reads the board under `folder` into `board` and `progress` until
/// dropped.
pub(super) async fn watch(
    store: &Arc<dyn ObjectStore>,
    folder: &Path,
    progress: &Progress,
    board: &mut Board,
) -> Infallible {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        board.read(store, folder).await;
        board.totals().show(progress);
    }
}

/// The tasks' counters as last read: each object with what tells a new
/// version of it.
#[derive(Default)]
pub(super) struct Board {
    seen: HashMap<Path, (String, TaskCounters)>,
}

impl Board {
    /// Reads the objects under `folder` that changed since the last read.
    pub(super) async fn read(&mut self, store: &Arc<dyn ObjectStore>, folder: &Path) {
        let listed: Vec<object_store::ObjectMeta> =
            match store.list(Some(folder)).try_collect().await {
                Ok(listed) => listed,
                Err(e) => {
                    debug!(folder = %folder, error = %e, "progress not read");
                    return;
                }
            };
        for meta in listed {
            let version = format!("{:?}/{}/{}", meta.e_tag, meta.last_modified, meta.size);
            if self
                .seen
                .get(&meta.location)
                .is_some_and(|(v, _)| *v == version)
            {
                continue;
            }
            if let Some(counters) = read(store, &meta.location).await {
                self.seen.insert(meta.location, (version, counters));
            }
        }
    }

    pub(super) fn totals(&self) -> Totals {
        Totals::of(self.seen.values().map(|(_, c)| c))
    }
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> Option<TaskCounters> {
    let bytes = match store.get(path).await {
        Ok(got) => got.bytes().await.ok()?,
        Err(e) => {
            debug!(path = %path, error = %e, "progress not read");
            return None;
        }
    };
    serde_json::from_slice(&bytes).ok()
}

/// Removes the board under `folder` (on a best effort: the commit of the
/// run removes what is left).
pub(super) async fn clear(store: &Arc<dyn ObjectStore>, folder: &Path) {
    let listed: Vec<object_store::ObjectMeta> = match store.list(Some(folder)).try_collect().await {
        Ok(listed) => listed,
        Err(e) => {
            debug!(folder = %folder, error = %e, "progress not removed");
            return;
        }
    };
    for meta in listed {
        if let Err(e) = store.delete(&meta.location).await {
            debug!(path = %meta.location, error = %e, "progress not removed");
        }
    }
}

/// The run's counters from its tasks'.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    /// The sums, in a task's shape (its step and flag unused).
    sum: TaskCounters,
    partitions_finished: u64,
    writing: bool,
}

impl Totals {
    fn of<'a>(tasks: impl Iterator<Item = &'a TaskCounters>) -> Totals {
        let mut totals = Totals::default();
        let sum = &mut totals.sum;
        for task in tasks {
            let Some(step) = task.step else { continue };
            sum.retries += task.retries;
            if step.counts_reading() {
                sum.events_read += task.events_read;
                sum.bytes_read += task.bytes_read;
                sum.events_rejected += task.events_rejected;
            }
            if step.counts_writing() {
                sum.main_rows += task.main_rows;
                sum.correction_rows += task.correction_rows;
                sum.files_written += task.files_written;
                sum.bytes_written += task.bytes_written;
                totals.partitions_finished += u64::from(task.finished);
            }
            totals.writing |= step == TaskStep::Write;
        }
        totals
    }

    /// The retries of Nakadi's reads the tasks made.
    pub(super) fn retries(&self) -> u64 {
        self.sum.retries
    }

    /// Sets the run's counters to these (zeros before the workers' reports
    /// are counted).
    pub(super) fn show(&self, progress: &Progress) {
        let set = |c: &std::sync::atomic::AtomicU64, v: u64| c.store(v, Ordering::Relaxed);
        let sum = &self.sum;
        set(&progress.events_read, sum.events_read);
        set(&progress.bytes_read, sum.bytes_read);
        set(&progress.events_rejected, sum.events_rejected);
        set(&progress.main_rows, sum.main_rows);
        set(&progress.correction_rows, sum.correction_rows);
        set(&progress.files_written, sum.files_written);
        set(&progress.bytes_written, sum.bytes_written);
        set(&progress.retries, sum.retries);
        set(&progress.partitions_finished, self.partitions_finished);
        if self.writing && progress.stage() == Stage::Reading {
            progress.set_stage(Stage::Mapping);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(step: TaskStep, finished: bool, events: u64, rows: u64) -> TaskCounters {
        TaskCounters {
            step: Some(step),
            finished,
            events_read: events,
            main_rows: rows,
            files_written: u64::from(finished),
            ..TaskCounters::default()
        }
    }

    #[test]
    fn a_compacting_runs_events_are_those_its_keys_step_read() {
        let tasks = [
            task(TaskStep::Keys, true, 10, 0),
            task(TaskStep::Keys, false, 4, 0),
            // The write step reads the first partition again.
            task(TaskStep::Write, true, 10, 7),
        ];
        let totals = Totals::of(tasks.iter());
        assert_eq!(totals.sum.events_read, 14);
        assert_eq!(totals.sum.main_rows, 7);
        assert_eq!(totals.sum.files_written, 1);
        assert_eq!(totals.partitions_finished, 1);
        assert!(totals.writing);
    }

    #[test]
    fn a_run_step_reads_and_writes() {
        let tasks = [
            task(TaskStep::Run, true, 5, 5),
            task(TaskStep::Run, false, 3, 0),
        ];
        let totals = Totals::of(tasks.iter());
        assert_eq!((totals.sum.events_read, totals.sum.main_rows), (8, 5));
        assert_eq!(totals.partitions_finished, 1);
        assert!(!totals.writing);
    }

    #[test]
    fn counters_survive_their_object() {
        let progress = Progress::default();
        Progress::add(&progress.events_read, 42);
        Progress::add(&progress.main_rows, 40);
        let counters = TaskCounters::of(TaskStep::Keys, &progress, true);
        let text = serde_json::to_string(&counters).unwrap();
        let back: TaskCounters = serde_json::from_str(&text).unwrap();
        assert_eq!(back, counters);
        assert!(text.contains("\"step\":\"keys\""), "{text}");
    }
}
