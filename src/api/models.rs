//! What the API answers and accepts, as documented in the OpenAPI description.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use materializer_core::commit::{Manifest, ManifestFile, RunCounts};
use materializer_core::config::ErrorPlace;
use materializer_core::preview::{PreviewRejected, PreviewTable};
use materializer_core::warehouse::{self, Dialect};

pub use crate::api::columns::ColumnView;
pub use crate::api::views::*;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub runs_active: usize,
    pub runs_queued: usize,
}

/// A topic in the list.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub event_type: Option<String>,
    /// `ok`, `stale` (its files do not load now; the last good configuration is served)
    /// or `broken` (never loaded).
    pub status: String,
    pub error: Option<String>,
    /// Where the error points: the file, and the line and column when there is one.
    pub error_at: Option<ErrorAtView>,
    pub running: bool,
    /// Column(s) identifying an entity (none for a topic that never loaded).
    pub partitioning_key: Option<Vec<String>>,
    pub ordering_key: Option<String>,
    /// `csv` or `parquet`.
    pub format: Option<String>,
    /// The newest committed run.
    pub last_run: Option<LastRunView>,
}

/// The place a configuration error points at.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorAtView {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl From<&ErrorPlace> for ErrorAtView {
    fn from(place: &ErrorPlace) -> Self {
        ErrorAtView {
            file: place.file.display().to_string(),
            line: place.line,
            column: place.column,
        }
    }
}

/// The newest committed run of a topic, from its manifest.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LastRunView {
    pub sequence: u64,
    pub committed_at: DateTime<Utc>,
    pub events_read: u64,
    pub main_rows: u64,
    pub correction_rows: u64,
    pub compaction_rate: f64,
}

impl From<&Manifest> for LastRunView {
    fn from(m: &Manifest) -> Self {
        LastRunView {
            sequence: m.sequence,
            committed_at: m.committed_at,
            events_read: m.counts.events_read,
            main_rows: m.counts.main_rows,
            correction_rows: m.counts.correction_rows,
            compaction_rate: m.counts.compaction_rate(),
        }
    }
}

/// A topic's configuration, schema and SQL.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicDetail {
    pub name: String,
    pub event_type: String,
    pub partitioning_key: Vec<String>,
    pub ordering_key: String,
    /// `[output]` of topic.toml.
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
    /// `[source]` of topic.toml.
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    pub schema_origin: String,
    /// Columns of `events`.
    pub events: Vec<ColumnView>,
    /// Parts of the JSON schema without a table form.
    pub schema_warnings: Vec<String>,
    /// The analyst's mapping.
    pub mapping_sql: String,
    /// The version of `mapping_sql` (`sha256:<hex>`), as `GET /topics/{topic}/mapping` names versions.
    #[serde(default)]
    pub mapping_version: String,
    pub output_view: String,
    /// Columns of the files.
    pub output_columns: Vec<ColumnView>,
    /// The whole SQL chain a run executes.
    pub generated_sql: String,
    /// Why the topic's files do not load now (the configuration shown is the last good one).
    pub error: Option<String>,
}

/// What a preview runs on.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Mapping SQL to try instead of the saved one (CREATE VIEW statements over `events`).
    pub mapping: Option<String>,
    /// Sample events; without them, the first `limit` events of the topic's source.
    /// Events as Nakadi delivers them: one that is not an object, or does not
    /// fit the schema, is answered among the rejected ones, as a run would.
    #[schema(value_type = Option<Vec<Value>>)]
    pub events: Option<Vec<serde_json::Value>>,
    /// Sample events as text, each exactly as the source holds it (one event
    /// per line of a file, or `lines` of the sample): one that is not valid
    /// JSON is answered among the rejected ones with the reason a run gives.
    /// Not together with `events`.
    pub raw_events: Option<Vec<String>>,
    /// How many events to read from the source when no events are given
    /// (default 20, at most 1000).
    #[serde(default, deserialize_with = "count")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Where the sample events come from when none are given, instead of
    /// the topic's source: a file or folder under the server's recordings
    /// folder (`serve --recordings`), of events (one JSON event per line) or
    /// of recorded Nakadi batches.
    pub source: Option<String>,
}

