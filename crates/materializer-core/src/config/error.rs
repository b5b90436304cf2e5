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

/// The place an error points at: a file, and the line and column in it when
/// there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPlace {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl ErrorPlace {
    fn new(file: &Path, at: Option<Position>) -> ErrorPlace {
        ErrorPlace {
            file: file.to_path_buf(),
            line: at.map(|at| at.line),
            column: at.map(|at| at.column),
        }
    }
}

impl ConfigError {
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }

    /// Where the error is, kept as a place rather than parsed back out of
    /// the message; `None` when it concerns no one file.
    pub fn place(&self) -> Option<ErrorPlace> {
        match self {
            ConfigError::Io { path, .. } | ConfigError::Schema { path, .. } => {
                Some(ErrorPlace::new(path, None))
            }
            ConfigError::Toml { path, at, .. } | ConfigError::Invalid { path, at, .. } => {
                Some(ErrorPlace::new(path, *at))
            }
            ConfigError::Mapping(MappingError::At { path, at, .. }) => {
                Some(ErrorPlace::new(path, Some(*at)))
            }
            ConfigError::Mapping(MappingError::File { path, .. }) => {
                Some(ErrorPlace::new(path, None))
            }
            ConfigError::Mapping(MappingError::Engine { .. })
            | ConfigError::UnknownTopic { .. } => None,
        }
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
