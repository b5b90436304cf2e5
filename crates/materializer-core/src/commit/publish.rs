//! What follows a commit: leftovers removed, a `_SUCCESS` marker in every
//! folder of the run, Redshift COPY manifests, then the `_latest` hint. Each
//! step is idempotent; the hint comes last, so a run that finds it behind the
//! newest manifest does them all again.

use std::collections::BTreeSet;

use super::cleanup::remove_leftovers;
use super::{Ledger, LedgerError, Manifest};
use crate::sink::FileKind;
use crate::sink::layout::seq_name;

/// Leftovers of uncommitted attempts removed, `_SUCCESS` per output folder,
/// Redshift COPY manifests, then the hint.
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
    for kind in [
        FileKind::Main,
        FileKind::Correction,
        FileKind::Older,
        FileKind::Keys,
    ] {
        let entries: Vec<serde_json::Value> = manifest
            .files
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| {
                serde_json::json!({
                    "url": ledger.url_of(&f.path),
                    "mandatory": true,
                    "meta": {"content_length": f.bytes}
                })
            })
            .collect();
        let body =
            serde_json::to_vec_pretty(&serde_json::json!({ "entries": entries })).expect("json");
        ledger
            .put(
                &ledger.layout().redshift_manifest(kind, manifest.sequence),
                body,
            )
            .await?;
    }
    ledger
        .put(
            &ledger.layout().latest_hint(),
            seq_name(manifest.sequence).into_bytes(),
        )
        .await
}
