//! Topic configuration: one folder per topic under `sql/`.
//!
//! ```text
//! sql/<topic>/topic.toml    event type, keys, output settings
//! sql/<topic>/mapping.sql   the analyst's CREATE VIEW statements over `events`
//! sql/<topic>/schema.json   the event type as Nakadi serves it (or a bare JSON schema)
//! ```
//!
//! Everything is checked once, at load: unknown keys, missing files, keys that
//! are not columns, SQL that does not parse or names a missing column. Errors
//! name the file and, where there is one, the line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mapping::{Compaction, Engine, Mapping, MappingError, Position};
use crate::schema::{
    Category, EventTypeSchema, SYSTEM_COLUMNS, SchemaError, field_at_path,
    with_some_system_columns, with_system_columns,
};
use crate::source::{NakadiClient, SubscriptionSettings};

pub const TOPIC_FILE: &str = "topic.toml";
pub const MAPPING_FILE: &str = "mapping.sql";
pub const SCHEMA_FILE: &str = "schema.json";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", located(path, *at, message))]
    Toml {
        path: PathBuf,
        at: Option<Position>,
        message: String,
    },
    #[error("{path}", path = path.display())]
    Schema {
        path: PathBuf,
        #[source]
        source: SchemaError,
    },
    #[error("{path}: {message}", path = path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("unknown topic {name:?}; topics under {dir}: {known}", dir = dir.display())]
    UnknownTopic {
        name: String,
        dir: PathBuf,
        known: String,
    },
}

impl ConfigError {
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

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
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseSettings {
    /// Base name of the warehouse tables (default: the topic name with `_` for `-`).
    pub table: Option<String>,
    /// Output columns holding the partitioning key (default: the key paths' last parts).
    pub key_columns: Option<Vec<String>>,
    /// Output column holding the ordering key (default: the key path's last part).
    pub ordering_column: Option<String>,
}

/// How a topic reads from a live Nakadi.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    /// Low-level API: the engine keeps the cursors (in its manifests).
    #[default]
    Cursors,
    /// A Nakadi subscription, committed after each run's manifest.
    Subscription,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSettings {
    pub mode: SourceMode,
    pub subscription: Option<SubscriptionSettings>,
}

/// One column path or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum KeyPaths {
    One(String),
    Many(Vec<String>),
}

fn default_true() -> bool {
    true
}

/// `topic.toml` as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    event_type: String,
    partitioning_key: KeyPaths,
    ordering_key: String,
    /// False keeps every event in MAIN: no compaction, no corrections.
    #[serde(default = "default_true")]
    compact: bool,
    #[serde(default)]
    category: Option<Category>,
    #[serde(default)]
    output: OutputSettings,
    #[serde(default)]
    source: SourceSettings,
    #[serde(default)]
    warehouse: WarehouseSettings,
}

/// The schema of a topic's events.
#[derive(Clone, Debug)]
pub struct TopicSchema {
    pub category: Category,
    /// Columns as decoded from the JSON events.
    pub payload: SchemaRef,
    /// `payload` plus the system columns: the `events` table.
    pub events: SchemaRef,
    /// What a run decodes: `payload` without the struct fields that neither
    /// the mapping nor the keys read (see [`crate::mapping::prune`]).
    pub read_payload: SchemaRef,
    /// `read_payload` plus the system columns the mapping reads: the
    /// `events` table of a run.
    pub read_events: SchemaRef,
    /// Parts of the JSON schema that have no table form.
    pub warnings: Vec<String>,
    /// Where the schema came from.
    pub origin: String,
}

impl TopicSchema {
    pub fn from_event_type(
        doc: &EventTypeSchema,
        origin: String,
    ) -> Result<TopicSchema, SchemaError> {
        let (payload, warnings) = doc.to_arrow()?;
        let payload = Arc::new(payload);
        let events = with_system_columns(&payload);
        Ok(TopicSchema {
            category: doc.category,
            read_payload: payload.clone(),
            read_events: events.clone(),
            events,
            payload,
            warnings,
            origin,
        })
    }

    /// Narrows what runs decode to what `mapping` and `keys` read, when the
    /// mapping gives the same output over the narrower `events` table.
    async fn prune_for(
        &mut self,
        engine: &Engine,
        mapping: &Mapping,
        keys: &[String],
        output: &SchemaRef,
    ) {
        let pruned = crate::mapping::prune::pruned_payload(&self.payload, &mapping.text, keys);
        let system = crate::mapping::prune::system_columns_read(&mapping.text);
        if pruned.is_none() && system.len() == SYSTEM_COLUMNS.len() {
            return;
        }
        let pruned = pruned.unwrap_or_else(|| self.payload.as_ref().clone());
        let events = with_some_system_columns(&pruned, &system);
        match mapping.validate(engine, events.clone()).await {
            Ok(same) if same.fields() == output.fields() => {
                self.read_payload = Arc::new(pruned);
                self.read_events = events;
            }
            _ => {}
        }
    }

