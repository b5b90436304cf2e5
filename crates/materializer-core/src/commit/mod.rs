//! Commit: how a run's files become visible, all of them at once or none.
//!
//! - A run's *plan* (`_plans/<seq>.json`) fixes its cursors before it reads. It
//!   is written put-if-absent; a retry of an uncommitted run, or a racing
//!   process, finds it and reads exactly the same events. A recording's plan
//!   fixes its files' sizes instead of end cursors: the same bytes hold the
//!   same events, and the read finds the end cursors without a pass of its
//!   own. Output is a pure function of the plan and the configuration, so
//!   racing attempts write the same bytes under the same names.
//! - A run is committed when, and only when, its *manifest*
//!   (`_manifests/<seq>.json`) is written put-if-absent. Readers trust only
//!   manifests; files of an uncommitted run are invisible garbage that a retry
//!   overwrites.
//! - After the commit: `_SUCCESS` markers, the run's [`Publication`]s
//!   (Redshift COPY manifests) and the `_latest` hint. These are idempotent;
//!   a run that finds them missing for the newest manifest writes them
//!   before doing anything else.
//!
//! A run talks to its commit protocol through [`Committer`]. The manifest
//! ledger ([`Ledger`]) is the one protocol today; a table format with a log
//! of its own (Delta Lake, Iceberg) would be a second implementation beside
//! it, writing its log entry where the ledger writes the manifest.

mod cleanup;
mod error;
mod ledger;
mod lock;
mod manifest;
mod publish;

use async_trait::async_trait;

pub use error::LedgerError;
pub use ledger::Ledger;
pub use lock::{TopicLock, is_running};
pub use manifest::{Manifest, ManifestFile, PartitionCursors, Plan, RunCounts};
pub use publish::Publication;

/// A commit protocol, as a run uses it: fix the plan before reading, make the
/// run visible at once, finish what follows a commit.
#[async_trait]
pub trait Committer: Send + Sync {
    /// The newest committed run.
    async fn latest(&self) -> Result<Option<Manifest>, LedgerError>;
    /// Committed run `sequence`, if there is one.
    async fn manifest(&self, sequence: u64) -> Result<Option<Manifest>, LedgerError>;
    /// The plan an earlier attempt fixed for `sequence`.
    async fn plan(&self, sequence: u64) -> Result<Option<Plan>, LedgerError>;
    /// Fixes `plan` unless an attempt fixed one first; gives the plan in force.
    async fn fix_plan(&self, plan: Plan) -> Result<Plan, LedgerError>;
    /// Replaces a plan that no longer follows the committed cursors.
    async fn replace_plan(&self, plan: &Plan) -> Result<(), LedgerError>;
    /// Forgets the plan of a run that found nothing to read.
    async fn drop_plan(&self, sequence: u64) -> Result<(), LedgerError>;
    /// Makes the run visible, exactly once: a second attempt at the same
    /// sequence loses ([`LedgerError::LostRace`]).
    async fn commit(&self, manifest: &Manifest) -> Result<(), LedgerError>;
    /// Whether what follows the commit of `manifest` is done.
    async fn post_commit_done(&self, manifest: &Manifest) -> Result<bool, LedgerError>;
    /// What follows a commit (idempotent: repeated when found undone).
    async fn post_commit(&self, manifest: &Manifest) -> Result<(), LedgerError>;
}

#[async_trait]
impl Committer for Ledger {
    async fn latest(&self) -> Result<Option<Manifest>, LedgerError> {
        Ledger::latest(self).await
    }

    async fn manifest(&self, sequence: u64) -> Result<Option<Manifest>, LedgerError> {
        Ledger::manifest(self, sequence).await
    }

    async fn plan(&self, sequence: u64) -> Result<Option<Plan>, LedgerError> {
        Ledger::plan(self, sequence).await
    }

    async fn fix_plan(&self, plan: Plan) -> Result<Plan, LedgerError> {
        Ledger::fix_plan(self, plan).await
    }

    async fn replace_plan(&self, plan: &Plan) -> Result<(), LedgerError> {
        Ledger::replace_plan(self, plan).await
    }

    async fn drop_plan(&self, sequence: u64) -> Result<(), LedgerError> {
        Ledger::drop_plan(self, sequence).await
    }

    async fn commit(&self, manifest: &Manifest) -> Result<(), LedgerError> {
        Ledger::commit(self, manifest).await
    }

    async fn post_commit_done(&self, manifest: &Manifest) -> Result<bool, LedgerError> {
        Ledger::post_commit_done(self, manifest).await
    }

    async fn post_commit(&self, manifest: &Manifest) -> Result<(), LedgerError> {
        publish::post_commit(self, manifest).await
    }
}
