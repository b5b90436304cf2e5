//! Why a topic does not load: every error names the file and, where there
//! is one, the line and column.

use std::path::{Path, PathBuf};

use crate::mapping::{MappingError, Position};
use crate::schema::SchemaError;

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
    #[error("{}", located(path, *at, message))]
    Invalid {
        path: PathBuf,
        at: Option<Position>,
        message: String,
    },
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

    /// A problem with `path` as a whole.
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            at: None,
            message: message.into(),
        }
    }

    /// A problem at a place in `path`.
    pub(crate) fn invalid_at(
        path: &Path,
        at: Option<Position>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            at,
            message: message.into(),
        }
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