/// What a run reads (the body of `POST /topics/{topic}/runs`, optional).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunRequestBody {
    /// Files to read instead of the topic's source: a file or folder under
    /// the server's recordings folder (`serve --recordings`, relative to
    /// it), of events (one JSON event per line) or of recorded Nakadi
    /// batches. Without it, the topic's `[source] recording`, else the live
    /// Nakadi, else `<recordings>/<topic>`.
    pub source: Option<String>,
}

/// Rows a mapping produces from sample events.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PreviewResponse {
    pub main: TableView,
    pub correction: TableView,
    pub rejected: Vec<RejectedView>,
    pub counts: CountsView,
    /// The compaction rate of these events, as a run over them reports it
    /// (superseded of decoded events; corrections and rejected events do
    /// not count).
    #[serde(default)]
    pub compaction_rate: f64,
}

/// Rows of one output.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TableView {
    pub columns: Vec<String>,
    /// One JSON object per row, keyed by column.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
    /// The mapping made more rows (or bytes) than a preview answers; `rows`
    /// holds the first of them.
    pub truncated: bool,
}

impl From<PreviewTable> for TableView {
    fn from(table: PreviewTable) -> Self {
        TableView {
            columns: table.columns,
            rows: table.rows,
            truncated: table.truncated,
        }
    }
}

/// A sample event that did not decode.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RejectedView {
    /// Position of the event in the request (0-based).
    pub index: usize,
    pub reason: String,
}

impl From<PreviewRejected> for RejectedView {
    fn from(rejected: PreviewRejected) -> Self {
        RejectedView {
            index: rejected.index,
            reason: rejected.reason,
        }
    }
}

/// Counts of a run or a preview.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CountsView {
    pub events_read: u64,
    pub events_rejected: u64,
    pub main_input: u64,
    pub superseded: u64,
    pub correction_events: u64,
    pub main_rows: u64,
    pub correction_rows: u64,
    /// Rows of versions older than the run's newest of their key, written
    /// for the warehouse's history (OLDER files).
    #[serde(default)]
    pub older_rows: u64,
    /// Events (newest or late) that delete their key.
    #[serde(default)]
    pub deletes: u64,
}

impl From<&RunCounts> for CountsView {
    fn from(c: &RunCounts) -> Self {
        CountsView {
            events_read: c.events_read,
            events_rejected: c.events_rejected,
            main_input: c.main_input,
            superseded: c.superseded,
            correction_events: c.correction_events,
            main_rows: c.main_rows,
            correction_rows: c.correction_rows,
            older_rows: c.older_rows,
            deletes: c.deletes,
        }
    }
}

/// What a reload found.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    /// Topics served now.
    pub topics: Vec<String>,
    /// Topics whose files do not load, with the reason.
    pub broken: BTreeMap<String, String>,
    /// Broken topics still served with their last good configuration.
    pub kept_last_good: Vec<String>,
}

/// Answer to a trigger.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Triggered {
    pub id: String,
    pub status_url: String,
    pub state: String,
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many runs (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// Live counters of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ProgressView {
    pub partitions_total: u64,
    pub partitions_finished: u64,
    /// Events the run's plan holds, when its offsets tell (for a recording,
    /// once it is read).
    pub events_planned: Option<u64>,
    pub events_read: u64,
    pub bytes_read: u64,
    /// Bytes of the recording the run reads, when its source is a recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_bytes: Option<u64>,
    /// Of `recording_bytes`, those read so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_bytes_read: Option<u64>,
    pub events_rejected: u64,
    pub main_rows: u64,
    pub correction_rows: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub retries: u64,
    /// The cluster's job that runs the partitions, for a run on a cluster
    /// (`--cluster`), once the cluster accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_job: Option<String>,
}

