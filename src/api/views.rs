//! What the API answers for a run's full story (cursors, stage times, the
//! manifest, file previews), a mapping's file as it is on disk, and the
//! source's events: the shapes the console's run detail page and workbench
//! read, documented in the OpenAPI description like the others.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use materializer_core::ErrorClass;
use materializer_core::commit::{ManifestFile, PartitionCursors};
use materializer_core::run::Timings;
use materializer_core::sink::FileKind;

use crate::api::error::SqlError;
use crate::api::models::ErrorAtView;

/// The version of a mapping's text: `sha256:` and the hex digest of its
/// bytes. The same text has the same version wherever it is (the file on
/// disk, the mapping served), so a save can tell whether the file changed
/// since the text it replaces was read.
pub fn mapping_version(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Events read per second of the run's time: the one definition of a
/// run's rate, for runs of this server and runs read back from manifests.
pub fn events_per_second(events: u64, seconds: Option<f64>) -> Option<f64> {
    seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| events as f64 / s)
}

/// What a run is called: `#N` for the run committed as N; a run that found
/// nothing new is not a run of its own in the ledger, so it is named after
/// the run it found nothing after (never `#N` itself); other runs by id.
pub fn run_label(id: &str, outcome: Option<&str>, sequence: Option<u64>) -> String {
    match (outcome, sequence) {
        (Some("committed"), Some(n)) => format!("#{n}"),
        (Some("nothing_new"), Some(n)) => format!("nothing new after #{n}"),
        (Some("nothing_new"), None) => "nothing new".into(),
        _ => id.to_string(),
    }
}

/// Rows of the run's KEYS files: every version the run decided, one row each.
pub fn keys_rows<'a>(files: impl IntoIterator<Item = &'a ManifestFile>) -> u64 {
    files
        .into_iter()
        .filter(|f| f.kind == FileKind::Keys)
        .map(|f| f.rows)
        .sum()
}

/// Why a run failed or stopped, as `GET /problems/{kind}` describes it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RunErrorClass {
    /// The class: `config`, `source-unavailable`, `sink-unavailable`,
    /// `conflict`, `data`, `stopped` or `internal` (the command line's exit codes).
    pub class: String,
    /// `/problems/<class>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// What to do about it.
    pub advice: String,
    /// Whether running again without changing anything may succeed.
    pub retryable: bool,
    /// The exit code of `materializer run` for the same failure.
    pub exit_code: u8,
}

impl From<ErrorClass> for RunErrorClass {
    fn from(class: ErrorClass) -> Self {
        RunErrorClass {
            class: class.slug().to_string(),
            kind: format!("/problems/{}", class.slug()),
            title: class.title().to_string(),
            advice: class.advice().to_string(),
            retryable: class.retryable(),
            exit_code: class.exit_code(),
        }
    }
}

/// Cursors of one partition in a run: it read the events after `before` up
/// to and including `after`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PartitionView {
    pub partition: String,
    /// The cursor the run started after (`BEGIN`: the partition's oldest event).
    pub before: String,
    /// The cursor the run ended at (the next run starts after it).
    pub after: String,
    /// Events the run read from this partition, when recorded.
    pub events: Option<u64>,
}

impl From<&PartitionCursors> for PartitionView {
    fn from(p: &PartitionCursors) -> Self {
        PartitionView {
            partition: p.partition.clone(),
            before: p.start.to_string(),
            after: p.end.to_string(),
            events: p.events,
        }
    }
}

/// Seconds a run spent in each stage (runs of this server; manifests do not
/// record them).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TimingsView {
    /// Finding the committed run, fixing the plan.
    pub plan: f64,
    /// Reading and decoding the events.
    pub read: f64,
    /// Deciding every event's class, mapping and writing the files and the key state.
    pub map_write: f64,
    /// Of `map_write`: looking the keys up in the key state and writing its segments.
    pub key_state: f64,
    /// Writing the manifest, the post-commit files and the source's cursors.
    pub commit: f64,
}

impl From<&Timings> for TimingsView {
    fn from(t: &Timings) -> Self {
        TimingsView {
            plan: t.plan,
            read: t.read,
            map_write: t.map_write,
            key_state: t.key_state,
            commit: t.commit,
        }
    }
}

