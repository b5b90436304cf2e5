//! One attempt at a run: what every stage works with. A retry of an
//! uncommitted run is a new attempt at the same sequence number.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::error::RunFailure;
use super::progress::Progress;
use super::remote::PartitionWorkers;
use crate::commit::{Committer, Ledger, LedgerError};
use crate::config::Topic;
use crate::mapping::Engine;
use crate::sink::{OutputLocation, TopicLayout};
use crate::source::Source;

/// Everything a run needs.
pub struct RunRequest {
    pub topic: Arc<Topic>,
    pub source: Arc<Source>,
    pub output: OutputLocation,
    pub progress: Arc<Progress>,
    pub cancel: CancellationToken,
    /// Partitions mapped and written at the same time.
    pub parallelism: usize,
    /// Processes that read, map and write the partitions instead of this
    /// one (the executors of a cluster); `None`: this process does.
    pub workers: Option<Arc<dyn PartitionWorkers>>,
}

/// One attempt at a run of a topic.
pub(super) struct Attempt<'a> {
    pub engine: &'a Engine,
    pub topic: &'a Arc<Topic>,
    pub request: &'a RunRequest,
    /// Where the run's files go and how they are named.
    pub location: OutputLocation,
    pub layout: TopicLayout,
    /// The commit protocol: plans, manifests, what follows a commit.
    pub committer: Box<dyn Committer>,
    pub started_at: DateTime<Utc>,
    /// Random id of this attempt (names its key state files; marks its manifest).
    pub id: String,
    /// The sequence this attempt works on, once planned.
    pub planned: OnceLock<u64>,
}

impl<'a> Attempt<'a> {
    pub fn new(engine: &'a Engine, request: &'a RunRequest) -> Attempt<'a> {
        let ledger = Ledger::new(request.output.clone(), request.topic.name())
            .with_publications(crate::warehouse::publications());
        Attempt {
            engine,
            topic: &request.topic,
            request,
            location: ledger.location().clone(),
            layout: ledger.layout().clone(),
            committer: Box::new(ledger),
            started_at: Utc::now(),
            id: format!("{:016x}", rand::random::<u64>()),
            planned: OnceLock::new(),
        }
    }

    /// This attempt as a worker's share of the driver's attempt `id` at
    /// `sequence`.
    pub fn for_sequence(mut self, id: &str, sequence: u64) -> Attempt<'a> {
        self.id = id.to_string();
        let _ = self.planned.set(sequence);
        self
    }

    pub fn name(&self) -> String {
        self.topic.name().to_string()
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.request.progress
    }

    /// `work`, unless the run is stopped first.
    pub async fn cancellable<T>(
        &self,
        work: impl Future<Output = Result<T, RunFailure>>,
    ) -> Result<T, RunFailure> {
        tokio::select! {
            result = work => result,
            _ = self.request.cancel.cancelled() => Err(RunFailure::Stopped),
        }
    }

    /// When another process committed this attempt's sequence first, its
    /// clean-up removes this attempt's half-written files, and the upload that
    /// meets the gap fails: the real cause is the lost race.
    pub async fn explain_failure(&self, failure: RunFailure) -> RunFailure {
        let Some(&seq) = self.planned.get() else {
            return failure;
        };
        if matches!(
            failure,
            RunFailure::Stopped | RunFailure::Ledger(LedgerError::LostRace { .. })
        ) {
            return failure;
        }
        match self.committer.manifest(seq).await {
            Ok(Some(manifest)) if manifest.attempt != self.id => {
                RunFailure::Ledger(LedgerError::LostRace { seq })
            }
            _ => failure,
        }
    }
}
