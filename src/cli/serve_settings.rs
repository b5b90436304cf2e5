//! The settings `serve` runs with: flags and environment first, then the
//! `--config` file, then the defaults below (and nowhere else).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::args::ServeArgs;
use crate::cli::error::CliError;
use materializer_cluster::ClusterAddress;

/// `--config` of `serve`: any of these keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    listen: Option<String>,
    output: Option<String>,
    recordings: Option<PathBuf>,
    #[serde(default)]
    api_tokens: Vec<String>,
    api_token_file: Option<PathBuf>,
    max_concurrent_runs: Option<usize>,
    shutdown_deadline_seconds: Option<u64>,
    preview_timeout_seconds: Option<f64>,
    preview_memory_mb: Option<usize>,
    allow_mapping_edits: Option<bool>,
    cluster: Option<String>,
}

impl ServeFile {
    /// Reads `path`; errors name the file, line and column.
    pub fn read(path: &Path) -> Result<ServeFile, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadSettings {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| CliError::Settings {
            message: materializer_core::config::toml_error(path, &text, &e),
        })
    }
}

/// What `serve` runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeSettings {
    pub listen: String,
    pub output: String,
    pub recordings: PathBuf,
    pub api_tokens: Vec<String>,
    pub api_token_file: Option<PathBuf>,
    pub max_concurrent_runs: usize,
    pub shutdown_deadline: Duration,
    pub preview_timeout: Duration,
    pub preview_memory_mb: usize,
    /// Most sample events one preview takes.
    pub preview_max_events: usize,
    /// Whether the console may save mappings back to `sql/<topic>/mapping.sql`.
    pub allow_mapping_edits: bool,
    /// The cluster whose executors run the partitions of every run.
    pub cluster: Option<ClusterAddress>,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            listen: "127.0.0.1:8000".into(),
            output: "out".into(),
            recordings: PathBuf::from("fixtures/recorded"),
            api_tokens: Vec::new(),
            api_token_file: None,
            max_concurrent_runs: 2,
            shutdown_deadline: Duration::from_secs(60),
            preview_timeout: Duration::from_secs(5),
            preview_memory_mb: 256,
            preview_max_events: 1000,
            allow_mapping_edits: false,
            cluster: None,
        }
    }
}

impl ServeSettings {
    /// Flags (and their environment variables) win over the file, the file
    /// over the defaults.
    pub fn resolve(flags: &ServeArgs, file: ServeFile) -> Result<ServeSettings, CliError> {
        let defaults = ServeSettings::default();
        let seconds = |what: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(CliError::Settings {
                    message: format!("{what} must be a positive number of seconds, not {value}"),
                })
            }
        };
        let preview_timeout = match flags.preview_timeout.or(file.preview_timeout_seconds) {
            Some(value) => seconds("preview_timeout", value)?,
            None => defaults.preview_timeout,
        };
        let cluster = match (&flags.cluster, file.cluster) {
            (Some(address), _) => Some(address.clone()),
            (None, Some(text)) => {
                Some(
                    ClusterAddress::parse(&text).map_err(|message| CliError::Settings {
                        message: format!("cluster: {message}"),
                    })?,
                )
            }
            (None, None) => None,
        };
        Ok(ServeSettings {
            cluster,
            listen: flags
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or(defaults.listen),
            output: flags
                .output
                .clone()
                .or(file.output)
                .unwrap_or(defaults.output),
            recordings: flags
                .recordings
                .clone()
                .or(file.recordings)
                .unwrap_or(defaults.recordings),
            api_tokens: if flags.api_tokens.is_empty() {
                file.api_tokens
            } else {
                flags.api_tokens.clone()
            },
            api_token_file: flags.api_token_file.clone().or(file.api_token_file),
            max_concurrent_runs: flags
                .max_concurrent_runs
                .or(file.max_concurrent_runs)
                .unwrap_or(defaults.max_concurrent_runs)
                .max(1),
            shutdown_deadline: flags
                .shutdown_deadline
                .or(file.shutdown_deadline_seconds)
                .map(Duration::from_secs)
                .unwrap_or(defaults.shutdown_deadline),
            preview_timeout,
            preview_memory_mb: flags
                .preview_memory_mb
                .or(file.preview_memory_mb)
                .unwrap_or(defaults.preview_memory_mb)
                .max(16),
            preview_max_events: defaults.preview_max_events,
            allow_mapping_edits: flags.allow_mapping_edits
                || file
                    .allow_mapping_edits
                    .unwrap_or(defaults.allow_mapping_edits),
        })
    }
}
