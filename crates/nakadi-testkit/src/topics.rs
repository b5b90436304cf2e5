//! The event types a folder of topics reads, with their recordings: what the
//! `nakadi-server` binary serves.
//!
//! Only what the server needs is read from a topic: `event_type` and
//! `category` of `topic.toml`, and `schema.json`. Several topics may map one
//! event type; it is served once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::recording;

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}", path = path.display())]
    Invalid { path: PathBuf, message: String },
}

/// An event type to serve.
#[derive(Debug)]
pub struct ServedEventType {
    /// The document `GET /event-types/{name}` answers.
    pub document: Value,
    /// Topics that map it, in name order.
    pub topics: Vec<String>,
    /// Recorded stream lines (of the first of `topics` that has any).
    pub recording: Vec<u8>,
    /// The topic whose recording was taken.
    pub recorded_from: Option<String>,
    /// One more than the highest partition the recording names (0 without one).
    pub recorded_partitions: usize,
}

impl ServedEventType {
    pub fn name(&self) -> &str {
        self.document
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Every event type the topics under `sql_dir` map, with the recordings under
/// `recordings/<topic>/`.
pub fn load(sql_dir: &Path, recordings: &Path) -> Result<Vec<ServedEventType>, TopicsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TopicsError::Io { path, source }
    };
    let mut folders: Vec<PathBuf> = std::fs::read_dir(sql_dir)
        .map_err(io(sql_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("topic.toml").is_file())
        .collect();
    folders.sort();
    let mut served: BTreeMap<String, ServedEventType> = BTreeMap::new();
    for folder in folders {
        let topic = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (event_type, category) = read_topic_file(&folder.join("topic.toml"))?;
        let recording = read_recording(&recordings.join(&topic))?;
        let entry = match served.entry(event_type.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(ServedEventType {
                document: event_type_document(&folder.join("schema.json"), &event_type, &category)?,
                topics: Vec::new(),
                recording: Vec::new(),
                recorded_from: None,
                recorded_partitions: 0,
            }),
        };
        entry.topics.push(topic.clone());
        if entry.recorded_from.is_none() && !recording.is_empty() {
            entry.recorded_partitions = partitions_named(&recording);
            entry.recording = recording;
            entry.recorded_from = Some(topic);
        }
    }
    Ok(served.into_values().collect())
}

fn read_topic_file(path: &Path) -> Result<(String, String), TopicsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopicsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| TopicsError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let event_type = table
        .get("event_type")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| invalid("no event_type".into()))?
        .to_string();
    let category = table
        .get("category")
        .and_then(toml::Value::as_str)
        .unwrap_or("business")
        .to_string();
    Ok((event_type, category))
}

/// `schema.json` when it is an event type document, or one built around the
/// bare JSON schema it holds.
fn event_type_document(
    path: &Path,
    event_type: &str,
    category: &str,
) -> Result<Value, TopicsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopicsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut document: Value = serde_json::from_str(&text).map_err(|e| TopicsError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if document
        .get("schema")
        .and_then(|s| s.get("schema"))
        .is_none()
    {
        document = json!({
            "category": category,
            "schema": {"type": "json_schema", "schema": document.to_string(), "version": "1.0.0"},
        });
    }
    document["name"] = Value::String(event_type.to_string());
    Ok(document)
}

/// The recorded lines of a folder (`*.jsonl`, `*.ndjson`, `*.json` in name
/// order) or a file; nothing when there is none.
fn read_recording(path: &Path) -> Result<Vec<u8>, TopicsError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| TopicsError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("jsonl" | "ndjson" | "json")
                    )
            })
            .collect();
        files.sort();
        files
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    let mut text = Vec::new();
    for file in files {
        text.extend(std::fs::read(&file).map_err(|source| TopicsError::Io {
            path: file.clone(),
            source,
        })?);
        text.push(b'\n');
    }
    Ok(text)
}

/// One more than the highest numeric partition the recorded lines name.
fn partitions_named(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter_map(|line| recording::split_line(line).ok())
        .filter_map(|batch| batch.partition.parse::<usize>().ok())
        .max()
        .map_or(0, |p| p + 1)
}
