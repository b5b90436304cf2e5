//! The settings of `topic.toml`, as types that hold only legal values: what
//! does not fit is refused when the topic loads.

use serde::{Deserialize, Serialize};

use crate::schema::Category;
use crate::source::SubscriptionSettings;

/// Output file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Csv,
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Compression of CSV files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvCompression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// The CSV dialect of a topic's files. The defaults load into PostgreSQL
/// (`COPY ... CSV HEADER`) and Redshift (`COPY ... CSV IGNOREHEADER 1`) as they are.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    pub delimiter: char,
    pub quote: char,
    /// Escape character for quotes inside quoted values; unset doubles the quote.
    pub escape: Option<char>,
    /// How NULL is written (unquoted); empty strings are always quoted.
    pub null: String,
    pub header: bool,
    pub compression: CsvCompression,
    /// chrono format of timestamps (written in UTC).
    pub timestamp_format: String,
    /// chrono format of dates.
    pub date_format: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            quote: '"',
            escape: None,
            null: String::new(),
            header: true,
            compression: CsvCompression::None,
            timestamp_format: "%Y-%m-%dT%H:%M:%S%.fZ".into(),
            date_format: "%Y-%m-%d".into(),
        }
    }
}

/// Compression of Parquet files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    None,
    Snappy,
    #[default]
    Zstd,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetOptions {
    pub compression: ParquetCompression,
    /// Rows per row group.
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: ParquetCompression::Zstd,
            row_group_rows: 1 << 20,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSettings {
    pub format: Format,
    /// Object store URL or folder for this topic's output; overrides the run's default.
    pub location: Option<String>,
    /// Output columns whose values split files into `column=value/` folders.
    pub partition_by: Vec<String>,
    pub csv: CsvOptions,
    pub parquet: ParquetOptions,
}

/// How the warehouse loads a topic (see `materializer warehouse-sql`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseSettings {
    /// Base name of the warehouse tables (default: the topic name with `_` for `-`).
    pub table: Option<String>,
    /// Output columns holding the partitioning key (default: the key paths' last parts).
    pub key_columns: Option<Vec<String>>,
    /// Output column holding the ordering key (default: the key path's last part).
    pub ordering_column: Option<String>,
    /// Whether the import keeps a history table (every version of every key
    /// with its validity range) beside the ODS.
    pub history: bool,
}

impl WarehouseSettings {
    /// The output columns holding the key parts and the ordering key: the
    /// ones named here, else the last part of each key path.
    pub fn key_names(&self, compaction: &crate::mapping::Compaction) -> (Vec<String>, String) {
        let last_part = |path: &str| path.rsplit('.').next().unwrap_or(path).to_string();
        let keys = self.key_columns.clone().unwrap_or_else(|| {
            compaction
                .partitioning_key
                .iter()
                .map(|p| last_part(p))
                .collect()
        });
        let ordering = self
            .ordering_column
            .clone()
            .unwrap_or_else(|| last_part(&compaction.ordering_key));
        (keys, ordering)
    }
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            table: None,
            key_columns: None,
            ordering_column: None,
            history: true,
        }
    }
}

/// Where a topic's events come from (`[source]`): a live Nakadi, read with
/// cursors or through a subscription, or files of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "SourceTable", into = "SourceTable")]
pub enum SourceSettings {
    /// The low-level API: the engine keeps the cursors, in its manifests.
    #[default]
    Cursors,
    /// A Nakadi subscription, committed after each run's manifest.
    Subscription(SubscriptionSettings),
    /// `recording = "path"`: a file or folder of events or recorded Nakadi
    /// batches, as written (relative to the topic's folder unless absolute).
    /// Runs read it even when a Nakadi URL is set; `--source` (or a run's
    /// `source` over HTTP) still wins.
    Recording(String),
}

impl SourceSettings {
    pub fn subscription(&self) -> Option<&SubscriptionSettings> {
        match self {
            SourceSettings::Subscription(settings) => Some(settings),
            _ => None,
        }
    }

    /// The recording as written in `topic.toml`.
    pub fn recording(&self) -> Option<&str> {
        match self {
            SourceSettings::Recording(path) => Some(path),
            _ => None,
        }
    }
}

/// `mode` of `[source]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum SourceMode {
    #[default]
    Cursors,
    Subscription,
}

/// `[source]` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct SourceTable {
    mode: SourceMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<SubscriptionSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<String>,
}

impl TryFrom<SourceTable> for SourceSettings {
    type Error = String;

    fn try_from(table: SourceTable) -> Result<Self, Self::Error> {
        match (table.mode, table.subscription, table.recording) {
            (_, _, Some(path)) if path.trim().is_empty() => Err(
                "source.recording is empty: name a file or folder of events (one JSON event per \
                 line) or of recorded Nakadi batches, relative to the topic's folder"
                    .into(),
            ),
            (SourceMode::Cursors, None, Some(path)) => Ok(SourceSettings::Recording(path)),
            (_, _, Some(_)) => Err(
                "source.recording reads files, source.mode = \"subscription\" and \
                 [source.subscription] read Nakadi: keep one of them"
                    .into(),
            ),
            (SourceMode::Cursors, None, None) => Ok(SourceSettings::Cursors),
            (SourceMode::Subscription, Some(settings), None) => {
                Ok(SourceSettings::Subscription(settings))
            }
            (SourceMode::Subscription, None, None) => Err(
                "source.mode = \"subscription\" needs a [source.subscription] section with \
                 owning_application (and optionally consumer_group, read_from)"
                    .into(),
            ),
            (SourceMode::Cursors, Some(_), None) => Err(
                "[source.subscription] is set but source.mode is \"cursors\": set \
                 mode = \"subscription\" to read through it, or remove the section"
                    .into(),
            ),
        }
    }
}

impl From<SourceSettings> for SourceTable {
    fn from(settings: SourceSettings) -> Self {
        match settings {
            SourceSettings::Cursors => SourceTable::default(),
            SourceSettings::Subscription(settings) => SourceTable {
                mode: SourceMode::Subscription,
                subscription: Some(settings),
                recording: None,
            },
            SourceSettings::Recording(path) => SourceTable {
                recording: Some(path),
                ..SourceTable::default()
            },
        }
    }
}

/// One column path or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum KeyPaths {
    One(String),
    Many(Vec<String>),
}

impl KeyPaths {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            KeyPaths::One(path) => vec![path],
            KeyPaths::Many(paths) => paths,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicFile {
    pub(super) event_type: String,
    pub(super) partitioning_key: KeyPaths,
    pub(super) ordering_key: String,
    /// False keeps every event in MAIN: no compaction, no corrections.
    #[serde(default = "default_true")]
    pub(super) compact: bool,
    /// A SQL predicate over `events`: true for an event that deletes its key.
    #[serde(default)]
    pub(super) delete_when: Option<String>,
    #[serde(default)]
    pub(super) category: Option<Category>,
    #[serde(default)]
    pub(super) output: OutputSettings,
    #[serde(default)]
    pub(super) source: SourceSettings,
    #[serde(default)]
    pub(super) warehouse: WarehouseSettings,
}