/// A run as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub topic: String,
    /// queued, running, committing, succeeded, failed or stopped.
    pub state: String,
    /// Set when a stop was asked for and the run has not ended yet.
    pub stop_requested: bool,
    /// Sequence number of the committed run (succeeded runs).
    pub sequence: Option<u64>,
    /// committed or nothing_new (succeeded runs).
    pub outcome: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub progress: ProgressView,
    pub compaction_rate: Option<f64>,
    pub counts: Option<CountsView>,
    pub files: Option<usize>,
    pub error: Option<String>,
    /// What the run is called: `#N` for the run committed as N, `nothing
    /// new after #N` for a run that found nothing to commit, else its id.
    #[serde(default)]
    pub label: String,
    /// The class of the failure of a failed or stopped run, with what to do.
    #[serde(default)]
    pub error_class: Option<RunErrorClass>,
    /// Each partition's cursors before and after the run (committed runs).
    #[serde(default)]
    pub partitions: Option<Vec<PartitionView>>,
    /// Seconds per stage (runs of this server that ended; manifests do not record them).
    #[serde(default)]
    pub timings: Option<TimingsView>,
    /// Events read per second of the run's time (`events read / seconds`).
    #[serde(default)]
    pub events_per_second: Option<f64>,
    /// Rows of the run's KEYS files (committed runs).
    #[serde(default)]
    pub keys_rows: Option<u64>,
}

impl RunView {
    /// Whether the run is queued or going on.
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running" | "committing")
    }

    /// A committed run read back from its manifest.
    pub fn from_manifest(m: &Manifest) -> RunView {
        let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
        let seconds = (m.committed_at - m.started_at).num_milliseconds() as f64 / 1000.0;
        RunView {
            id: format!("{}@{}", m.topic, m.sequence),
            topic: m.topic.clone(),
            state: "succeeded".into(),
            stop_requested: false,
            sequence: Some(m.sequence),
            outcome: Some("committed".into()),
            queued_at: m.started_at,
            started_at: Some(m.started_at),
            finished_at: Some(m.committed_at),
            seconds: Some(seconds),
            progress: ProgressView {
                partitions_total: m.partitions.iter().filter(|p| p.end != p.start).count() as u64,
                partitions_finished: m.partitions.iter().filter(|p| p.end != p.start).count()
                    as u64,
                events_planned: Some(m.counts.events_read),
                events_read: m.counts.events_read,
                bytes_read: 0,
                recording_bytes: None,
                recording_bytes_read: None,
                events_rejected: m.counts.events_rejected,
                main_rows: m.counts.main_rows,
                correction_rows: m.counts.correction_rows,
                files_written: m.files.len() as u64,
                bytes_written: bytes,
                retries: 0,
                workers_job: None,
            },
            compaction_rate: Some(m.counts.compaction_rate()),
            counts: Some(CountsView::from(&m.counts)),
            files: Some(m.files.len()),
            error: None,
            label: run_label("", Some("committed"), Some(m.sequence)),
            error_class: None,
            partitions: Some(m.partitions.iter().map(PartitionView::from).collect()),
            timings: None,
            events_per_second: events_per_second(m.counts.events_read, Some(seconds)),
            keys_rows: Some(keys_rows(&m.files)),
        }
    }
}

/// One event of `GET /runs/{id}/events`, by its fields: `progress` while
/// the run is queued or going on, `end` once, last.
#[derive(ToSchema)]
pub struct RunEvent {
    #[schema(inline)]
    pub event: RunEventName,
    /// The run as `GET /runs/{id}` answers it (a RunView), as JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RunEventName {
    Progress,
    End,
}