/// Which file of a run: its path as the manifest records it.
#[derive(Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The file's path relative to the topic's folder, exactly as `GET /runs/{id}/files` lists it.
    pub path: String,
    /// How many rows to show (default 20, at most 200; previews only).
    #[param(minimum = 1, maximum = 200)]
    pub rows: Option<u64>,
}

/// The first rows of a file of a committed run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FilePreview {
    pub path: String,
    /// main, correction, older, keys or rejected.
    pub kind: String,
    /// `csv`, `parquet` or `ndjson` (rejected events).
    pub format: String,
    pub columns: Vec<String>,
    /// Each row's values as text, in column order; `null` for NULL.
    #[schema(value_type = Vec<Vec<Option<String>>>)]
    pub rows: Vec<Vec<Option<String>>>,
    /// The file holds more rows than shown.
    pub truncated: bool,
    /// Rows the manifest records for the file.
    pub total_rows: u64,
}

/// A topic's `mapping.sql` as it is on disk now, with its version, and why
/// the topic does not load when it does not.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MappingFileView {
    pub topic: String,
    /// The file's text.
    pub mapping: String,
    /// The text's version (`sha256:<hex>`): send it back as `base_version` when saving.
    pub version: String,
    /// The version of the mapping the server runs now (none for a topic that
    /// never loaded); differs from `version` when the file changed since the
    /// last reload or save.
    pub served_version: Option<String>,
    /// `ok`, `stale` (the files do not load; the last good configuration is
    /// served) or `broken` (never loaded).
    pub status: String,
    /// Why the topic's files do not load.
    pub error: Option<String>,
    pub error_at: Option<ErrorAtView>,
    /// The error's place in `mapping.sql`, when it is there (for an editor to mark).
    pub errors: Vec<SqlError>,
}

/// Which source events to show.
#[derive(Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceEventsQuery {
    /// Only this partition (default: all, in the order they arrive).
    pub partition: Option<String>,
    /// The first offset to show (inclusive), as the events list shows offsets;
    /// default: the oldest event. Needs `partition`.
    pub from: Option<String>,
    /// Only events whose text holds this (case-insensitive).
    pub filter: Option<String>,
    /// How many events (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

/// One event of the source, as it holds it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SourceEvent {
    pub partition: String,
    pub offset: String,
    /// The event's text exactly as the source delivered it (it may not be JSON).
    pub event: String,
}

/// Events of a topic's source, read with cursors (nothing is committed).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SourceEventsView {
    /// Where they were read.
    pub source: String,
    /// The partitions seen.
    pub partitions: Vec<String>,
    pub events: Vec<SourceEvent>,
    /// Events looked at (matching the filter or not).
    pub scanned: u64,
    /// Whether the read stopped before the end of the source (at `limit`
    /// matches, the most events one request looks at, or the time allowed).
    pub more: bool,
}

/// The error of a mapping file at its place, when the place is in `mapping.sql`.
pub fn mapping_errors(reason: &str, at: Option<&ErrorAtView>) -> Vec<SqlError> {
    match at {
        Some(at) if at.file.ends_with(materializer_core::config::MAPPING_FILE) => {
            vec![SqlError {
                line: at.line,
                column: at.column,
                message: reason.to_string(),
            }]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_tell_a_run_that_found_nothing_from_the_run_before_it() {
        assert_eq!(run_label("run-1", Some("committed"), Some(1)), "#1");
        assert_eq!(
            run_label("run-2", Some("nothing_new"), Some(1)),
            "nothing new after #1"
        );
        assert_eq!(run_label("run-3", None, None), "run-3");
    }

    #[test]
    fn a_version_names_the_text() {
        assert_eq!(mapping_version("a"), mapping_version("a"));
        assert_ne!(mapping_version("a"), mapping_version("a\n"));
        assert!(mapping_version("").starts_with("sha256:"));
    }

    #[test]
    fn a_rate_needs_time() {
        assert_eq!(events_per_second(10, Some(2.0)), Some(5.0));
        assert_eq!(events_per_second(10, Some(0.0)), None);
        assert_eq!(events_per_second(10, None), None);
    }
}
