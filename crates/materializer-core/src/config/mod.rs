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
//! name the file and, where there is one, the line and column. What loaded is
//! a [`Topic`], read through its accessors.

mod checks;
mod edit;
mod error;
mod places;
mod settings;
mod shape;
mod topic_schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use sha2::{Digest, Sha256};

pub use checks::check_keys;
pub use edit::{PREVIOUS_MAPPING_FILE, SavedMapping, save_mapping};
pub use error::{ConfigError, ErrorPlace, line_column, located, toml_error};
pub use places::Places;
pub use settings::{
    CsvCompression, CsvOptions, Format, OutputSettings, ParquetCompression, ParquetOptions,
    SourceSettings, WarehouseSettings,
};
pub use shape::{RunShape, ShapeColumn};
pub use topic_schema::TopicSchema;

use crate::mapping::deletes::DeletePredicate;
use crate::mapping::{Compaction, Engine, Mapping};
use crate::schema::{Category, EventTypeSchema, SchemaError};
use crate::source::NakadiClient;
use checks::{check_output, check_topic_name, check_warehouse};
use settings::TopicFile;

pub const TOPIC_FILE: &str = "topic.toml";
pub const MAPPING_FILE: &str = "mapping.sql";
pub const SCHEMA_FILE: &str = "schema.json";

/// A topic, loaded and checked.
#[derive(Clone, Debug)]
pub struct Topic {
    name: String,
    dir: PathBuf,
    event_type: String,
    compaction: Compaction,
    /// What marks an event as a delete, when anything does.
    deletes: Option<DeletePredicate>,
    output: OutputSettings,
    source: SourceSettings,
    warehouse: WarehouseSettings,
    schema: TopicSchema,
    mapping: Mapping,
    /// Columns of the files the mapping produces.
    output_schema: SchemaRef,
    /// Hash of the configuration files: tells whether a run was planned with the same config.
    fingerprint: String,
    /// The texts the topic was loaded from, for processes that load it again
    /// (the workers of a cluster).
    texts: Arc<TopicTexts>,
}

/// The three files of a topic as text: what another process needs to load
/// the same topic (`schema` is the event type's schema when the topic's
/// folder has no `schema.json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicTexts {
    pub name: String,
    pub toml: String,
    pub mapping: String,
    pub schema: String,
}

impl Topic {
    /// Loads `dir` (a folder holding `topic.toml`, `mapping.sql`, `schema.json`).
    pub async fn load(
        dir: &Path,
        engine: &Engine,
        nakadi: Option<&NakadiClient>,
    ) -> Result<Topic, ConfigError> {
        Topic::load_with(dir, engine, nakadi, None).await
    }

    /// Loads `dir` as if its `mapping.sql` held `mapping`: the checks a
    /// reload would make, before the text is written to the file.
    pub async fn load_with_mapping(
        dir: &Path,
        engine: &Engine,
        nakadi: Option<&NakadiClient>,
        mapping: &str,
    ) -> Result<Topic, ConfigError> {
        Topic::load_with(dir, engine, nakadi, Some(mapping)).await
    }

