//! What follows a commit: leftovers removed, a `_SUCCESS` marker in every
//! folder of the run, the run's publications (Redshift COPY manifests), then
//! the `_latest` hint. Each step is idempotent; the hint comes last, so a run
//! that finds it behind the newest manifest does them all again.

use std::collections::BTreeSet;

use object_store::path::Path;

use super::cleanup::remove_leftovers;
use super::{Ledger, LedgerError, Manifest};
use crate::sink::layout::seq_name;

/// Files published beside a committed run for its readers, such as a
/// warehouse's load manifests. They are written after the commit, before
/// the hint, and again by the next run when the hint says they may be
/// missing; the same manifest gives the same files.
pub trait Publication: Send + Sync {
    /// The files that go with `manifest`: each path and its bytes.
    fn files(&self, manifest: &Manifest, ledger: &Ledger) -> Vec<(Path, Vec<u8>)>;
}

/// Leftovers of uncommitted attempts removed, `_SUCCESS` per output folder,
/// the publications, then the hint.
pub(super) async fn post_commit(ledger: &Ledger, manifest: &Manifest) -> Result<(), LedgerError> {
    remove_leftovers(ledger, manifest).await?;
    let mut folders: BTreeSet<String> = BTreeSet::new();
    for file in &manifest.files {
        if let Some((dir, _)) = file.path.rsplit_once('/') {
            folders.insert(dir.to_string());
        }
    }
    for dir in folders {
        let marker = ledger.layout().resolve(&format!("{dir}/_SUCCESS"));
        ledger.put(&marker, Vec::new()).await?;
    }
    for publication in ledger.publications() {
        for (path, body) in publication.files(manifest, ledger) {
            ledger.put(&path, body).await?;
        }
    }
    ledger
        .put(
            &ledger.layout().latest_hint(),
            seq_name(manifest.sequence).into_bytes(),
        )
        .await
}