    pub fn event_columns(&self) -> Vec<String> {
        self.events
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

/// A topic, loaded and checked.
#[derive(Clone, Debug)]
pub struct Topic {
    pub name: String,
    pub dir: PathBuf,
    pub event_type: String,
    pub compaction: Compaction,
    pub output: OutputSettings,
    pub source: SourceSettings,
    pub warehouse: WarehouseSettings,
    pub schema: TopicSchema,
    pub mapping: Mapping,
    /// Columns of the files the mapping produces.
    pub output_schema: SchemaRef,
    /// Hash of the configuration files: tells whether a run was planned with the same config.
    pub fingerprint: String,
}

impl Topic {
    /// Loads `dir` (a folder holding `topic.toml`, `mapping.sql`, `schema.json`).
    pub async fn load(
        dir: &Path,
        engine: &Engine,
        nakadi: Option<&NakadiClient>,
    ) -> Result<Topic, ConfigError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ConfigError::Invalid {
                path: dir.to_path_buf(),
                message: "topic folder needs a UTF-8 name".into(),
            })?
            .to_string();
        check_topic_name(&name, dir)?;
        let toml_path = dir.join(TOPIC_FILE);
        let toml_text = read(&toml_path)?;
        let file: TopicFile = toml::from_str(&toml_text).map_err(|e| ConfigError::Toml {
            path: toml_path.clone(),
            at: e.span().map(|span| line_column(&toml_text, span.start)),
            message: e.message().trim_end().to_string(),
        })?;

        if file.source.mode == SourceMode::Subscription && file.source.subscription.is_none() {
            return Err(ConfigError::Invalid {
                path: toml_path.clone(),
                message: "source.mode = \"subscription\" needs a [source.subscription] section \
                          with owning_application (and optionally consumer_group, read_from)"
                    .into(),
            });
        }

        let schema_path = dir.join(SCHEMA_FILE);
        let category = file.category.unwrap_or_default();
        let (mut schema, schema_text) = match (schema_path.exists(), nakadi) {
            (true, _) | (false, None) => {
                let text = read(&schema_path)?;
                (load_schema(&schema_path, &text, category)?, text)
            }
            (false, Some(client)) => {
                let document = client.event_type(&file.event_type).await.map_err(|e| {
                    ConfigError::Invalid {
                        path: schema_path.clone(),
                        message: format!(
                            "no schema.json, and the event type's schema could not be fetched: {}",
                            crate::error::report(&e)
                        ),
                    }
                })?;
                let origin = format!(
                    "Nakadi event type {} at {}",
                    file.event_type, client.settings.url
                );
                let text = document.to_string();
                let parsed = EventTypeSchema::from_document(&document, category)
                    .and_then(|doc| TopicSchema::from_event_type(&doc, origin.clone()))
                    .map_err(|source| ConfigError::Schema {
                        path: PathBuf::from(origin),
                        source,
                    })?;
                (parsed, text)
            }
        };

        let mapping_path = dir.join(MAPPING_FILE);
        let mapping_text = read(&mapping_path)?;
        let mapping = Mapping::parse(&mapping_path, &mapping_text)?;

        let partitioning_key = match file.partitioning_key {
            KeyPaths::One(p) => vec![p],
            KeyPaths::Many(ps) => ps,
        };
        check_keys(
            &toml_path,
            &schema.payload,
            &partitioning_key,
            &file.ordering_key,
        )?;

        let output_schema = mapping.validate(engine, schema.events.clone()).await?;
        if file.output.format == Format::Csv {
            mapping.check_flat(&output_schema)?;
        }
        check_output(&toml_path, &file.output, &output_schema)?;
        check_warehouse(&toml_path, &file.warehouse, &output_schema)?;
        let keys: Vec<String> = partitioning_key
            .iter()
            .chain([&file.ordering_key])
            .cloned()
            .collect();
        schema
            .prune_for(engine, &mapping, &keys, &output_schema)
            .await;

        let mut hasher = Sha256::new();
        for part in [&toml_text, &mapping_text, &schema_text] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Ok(Topic {
            name,
            dir: dir.to_path_buf(),
            event_type: file.event_type,
            compaction: Compaction {
                partitioning_key,
                ordering_key: file.ordering_key,
                compact: file.compact,
            },

            output: file.output,
            source: file.source,
            warehouse: file.warehouse,
            schema,
            mapping,
            output_schema,
            fingerprint: hex::encode(hasher.finalize()),
        })
    }

    /// The SQL chain a run executes, for `materializer explain`.
    pub fn explain(&self) -> String {
        self.compaction.explain(
            &self.name,
            &self.schema.event_columns(),
            &self.mapping.path.display().to_string(),
            &self.mapping.text,
            self.mapping.output_view(),
        )
    }
}

/// `path:line:column: message`, or `path: message` without a place.
pub fn located(path: &Path, at: Option<Position>, message: &str) -> String {
    match at {
        Some(at) => format!("{}:{}:{}: {message}", path.display(), at.line, at.column),
        None => format!("{}: {message}", path.display()),
    }
}