    async fn load_with(
        dir: &Path,
        engine: &Engine,
        nakadi: Option<&NakadiClient>,
        mapping: Option<&str>,
    ) -> Result<Topic, ConfigError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ConfigError::invalid(dir, "topic folder needs a UTF-8 name"))?
            .to_string();
        check_topic_name(&name, dir)?;
        let toml_path = dir.join(TOPIC_FILE);
        let toml_text = read(&toml_path)?;
        let file: TopicFile = toml::from_str(&toml_text).map_err(|e| ConfigError::Toml {
            path: toml_path.clone(),
            at: e.span().map(|span| line_column(&toml_text, span.start)),
            message: e.message().trim_end().to_string(),
        })?;

        let places = Places::find(&toml_text);

        let schema_path = dir.join(SCHEMA_FILE);
        let category = file.category.unwrap_or_default();
        let (mut schema, schema_text) = match (schema_path.exists(), nakadi) {
            (true, _) | (false, None) => {
                let text = read(&schema_path)?;
                (load_schema(&schema_path, &text, category)?, text)
            }
            (false, Some(client)) => {
                let document = client.event_type(&file.event_type).await.map_err(|e| {
                    ConfigError::invalid(
                        &schema_path,
                        format!(
                            "no schema.json, and the event type's schema could not be fetched: {}",
                            crate::error::report(&e)
                        ),
                    )
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
        let mapping_text = match mapping {
            Some(text) => text.to_string(),
            None => read(&mapping_path)?,
        };
        let mapping = Mapping::parse(&mapping_path, &mapping_text)?;

        let partitioning_key = file.partitioning_key.into_vec();
        check_keys(
            &toml_path,
            &places,
            &schema.payload,
            &partitioning_key,
            &file.ordering_key,
        )?;

        let output_schema = mapping.validate(engine, schema.events.clone()).await?;
        if file.output.format == Format::Csv {
            mapping.check_flat(&output_schema)?;
        }
        check_output(&toml_path, &places, &file.output, &output_schema)?;
        check_warehouse(&toml_path, &places, &file.warehouse, &output_schema)?;
        // A topic that keeps every event has no newest version to delete:
        // its mapping sees `data_op` like any other column.
        let deletes = match (&file.delete_when, schema.category, file.compact) {
            (Some(sql), _, _) if sql.trim() == "false" => None,
            (Some(_), _, false) => {
                return Err(ConfigError::invalid_at(
                    &toml_path,
                    places.delete_when(),
                    "delete_when needs compaction: with compact = false every event is kept \
                     (select the delete flag in the mapping instead)",
                ));
            }
            (Some(sql), _, true) => Some(DeletePredicate::new(sql.clone())),
            (None, Category::Data, true) => Some(DeletePredicate::data_change()),
            (None, _, _) => None,
        };
        if let Some(deletes) = &deletes {
            deletes.check(engine, &schema.events).map_err(|e| {
                ConfigError::invalid_at(
                    &toml_path,
                    places.delete_when(),
                    format!(
                        "delete_when {:?}: {}",
                        deletes.sql(),
                        crate::mapping::tidy_engine_message(&e.strip_backtrace())
                    ),
                )
            })?;
        }
        let keys: Vec<String> = partitioning_key
            .iter()
            .chain([&file.ordering_key])
            .cloned()
            .collect();
        schema
            .prune_for(engine, &mapping, deletes.as_ref(), &keys, &output_schema)
            .await;

        let mut hasher = Sha256::new();
        for part in [&toml_text, &mapping_text, &schema_text] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let texts = Arc::new(TopicTexts {
            name: name.clone(),
            toml: toml_text,
            mapping: mapping_text,
            schema: schema_text,
        });
        Ok(Topic {
            name,
            dir: dir.to_path_buf(),
            event_type: file.event_type,
            compaction: Compaction {
                partitioning_key,
                ordering_key: file.ordering_key,
                compact: file.compact,
            },

            deletes,
            output: file.output,
            source: file.source,
            warehouse: file.warehouse,
            schema,
            mapping,
            output_schema,
            fingerprint: hex::encode(hasher.finalize()),
            texts,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The texts the topic was loaded from.
    pub fn texts(&self) -> &Arc<TopicTexts> {
        &self.texts
    }

    /// Loads a topic from its texts, written to a folder of its name under
    /// `scratch` first (a worker of a cluster loads the driver's topic so).
    pub async fn load_texts(
        texts: &TopicTexts,
        scratch: &Path,
        engine: &Engine,
    ) -> Result<Topic, ConfigError> {
        check_topic_name(&texts.name, scratch)?;
        let dir = scratch.join(&texts.name);
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, text))
                .map_err(|e| ConfigError::invalid(&path, format!("cannot be written: {e}")))
        };
        write(TOPIC_FILE, &texts.toml)?;
        write(MAPPING_FILE, &texts.mapping)?;
        write(SCHEMA_FILE, &texts.schema)?;
        Topic::load(&dir, engine, None).await
    }

    /// The folder the topic was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The keys, and whether the topic compacts at all.
    pub fn compaction(&self) -> &Compaction {
        &self.compaction
    }

    /// What marks an event as the deletion of its key, if anything does.
    pub fn deletes(&self) -> Option<&DeletePredicate> {
        self.deletes.as_ref()
    }

    pub fn output(&self) -> &OutputSettings {
        &self.output
    }

    pub fn source(&self) -> &SourceSettings {
        &self.source
    }

    /// The topic's own files of events (`[source] recording`), relative
    /// paths taken from the topic's folder.
    pub fn recording(&self) -> Option<PathBuf> {
        self.source
            .recording()
            .map(|path| lexically_joined(&self.dir, Path::new(path)))
    }

    pub fn warehouse(&self) -> &WarehouseSettings {
        &self.warehouse
    }

    pub fn schema(&self) -> &TopicSchema {
        &self.schema
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Columns of the files the mapping produces.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Hash of the configuration files: tells whether a run was planned with
    /// the same configuration.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether runs write the older versions of their keys (HISTORY files)
    /// for the warehouse's history table.
    pub fn keeps_history(&self) -> bool {
        self.compaction.compact && self.warehouse.history
    }
}

/// `dir` joined with `path`, `..` taken off the path as written (so that
/// `sql/t` and `../../events` name `events`, as a reader of the settings
/// would say).
fn lexically_joined(dir: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    let mut joined = PathBuf::new();
    for component in dir.join(path).components() {
        match component {
            Component::ParentDir
                if matches!(joined.components().next_back(), Some(Component::Normal(_))) =>
            {
                joined.pop();
            }
            Component::CurDir => {}
            other => joined.push(other),
        }
    }
    if joined.as_os_str().is_empty() {
        joined.push(".");
    }
    joined
}

/// The `[output]` settings of the topic in `dir`, from its `topic.toml`
/// alone (no schema, no mapping): enough to find its committed runs.
pub fn output_settings_of(dir: &Path) -> Result<OutputSettings, ConfigError> {
    let path = dir.join(TOPIC_FILE);
    let text = read(&path)?;
    let file: TopicFile = toml::from_str(&text).map_err(|e| ConfigError::Toml {
        path: path.clone(),
        at: e.span().map(|span| line_column(&text, span.start)),
        message: e.message().trim_end().to_string(),
    })?;
    Ok(file.output)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
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

/// Why a topic does not load: the message, and the place it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub reason: String,
    pub at: Option<ErrorPlace>,
}

impl From<&ConfigError> for Broken {
    fn from(error: &ConfigError) -> Self {
        Broken {
            reason: crate::error::report(error),
            at: error.place(),
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// All topics under a folder: the ones that loaded, and why the others did not.
#[derive(Default)]
pub struct Catalog {
    pub dir: PathBuf,
    pub topics: BTreeMap<String, Arc<Topic>>,
    pub broken: BTreeMap<String, Broken>,
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
                    catalog.broken.insert(name, Broken::from(&e));
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
        if let Some(broken) = self.broken.get(name) {
            return Err(ConfigError::invalid(
                &self.dir.join(name),
                format!("topic does not load: {}", broken.reason),
            ));
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