/// A file of a committed run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RunFileView {
    /// Path relative to the topic's folder in the output location.
    pub path: String,
    /// main, correction or rejected.
    pub kind: String,
    /// The Nakadi partition whose events the file holds.
    pub partition: String,
    /// `[column, value]` pairs of the output partition (empty without `partition_by`).
    #[schema(value_type = Vec<Vec<String>>)]
    pub output_partition: Vec<(String, String)>,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl From<&ManifestFile> for RunFileView {
    fn from(f: &ManifestFile) -> Self {
        RunFileView {
            path: f.path.clone(),
            kind: f.kind.as_str().to_string(),
            partition: f.partition.clone(),
            output_partition: f.output_partition.clone(),
            rows: f.rows,
            bytes: f.bytes,
            sha256: f.sha256.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SampleQuery {
    /// How many events (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Files to read instead of the topic's source: a file or folder under
    /// the server's recordings folder (`serve --recordings`).
    pub source: Option<String>,
}

/// The first events of a topic's source, as a preview takes them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SampleView {
    /// Events as the source holds them; one that is not JSON is given as a
    /// string (a preview rejects it, as a run would).
    #[schema(value_type = Vec<Value>)]
    pub events: Vec<serde_json::Value>,
    /// The same events as text, each exactly as the source holds it (one per
    /// line): what `raw_events` of a preview takes.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Where they were read.
    pub source: String,
}

/// The dialect of a request for warehouse SQL that names none.
pub const DEFAULT_DIALECT: &str = "postgres";

/// The query of a request for warehouse SQL; its OpenAPI description is
/// written below, from the engine's list of dialects.
#[derive(Deserialize)]
pub struct WarehouseQuery {
    /// One of the engine's dialects, by name; [`DEFAULT_DIALECT`] when absent.
    #[serde(default, deserialize_with = "known_dialect")]
    pub dialect: Option<&'static Dialect>,
}

/// Takes a dialect's name. Any other is refused with serde's words for the
/// unknown variant of an enum of the names ("unknown variant `mysql`,
/// expected one of ..."), as when the names were an enum.
fn known_dialect<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'static Dialect>, D::Error> {
    let name = String::deserialize(deserializer)?;
    warehouse::dialect_named(&name)
        .map(Some)
        .map_err(|_| serde::de::Error::unknown_variant(&name, warehouse::dialect_names()))
}

impl IntoParams for WarehouseQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let names = warehouse::dialect_names();
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("The SQL dialects of the warehouse import."))
            .enum_values(Some(names.iter().copied()));
        vec![
            ParameterBuilder::new()
                .name("dialect")
                .parameter_in(ParameterIn::Query)
                .description(Some(dialect_choices(names)))
                .required(Required::False)
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// "postgres (default), redshift or oracle.": the dialects, the default first.
fn dialect_choices(names: &[&str]) -> String {
    let mut choices = vec![format!("{DEFAULT_DIALECT} (default)")];
    choices.extend(
        names
            .iter()
            .filter(|name| **name != DEFAULT_DIALECT)
            .map(|name| name.to_string()),
    );
    match choices.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}.", rest.join(", ")),
        _ => format!("{}.", choices.concat()),
    }
}

/// The warehouse import SQL of a topic.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WarehouseSqlView {
    pub dialect: String,
    pub sql: String,
}

/// What this server is and allows.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct InfoView {
    pub version: String,
    /// Whether `PUT /topics/{topic}/mapping` is allowed (`serve --allow-mapping-edits`).
    pub mapping_edits: bool,
    /// Longest time a preview may take.
    pub preview_timeout_seconds: f64,
    /// Most sample events one preview takes.
    pub preview_max_events: usize,
}

/// A mapping to save.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingRequest {
    /// CREATE VIEW statements over `events`.
    pub mapping: String,
    /// The version of the text this one replaces, as `GET /topics/{topic}/mapping`
    /// answered it when the editing began: when the file holds another text
    /// now, nothing is written and the answer is `409` with the file's text.
    /// Without it the file is replaced whatever it holds.
    pub base_version: Option<String>,
}

/// A count, written as any JSON number with no fraction (`20`, `20.0`, `2e1`).
fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)));
    }
    match number.as_f64() {
        Some(v) if v.fract() == 0.0 && v >= 0.0 => Ok(Some(if v >= usize::MAX as f64 {
            usize::MAX
        } else {
            v as usize
        })),
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a count (a whole number, 0 or more)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_dialect_is_one_of_the_engine() {
        assert!(warehouse::dialect_named(DEFAULT_DIALECT).is_ok());
    }

    #[test]
    fn the_choices_name_the_default_first() {
        assert_eq!(
            dialect_choices(&["redshift", "postgres", "oracle"]),
            "postgres (default), redshift or oracle."
        );
        assert_eq!(
            dialect_choices(&["postgres", "oracle"]),
            "postgres (default) or oracle."
        );
        assert_eq!(dialect_choices(&["postgres"]), "postgres (default).");
    }
}
