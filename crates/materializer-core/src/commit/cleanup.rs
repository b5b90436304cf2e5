//! After a commit: what uncommitted attempts of the run left behind, and the
//! key state files no manifest needs any more, are removed.

use std::collections::BTreeSet;

use object_store::path::Path;

use super::{Ledger, LedgerError, Manifest};
use crate::sink::FileKind;
use crate::state::{STATE_FOLDER, written_by_run};

/// Removes the half-written files a killed upload to a local folder left
/// (`<name>#<n>`, which the object store's listings do not show): a
/// loader globbing the folder must find only committed files.
fn remove_staged_uploads(ledger: &Ledger, root: &Path) -> Result<(), LedgerError> {
    let Some(local) = &ledger.location().local_root else {
        return Ok(());
    };
    let folder = local.join(root.as_ref());
    let mut pending = vec![folder];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(LedgerError::Local {
                    action: "listing",
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().contains('#') {
                // Our file names never hold '#' (it is escaped in partition values).
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(LedgerError::Local {
                            action: "removing",
                            path: path.display().to_string(),
                            source,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Removes what earlier, uncommitted attempts of a committed run left in
/// the run's folders (files no manifest lists).
pub(super) async fn remove_leftovers(
    ledger: &Ledger,
    manifest: &Manifest,
) -> Result<(), LedgerError> {
    let listed: BTreeSet<Path> = manifest
        .files
        .iter()
        .map(|f| ledger.layout().resolve(&f.path))
        .collect();
    for kind in [
        FileKind::Main,
        FileKind::Correction,
        FileKind::Rejected,
        FileKind::Older,
        FileKind::Keys,
    ] {
        let root = ledger.layout().run_root(kind, manifest.sequence);
        remove_staged_uploads(ledger, &root)?;
        for object in ledger.list_under(&root).await? {
            if listed.contains(&object.location) || object.location.filename() == Some("_SUCCESS") {
                continue;
            }
            ledger.delete_if_present(&object.location).await?;
        }
    }
    // The counters the tasks of a run on workers put while it ran, every
    // attempt's (a killed driver leaves its own).
    for object in ledger
        .list_under(&ledger.layout().progress(manifest.sequence))
        .await?
    {
        ledger.delete_if_present(&object.location).await?;
    }
    remove_unlisted_state(ledger, manifest).await
}

/// Removes key state files no manifest needs any more: other attempts',
/// and those the runs up to `manifest` compacted away.
async fn remove_unlisted_state(ledger: &Ledger, manifest: &Manifest) -> Result<(), LedgerError> {
    let mut keep: BTreeSet<Path> = BTreeSet::new();
    keep.extend(
        manifest
            .state
            .iter()
            .map(|s| ledger.layout().resolve(&s.path)),
    );
    keep.extend(
        manifest
            .key_state
            .iter()
            .flat_map(|index| &index.segments)
            .map(|s| ledger.layout().resolve(&s.path)),
    );
    let dir = ledger.layout().root().clone().join(STATE_FOLDER);
    for object in ledger.list_under(&dir).await? {
        // Later runs' files (a run under way elsewhere) are not ours to judge.
        let seq = object.location.filename().and_then(written_by_run);
        if seq.is_some_and(|s| s <= manifest.sequence) && !keep.contains(&object.location) {
            ledger.delete_if_present(&object.location).await?;
        }
    }
    Ok(())
}