/// A TOML error as `path:line:column: message`, at the place its span starts.
pub fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let at = error.span().map(|span| line_column(text, span.start));
    located(path, at, error.message().trim_end())
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> Position {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() as u64 + 1;
    Position { line, column }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Topic names become object store prefixes and file names.
fn check_topic_name(name: &str, dir: &Path) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '_'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            path: dir.to_path_buf(),
            message: format!(
                "topic name {name:?} must use letters, digits, '-', '_' or '.', and not start with '.' or '_'"
            ),
        })
    }
}

fn load_schema(path: &Path, text: &str, category: Category) -> Result<TopicSchema, ConfigError> {
    let schema_error = |source| ConfigError::Schema {
        path: path.to_path_buf(),
        source,
    };
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| schema_error(SchemaError::Json(e)))?;
    let event_type = EventTypeSchema::from_document(&doc, category).map_err(schema_error)?;
    TopicSchema::from_event_type(&event_type, path.display().to_string()).map_err(schema_error)
}

/// Keys must be columns with a scalar type; the ordering key must be orderable.
pub fn check_keys(
    path: &Path,
    payload: &Schema,
    partitioning: &[String],
    ordering: &str,
) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if partitioning.is_empty() {
        return Err(invalid("partitioning_key needs at least one column".into()));
    }
    let columns = || {
        payload
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (setting, key) in partitioning
        .iter()
        .map(|k| ("partitioning_key", k.as_str()))
        .chain([("ordering_key", ordering)])
    {
        let field = field_at_path(payload, key).ok_or_else(|| {
            invalid(format!(
                "{setting} {key:?} is not a column of the events (columns: {}; nested fields as parent.child)",
                columns()
            ))
        })?;
        let scalar = matches!(
            field.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
                | DataType::Decimal128(_, _)
                | DataType::Boolean
        );
        if !scalar {
            return Err(invalid(format!(
                "{setting} {key:?} is {}; keys must be single values (text, numbers, dates, timestamps)",
                field.data_type()
            )));
        }
    }
    Ok(())
}

fn check_output(
    path: &Path,
    output: &OutputSettings,
    output_schema: &Schema,
) -> Result<(), ConfigError> {
    for column in &output.partition_by {
        let Ok(field) = output_schema.field_with_name(column) else {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "output.partition_by names {column:?}, which is not an output column (output columns: {})",
                    output_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        if matches!(
            field.data_type(),
            DataType::Timestamp(_, _) | DataType::Float32 | DataType::Float64
        ) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "output.partition_by column {column:?} is {}; partition by a date or text column \
                     (e.g. CAST(ts AS DATE) in the mapping)",
                    field.data_type()
                ),
            });
        }
    }
    let csv = &output.csv;
    if csv.delimiter == csv.quote || csv.delimiter == '\n' || csv.delimiter == '\r' {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: "output.csv: delimiter must differ from quote and from line breaks".into(),
        });
    }
    if !csv.delimiter.is_ascii()
        || !csv.quote.is_ascii()
        || csv.escape.is_some_and(|e| !e.is_ascii())
    {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: "output.csv: delimiter, quote and escape must be ASCII characters".into(),
        });
    }
    Ok(())
}

/// Columns named in `[warehouse]` must be output columns.
fn check_warehouse(
    path: &Path,
    warehouse: &WarehouseSettings,
    output_schema: &Schema,
) -> Result<(), ConfigError> {
    let named = warehouse
        .key_columns
        .iter()
        .flatten()
        .map(|c| ("warehouse.key_columns", c))
        .chain(
            warehouse
                .ordering_column
                .iter()
                .map(|c| ("warehouse.ordering_column", c)),
        );
    for (setting, column) in named {
        if output_schema.field_with_name(column).is_err() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "{setting} names {column:?}, which is not an output column of the mapping"
                ),
            });
        }
    }
    Ok(())
}

/// All topics under a folder: the ones that loaded, and why the others did not.
#[derive(Default)]
pub struct Catalog {
    pub dir: PathBuf,
    pub topics: BTreeMap<String, Arc<Topic>>,
    pub broken: BTreeMap<String, String>,
}

impl Catalog {
    /// Loads every folder of `dir` that holds a `topic.toml`.
    pub async fn load(
        dir: &Path,
        engine: &Engine,
        nakadi: Option<&NakadiClient>,
    ) -> Result<Catalog, ConfigError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(TOPIC_FILE).is_file())
            .collect();
        folders.sort();
        let mut catalog = Catalog {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        for folder in folders {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match Topic::load(&folder, engine, nakadi).await {
                Ok(topic) => {
                    catalog.topics.insert(name, Arc::new(topic));
                }
                Err(e) => {
                    catalog.broken.insert(name, crate::error::report(&e));
                }
            }
        }
        Ok(catalog)
    }

    /// The named topic, or an error that says why it is not available.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, ConfigError> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t.clone());
        }
        if let Some(reason) = self.broken.get(name) {
            return Err(ConfigError::Invalid {
                path: self.dir.join(name),
                message: format!("topic does not load: {reason}"),
            });
        }
        Err(ConfigError::UnknownTopic {
            name: name.to_string(),
            dir: self.dir.clone(),
            known: self
                .topics
                .keys()
                .chain(self.broken.keys())
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}
