//! How a command fails: one error for the whole command line, built from the
//! engine's errors with `From`, printed with all its causes once, and an exit
//! code per class so that a scheduler can tell a broken mapping from a Nakadi
//! outage.

use std::net::SocketAddr;
use std::path::PathBuf;

use datafusion::common::DataFusionError;
use materializer_core::ErrorClass;
use materializer_core::commit::LedgerError;
use materializer_core::config::ConfigError;
use materializer_core::preview::PreviewError;
use materializer_core::run::{RunError, SetupError};
use materializer_core::sink::SinkError;
use materializer_core::source::NakadiError;
use materializer_core::warehouse::WarehouseError;

use crate::api::auth::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Setup(SetupError),
    /// Nothing names a run's source: the message says what would.
    #[error("{message}")]
    NoSource { message: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Nakadi(#[from] NakadiError),
    #[error(transparent)]
    Preview(#[from] PreviewError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error("reading sample events")]
    Source(#[from] materializer_core::source::SourceError),
    #[error(transparent)]
    Record(materializer_core::source::SourceError),
    #[error("{path}", path = path.display())]
    ReadEvents {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a JSON event: {message}", path = path.display())]
    BadEvent {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot start the query engine")]
    Engine(#[source] DataFusionError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("{}", if *count == 1 { "1 topic does not load".to_string() } else { format!("{count} topics do not load") })]
    TopicsBroken { count: usize },
    #[error("run {sequence} of topic {topic} is not committed under {output}")]
    NotCommitted {
        topic: String,
        sequence: u64,
        output: String,
    },
    #[error("{path}", path = path.display())]
    ReadSettings {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{message}")]
    Settings { message: String },
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to serve on {address} without API tokens: set --api-token or --api-token-file, \
         or listen on a loopback address"
    )]
    NoTokens { address: SocketAddr },
    #[error("no health answer from {url}")]
    HealthProbe {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} answered {status:?}, not 200")]
    Unhealthy { url: String, status: String },
    #[error("serving the API")]
    Serve(#[source] std::io::Error),
    /// A panic: a bug. Nothing of an unfinished run is visible.
    #[error("an unexpected failure (a bug: please report it with the lines above): {message}")]
    Panicked { message: String },
    #[error("waiting for a signal")]
    Signal(#[source] std::io::Error),
    #[error("writing the result")]
    Output(#[source] std::io::Error),
    #[error("encoding the result as JSON")]
    Json(#[source] serde_json::Error),
    #[error("cluster")]
    Cluster(#[source] materializer_cluster::scheduler::RoleError),
}

impl From<SetupError> for CliError {
    fn from(error: SetupError) -> Self {
        CliError::setup(error, "--source PATH")
    }
}

impl CliError {
    /// A run's setup failing; when no source was named, the message says
    /// which flags (`flags`, the command's own first) and settings name one.
    pub(crate) fn setup(error: SetupError, flags: &str) -> CliError {
        match &error {
            SetupError::NoSource { settings, .. } => CliError::NoSource {
                message: format!(
                    "{}. Give one: {flags} (a file or folder of events, one JSON event per line, or \
                     of recorded Nakadi batches), `[source] recording = \"PATH\"` in {}, or \
                     --nakadi-url URL (NAKADI_URL) for a live Nakadi",
                    materializer_core::report(&error),
                    settings.display()
                ),
            },
            _ => CliError::Setup(error),
        }
    }

    /// What kind of failure it is; the exit code follows from it.
    pub fn class(&self) -> ErrorClass {
        match self {
            CliError::Run(e) => e.class(),
            CliError::Config(e) => e.class(),
            CliError::Setup(e) => e.class(),
            CliError::Sink(e) => e.class(),
            CliError::Ledger(e) => e.class(),
            CliError::Warehouse(e) => e.class(),
            CliError::Nakadi(e) => e.class(),
            CliError::Preview(e) => e.class(),
            CliError::Source(e) | CliError::Record(e) => e.class(),
            CliError::Cluster(e) => e.class(),
            CliError::Tokens(_)
            | CliError::NoSource { .. }
            | CliError::TopicsBroken { .. }
            | CliError::NotCommitted { .. }
            | CliError::ReadSettings { .. }
            | CliError::ReadEvents { .. }
            | CliError::BadEvent { .. }
            | CliError::Settings { .. }
            | CliError::Listen { .. }
            | CliError::NoTokens { .. } => ErrorClass::Config,
            CliError::Engine(_)
            | CliError::Runtime(_)
            | CliError::Serve(_)
            | CliError::Signal(_)
            | CliError::Output(_)
            | CliError::Json(_)
            | CliError::HealthProbe { .. }
            | CliError::Unhealthy { .. }
            | CliError::Panicked { .. } => ErrorClass::Internal,
        }
    }
}

/// The exit codes, for `--help` and README.
pub fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n  0    success (also: nothing new to read)\n");
    let mut classes = ErrorClass::ALL.to_vec();
    classes.sort_by_key(|c| c.exit_code());
    for class in classes {
        text.push_str(&format!(
            "  {:<4} {} ({}): {}\n",
            class.exit_code(),
            class.title().to_lowercase(),
            class.slug(),
            class.advice()
        ));
    }
    text
}
