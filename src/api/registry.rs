//! Runs the API started: queued behind a concurrency limit, watched through
//! their live counters, stopped on request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::error::{ApiError, ProblemKind};
use super::metrics::Metrics;
use super::models::{
    CountsView, PartitionView, ProgressView, RunErrorClass, RunView, TimingsView,
    events_per_second, keys_rows, run_label,
};
use materializer_core::ErrorClass;
use materializer_core::config::Topic;
use materializer_core::report;
use materializer_core::run::{
    self, Outcome, Progress, ProgressSnapshot, RunEnvironment, RunFailure, RunSummary, Stage,
};

/// Runs kept in memory (older ones are read back from the manifests).
const KEEP: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Succeeded,
    Failed,
    Stopped,
}

struct Record {
    queued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    started: Option<Instant>,
    finished_at: Option<DateTime<Utc>>,
    seconds: Option<f64>,
    ended: Option<Ended>,
    summary: Option<RunSummary>,
    error: Option<String>,
    /// The class of the failure of a failed or stopped run.
    class: Option<ErrorClass>,
    /// The counters as they were when the run ended: what it did is fixed
    /// then, whatever a task it left winding down still counts.
    last: Option<ProgressSnapshot>,
}

struct Entry {
    id: String,
    topic: String,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    record: Mutex<Record>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Entry {
    fn active(&self) -> bool {
        lock(&self.record).ended.is_none()
    }

    fn view(&self) -> RunView {
        let record = lock(&self.record);
        let p = record
            .last
            .clone()
            .unwrap_or_else(|| self.progress.snapshot());
        let state = match (record.ended, record.started_at, p.stage) {
            (Some(Ended::Succeeded), ..) => "succeeded",
            (Some(Ended::Failed), ..) => "failed",
            (Some(Ended::Stopped), ..) => "stopped",
            (None, None, _) => "queued",
            (None, Some(_), Stage::Committing) => "committing",
            (None, Some(_), _) => "running",
        };
        let summary = record.summary.as_ref();
        let outcome = summary.map(|s| match s.outcome {
            Outcome::Committed => "committed".to_string(),
            Outcome::NothingNew => "nothing_new".to_string(),
        });
        // A run still going whose manifest is committed is known by its
        // sequence before its summary exists: the runs list then does not
        // show it twice. (One that failed after its commit is listed apart
        // from its committed manifest, as before.)
        let committing = record.ended.is_none() && p.committed_sequence > 0;
        let sequence = summary
            .and_then(|s| s.sequence)
            .or(committing.then_some(p.committed_sequence));
        let seconds = record
            .seconds
            .or_else(|| record.started.map(|s| s.elapsed().as_secs_f64()));
        RunView {
            id: self.id.clone(),
            topic: self.topic.clone(),
            state: state.into(),
            stop_requested: record.ended.is_none() && self.cancel.is_cancelled(),
            sequence,
            label: run_label(&self.id, outcome.as_deref(), sequence),
            outcome,
            queued_at: record.queued_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            seconds,
            events_per_second: events_per_second(p.events_read, seconds),
            progress: ProgressView {
                partitions_total: p.partitions_total,
                partitions_finished: p.partitions_finished,
                events_planned: (p.events_planned > 0).then_some(p.events_planned),
                events_read: p.events_read,
                bytes_read: p.bytes_read,
                recording_bytes: (p.recording_bytes > 0).then_some(p.recording_bytes),
                recording_bytes_read: (p.recording_bytes > 0).then_some(p.recording_bytes_read),
                events_rejected: p.events_rejected,
                main_rows: p.main_rows,
                correction_rows: p.correction_rows,
                files_written: p.files_written,
                bytes_written: p.bytes_written,
                retries: p.retries,
                workers_job: p.workers_job.clone(),
            },
            compaction_rate: summary.map(|s| s.compaction_rate),
            counts: summary.map(|s| CountsView::from(&s.counts)),
            files: summary.map(|s| s.files.len()),
            error: record.error.clone(),
            error_class: record.class.map(RunErrorClass::from),
            // A run that found nothing new read nothing: its summary's
            // cursors are those of the run before it.
            partitions: summary
                .filter(|s| s.outcome == Outcome::Committed)
                .map(|s| s.partitions.iter().map(PartitionView::from).collect()),
            timings: summary.map(|s| TimingsView::from(&s.timings)),
            keys_rows: summary.map(|s| keys_rows(&s.files)),
        }
    }
}

/// The runs of this server.
pub struct RunRegistry {
    entries: Mutex<(BTreeMap<String, Arc<Entry>>, VecDeque<String>)>,
    permits: Arc<Semaphore>,
}

impl RunRegistry {
    pub fn new(max_concurrent: usize) -> RunRegistry {
        RunRegistry {
            entries: Mutex::new((BTreeMap::new(), VecDeque::new())),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    fn all(&self) -> Vec<Arc<Entry>> {
        lock(&self.entries).0.values().cloned().collect()
    }

    /// (running, queued).
    pub fn load(&self) -> (usize, usize) {
        let mut running = 0;
        let mut queued = 0;
        for e in self.all() {
            let r = lock(&e.record);
            if r.ended.is_none() {
                if r.started_at.is_some() {
                    running += 1;
                } else {
                    queued += 1;
                }
            }
        }
        (running, queued)
    }

    /// Events read so far by the runs going on, per topic.
    pub fn live_events(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in self.all().into_iter().filter(|e| e.active()) {
            *out.entry(e.topic.clone()).or_default() += e.progress.snapshot().events_read;
        }
        out
    }

    pub fn active_run_of(&self, topic: &str) -> Option<String> {
        self.all()
            .into_iter()
            .find(|e| e.topic == topic && e.active())
            .map(|e| e.id.clone())
    }

    pub fn view(&self, id: &str) -> Option<RunView> {
        lock(&self.entries).0.get(id).map(|e| e.view())
    }

    pub fn views_of(&self, topic: &str) -> Vec<RunView> {
        self.all()
            .into_iter()
            .filter(|e| e.topic == topic)
            .map(|e| e.view())
            .collect()
    }

    pub fn stop(&self, id: &str) -> Result<RunView, ApiError> {
        let entry = lock(&self.entries).0.get(id).cloned().ok_or_else(|| {
            ApiError::new(ProblemKind::NotFound, format!("no run {id:?}")).titled("Unknown run")
        })?;
        if !entry.active() {
            let view = entry.view();
            return Err(ApiError::class(
                ErrorClass::Conflict,
                format!("run {id} has finished already ({})", view.state),
            )
            .titled("Run finished"));
        }
        info!(run = id, topic = %entry.topic, "stop requested");
        entry.cancel.cancel();
        Ok(entry.view())
    }

    pub fn cancel_queued(&self) {
        for e in self.all() {
            if lock(&e.record).started_at.is_none() {
                e.cancel.cancel();
            }
        }
    }

    pub fn cancel_all(&self) {
        for e in self.all() {
            e.cancel.cancel();
        }
    }
}

fn new_id() -> String {
    format!("run-{:016x}", rand::random::<u64>())
}

/// What a run started here needs of the server: the registry it is entered
/// in, the environment it runs in and the metrics its end is counted in.
/// The server's state provides them, and holds this registry, which is why
/// the registry does not name it.
pub trait RunHost: Send + Sync + 'static {
    fn runs(&self) -> &RunRegistry;
    fn environment(&self) -> &RunEnvironment;
    fn metrics(&self) -> &Metrics;
}

/// Queues a run of `topic` reading `source` (files) instead of the topic's
/// source when given; refused when the topic has one queued or running.
pub fn start_from<H: RunHost>(
    app: &Arc<H>,
    topic: Arc<Topic>,
    source: Option<std::path::PathBuf>,
) -> Result<String, ApiError> {
    let entry = {
        let mut guard = lock(&app.runs().entries);
        let (entries, order) = &mut *guard;
        if let Some(other) = entries
            .values()
            .find(|e| e.topic == topic.name() && e.active())
        {
            return Err(ApiError::class(
                ErrorClass::Conflict,
                format!(
                    "topic {} is already queued or running as {}",
                    topic.name(),
                    other.id
                ),
            )
            .titled("Already running"));
        }
        let entry = Arc::new(Entry {
            id: new_id(),
            topic: topic.name().to_string(),
            progress: Arc::new(Progress::default()),
            cancel: CancellationToken::new(),
            record: Mutex::new(Record {
                queued_at: Utc::now(),
                started_at: None,
                started: None,
                finished_at: None,
                seconds: None,
                ended: None,
                summary: None,
                error: None,
                class: None,
                last: None,
            }),
        });
        entries.insert(entry.id.clone(), entry.clone());
        order.push_back(entry.id.clone());
        while order.len() > KEEP {
            if let Some(old) = order.pop_front() {
                if entries.get(&old).is_some_and(|e| e.active()) {
                    order.push_back(old);
                    break;
                }
                entries.remove(&old);
            }
        }
        entry
    };
    let id = entry.id.clone();
    info!(run = %id, topic = %topic.name(), "run queued");
    let app = app.clone();
    tokio::spawn(async move {
        let permit = tokio::select! {
            permit = app.runs().permits.clone().acquire_owned() => permit.ok(),
            _ = entry.cancel.cancelled() => None,
        };
        let Some(_permit) = permit else {
            finish(
                app.metrics(),
                &entry,
                Ended::Stopped,
                None,
                Some((ErrorClass::Stopped, "stopped before it started".into())),
            );
            return;
        };
        {
            let mut r = lock(&entry.record);
            r.started_at = Some(Utc::now());
            r.started = Some(Instant::now());
        }
        let request = match app.environment().request(
            topic.clone(),
            source.as_deref(),
            entry.progress.clone(),
            entry.cancel.clone(),
        ) {
            Ok(request) => request,
            Err(e) => {
                finish(
                    app.metrics(),
                    &entry,
                    Ended::Failed,
                    None,
                    Some((e.class(), report(&e))),
                );
                return;
            }
        };
        // A run that panics fails alone; the server and the other runs go on.
        let outcome =
            std::panic::AssertUnwindSafe(run::execute(&app.environment().engine, request))
                .catch_unwind()
                .await;
        let Ok(outcome) = outcome else {
            finish(
                app.metrics(),
                &entry,
                Ended::Failed,
                None,
                Some((
                    ErrorClass::Internal,
                    format!(
                        "topic {}: the run failed unexpectedly (a bug); nothing of it is committed and the next run redoes it",
                        topic.name()
                    ),
                )),
            );
            return;
        };
        match outcome {
            Ok(summary) => finish(app.metrics(), &entry, Ended::Succeeded, Some(summary), None),
            Err(e) => {
                let ended = match e.failure() {
                    RunFailure::Stopped => Ended::Stopped,
                    _ => Ended::Failed,
                };
                finish(
                    app.metrics(),
                    &entry,
                    ended,
                    None,
                    Some((e.class(), report(&e))),
                )
            }
        }
    });
    Ok(id)
}

fn finish(
    metrics: &Metrics,
    entry: &Entry,
    ended: Ended,
    summary: Option<RunSummary>,
    error: Option<(ErrorClass, String)>,
) {
    let seconds = {
        let mut r = lock(&entry.record);
        r.ended = Some(ended);
        r.finished_at = Some(Utc::now());
        r.seconds = r.started.map(|s| s.elapsed().as_secs_f64());
        r.summary = summary;
        r.last = Some(entry.progress.snapshot());
        (r.class, r.error) = match error {
            Some((class, message)) => (Some(class), Some(message)),
            None => (None, None),
        };
        r.seconds
    };
    let state = match ended {
        Ended::Succeeded => "succeeded",
        Ended::Failed => "failed",
        Ended::Stopped => "stopped",
    };
    let last = lock(&entry.record).last.clone().unwrap_or_default();
    metrics.record(&entry.topic, state, &last, seconds);
    match (ended, &entry_error(entry)) {
        (Ended::Succeeded, _) | (_, None) => {
            info!(run = %entry.id, topic = %entry.topic, state, "run ended")
        }
        (_, Some(error)) => {
            warn!(run = %entry.id, topic = %entry.topic, state, error = %error, "run ended")
        }
    }
}

fn entry_error(entry: &Entry) -> Option<String> {
    lock(&entry.record).error.clone()
}
