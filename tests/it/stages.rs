//! How far a run had got, as its output shows it (local folder or S3), and
//! SIGKILL sent to a running binary as soon as its run reaches a stage: kill
//! tests record where each kill landed instead of killing at random moments.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use materializer_core::commit::Ledger;
use materializer_core::sink::OutputLocation;

/// How far a run had got, in the order a run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// No plan of the run yet.
    Planning,
    /// Its plan, nothing else of it: reading (and deciding) its events.
    Reading,
    /// Key state segments of the run, no data file yet.
    Deciding,
    /// Data files of the run, no manifest.
    Writing,
    /// Its manifest, not yet every `_SUCCESS` marker of its folders.
    Committing,
    /// Its manifest and every marker.
    Done,
}

const DATA_FOLDERS: [&str; 5] = ["main", "correction", "older", "keys", "rejected"];

/// The stage run `sequence` of `topic` reached in `output`, from the
/// objects listed under the topic (files being written are not listed: a
/// run is `Writing` once one of its data files is whole).
pub(crate) async fn stage_of(output: &OutputLocation, topic: &str, sequence: u64) -> Stage {
    let ledger = Ledger::new(output.clone(), topic);
    let root = ledger.layout().root().clone();
    let objects: Vec<_> = output
        .store
        .list(Some(&root))
        .try_collect()
        .await
        .unwrap_or_default();
    let relative: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| {
            o.location.prefix_match(&root).map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
        })
        .collect();
    stage_in(&relative, sequence)
}

/// The stage of run `sequence` shown by the paths of the objects under its
/// topic (relative to the topic's folder).
fn stage_in(objects: &BTreeSet<String>, sequence: u64) -> Stage {
    let name = format!("{sequence:010}");
    let run_folders: Vec<String> = DATA_FOLDERS
        .iter()
        .map(|kind| format!("{kind}/run={name}/"))
        .collect();
    let has_any = |folder: &str| objects.iter().any(|o| o.starts_with(folder));
    if objects.contains(&format!("_manifests/{name}.json")) {
        let marked = run_folders
            .iter()
            .filter(|folder| has_any(folder))
            .all(|folder| objects.contains(&format!("{folder}_SUCCESS")));
        return if marked {
            Stage::Done
        } else {
            Stage::Committing
        };
    }
    if run_folders.iter().any(|folder| has_any(folder)) {
        return Stage::Writing;
    }
    let segment = objects.iter().any(|o| {
        o.strip_prefix("_state/")
            .and_then(|rest| rest.split('/').nth(1))
            .is_some_and(|file| file.starts_with(&name))
    });
    if segment {
        Stage::Deciding
    } else if objects.contains(&format!("_plans/{name}.json")) {
        Stage::Reading
    } else {
        Stage::Planning
    }
}

/// Readies `command` for a kill aimed at `aim`. The moment between a run's
/// manifest and its `_SUCCESS` markers is a few file writes: too short to
/// be seen from outside on busy cores. A kill aimed at `Committing` makes
/// the run wait there (the `markers` hold point of the test build, whose
/// gate, `gate`, is never opened), so that the kill lands mid-commit.
pub(crate) fn aim_at(command: &mut tokio::process::Command, aim: Stage, gate: &std::path::Path) {
    if aim == Stage::Committing {
        command
            .env("MATERIALIZER_FAILPOINT", "markers")
            .env("MATERIALIZER_FAILPOINT_GATE", gate);
    }
}

/// Sends SIGKILL to `child` as soon as run `sequence` of `topic` reaches
/// `aim` in `output` (or the child ended on its own first); returns the
/// stage the output shows once the child is dead.
pub(crate) async fn kill_when(
    child: &mut tokio::process::Child,
    output: &OutputLocation,
    topic: &str,
    sequence: u64,
    aim: Stage,
) -> Stage {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stage_of(output, topic, sequence).await < aim && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run never reached {aim:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = child.start_kill(); // SIGKILL
    let _ = child.wait().await;
    stage_of(output, topic, sequence).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(paths: &[&str]) -> Stage {
        stage_in(&paths.iter().map(|p| p.to_string()).collect(), 2)
    }

    #[test]
    fn the_stage_is_read_from_the_objects_of_the_run_alone() {
        let before = ["_manifests/0000000001.json", "main/run=0000000001/a.csv"];
        assert_eq!(stage(&before), Stage::Planning);
        assert_eq!(
            stage(&[&before[..], &["_plans/0000000002.json"]].concat()),
            Stage::Reading
        );
        let deciding = ["_plans/0000000002.json", "_state/07/0000000002-0.parquet"];
        assert_eq!(stage(&deciding), Stage::Deciding);
        let writing = [&deciding[..], &["older/run=0000000002/p0.csv"]].concat();
        assert_eq!(stage(&writing), Stage::Writing);
        let committing = [&writing[..], &["_manifests/0000000002.json"]].concat();
        assert_eq!(stage(&committing), Stage::Committing);
        let done = [&committing[..], &["older/run=0000000002/_SUCCESS"]].concat();
        assert_eq!(stage(&done), Stage::Done);
    }
}
