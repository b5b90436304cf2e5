//! Flags and settings of every subcommand.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};

use crate::cli::error::CliError;
use materializer_cluster::ClusterAddress;
use materializer_core::sink::S3Settings;
use materializer_core::source::{NakadiClient, NakadiSettings, TokenSource};
use materializer_core::warehouse::{self, Dialect};

/// Options every subcommand takes, listed under one heading.
#[derive(Args, Debug)]
pub(crate) struct GlobalArgs {
    /// Folder with one sub-folder per topic (topic.toml, mapping.sql, schema.json).
    #[arg(
        long,
        global = true,
        env = "MATERIALIZER_SQL_DIR",
        default_value = "sql",
        help_heading = "Global options"
    )]
    pub(crate) sql_dir: PathBuf,
    /// Log format on stderr. Levels come from RUST_LOG (default: info).
    #[arg(long, global = true, env = "MATERIALIZER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, help_heading = "Global options")]
    pub(crate) log_format: LogFormat,
}

/// How much memory the query engine of a run may hold.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Memory")]
pub(crate) struct EngineArgs {
    /// Memory a run may hold (MiB) before spilling to disk: a quarter for the
    /// decoded events waiting to be mapped, the rest for the query engine's sorts.
    #[arg(long, env = "MATERIALIZER_MEMORY_MB", default_value_t = DEFAULT_MEMORY_MB)]
    pub(crate) memory_mb: usize,
    /// Folder for spilled data (default: the system temp folder).
    #[arg(long, env = "MATERIALIZER_SPILL_DIR")]
    pub(crate) spill_dir: Option<PathBuf>,
}

const DEFAULT_MEMORY_MB: usize = 512;

impl Default for EngineArgs {
    fn default() -> Self {
        EngineArgs {
            memory_mb: DEFAULT_MEMORY_MB,
            spill_dir: None,
        }
    }
}

/// Where a live Nakadi is and how to authenticate. Without a URL, runs read
/// recorded batches and topics need their own schema.json.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Nakadi")]
pub(crate) struct NakadiArgs {
    /// Base URL of Nakadi. With it, runs read the live event type instead of
    /// recorded batches, and topics without schema.json get the event type's schema.
    #[arg(long, env = "NAKADI_URL")]
    pub(crate) nakadi_url: Option<String>,
    #[command(flatten)]
    pub(crate) token: NakadiTokenArgs,
}

/// The bearer token Nakadi is read with (a cluster's executor takes these
/// alone: the URL comes with each job).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Nakadi")]
pub(crate) struct NakadiTokenArgs {
    /// File holding the bearer token, re-read when it changes (mounted credentials).
    #[arg(long, env = "NAKADI_TOKEN_FILE")]
    pub(crate) nakadi_token_file: Option<PathBuf>,
    /// The bearer token itself, when there is no token file. Prefer the
    /// environment to the flag: a flag shows in the process list.
    #[arg(long, env = "NAKADI_TOKEN", hide_env_values = true)]
    pub(crate) nakadi_token: Option<String>,
}

/// How a run reads Nakadi's streams and how long it keeps trying.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Nakadi streams")]
pub(crate) struct StreamArgs {
    /// Events per batch Nakadi may send (batch_limit).
    #[arg(long, env = "NAKADI_BATCH_LIMIT", default_value_t = 1000)]
    pub(crate) nakadi_batch_limit: u32,
    /// Seconds Nakadi may wait to fill a batch (batch_flush_timeout).
    #[arg(long, env = "NAKADI_BATCH_FLUSH_TIMEOUT", default_value_t = 1)]
    pub(crate) nakadi_batch_flush_timeout: u64,
    /// Seconds without data or keep-alive after which a stream is dropped and resumed.
    #[arg(long, env = "NAKADI_SILENCE_TIMEOUT", default_value_t = 31)]
    pub(crate) nakadi_silence_timeout: u64,
    /// Attempts without progress before a run gives up (connection errors
    /// after the run reached Nakadi, 429, 5xx, dropped or cut streams,
    /// subscription streams Nakadi closed). A connection refused at the start
    /// of a run fails at once.
    #[arg(long, env = "NAKADI_MAX_RETRIES", default_value_t = 10)]
    pub(crate) nakadi_max_retries: u32,
    /// Longest pause between two attempts, in seconds (pauses double from 0.5 s, with jitter).
    #[arg(long, env = "NAKADI_MAX_BACKOFF", default_value_t = 30)]
    pub(crate) nakadi_max_backoff: u64,
}

/// What a command that runs topics takes besides its own options.
#[derive(Args, Debug, Clone)]
pub(crate) struct RunnerArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) nakadi: NakadiArgs,
    #[command(flatten)]
    pub(crate) streams: StreamArgs,
}

/// What a command that reads topics needs to know: where they are, where
/// Nakadi is (for schemas), and for runs, memory and stream settings.
pub(crate) struct Context {
    pub(crate) sql_dir: PathBuf,
    pub(crate) engine: EngineArgs,
    pub(crate) nakadi: NakadiArgs,
    pub(crate) streams: Option<StreamArgs>,
}

impl Context {
    /// A client when a Nakadi URL is set.
    pub(crate) fn nakadi_client(&self) -> Result<Option<Arc<NakadiClient>>, CliError> {
        self.nakadi.client(self.streams.as_ref())
    }
}

impl NakadiArgs {
    /// A client when a Nakadi URL is set; stream settings as given, or
    /// Nakadi's defaults for commands that only fetch schemas.
    pub(crate) fn client(
        &self,
        streams: Option<&StreamArgs>,
    ) -> Result<Option<Arc<NakadiClient>>, CliError> {
        let Some(url) = &self.nakadi_url else {
            return Ok(None);
        };
        let mut settings = NakadiSettings::new(url.clone(), self.token.source());
        if let Some(streams) = streams {
            streams.apply_to(&mut settings);
        }
        Ok(Some(Arc::new(NakadiClient::new(settings)?)))
    }
}

impl NakadiTokenArgs {
    /// The bearer token: from the file when one is named, else the token
    /// given, else none.
    pub(crate) fn source(&self) -> TokenSource {
        match (&self.nakadi_token_file, &self.nakadi_token) {
            (Some(path), _) => TokenSource::file(path),
            (None, Some(token)) if !token.trim().is_empty() => {
                TokenSource::Static(token.trim().to_string())
            }
            _ => TokenSource::None,
        }
    }
}

impl StreamArgs {
    /// These stream settings in `settings`.
    pub(crate) fn apply_to(&self, settings: &mut NakadiSettings) {
        settings.batch_limit = self.nakadi_batch_limit.max(1);
        settings.batch_flush_timeout = Duration::from_secs(self.nakadi_batch_flush_timeout.max(1));
        settings.silence_timeout = Duration::from_secs(self.nakadi_silence_timeout.max(1));
        settings.max_retries = self.nakadi_max_retries;
        settings.max_backoff = Duration::from_secs(self.nakadi_max_backoff.max(1));
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of: listen, output, recordings, api_tokens,
    /// api_token_file, max_concurrent_runs, shutdown_deadline_seconds,
    /// preview_timeout_seconds, preview_memory_mb, allow_mapping_edits,
    /// cluster. Flags and environment win.
    #[arg(long, env = "MATERIALIZER_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "MATERIALIZER_LISTEN")]
    pub(crate) listen: Option<String>,
    /// Where runs write: a folder, file:///folder or s3://bucket/prefix [default: out].
    #[arg(long, env = "MATERIALIZER_OUTPUT")]
    pub(crate) output: Option<String>,
    /// Folder of recordings: <recordings>/<topic> is read for a topic
    /// without a source of its own when no Nakadi URL is set, and a run's or
    /// preview's "source" over HTTP names files under it [default:
    /// fixtures/recorded].
    #[arg(long, env = "MATERIALIZER_RECORDINGS")]
    pub(crate) recordings: Option<PathBuf>,
    /// A bearer token the API accepts (repeatable; the environment variable takes a comma-separated list).
    #[arg(
        long = "api-token",
        env = "MATERIALIZER_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) api_tokens: Vec<String>,
    /// A file with one accepted bearer token per line.
    #[arg(long, env = "MATERIALIZER_API_TOKEN_FILE")]
    pub(crate) api_token_file: Option<PathBuf>,
    /// Runs executing at once; more wait in a queue [default: 2].
    #[arg(long)]
    pub(crate) max_concurrent_runs: Option<usize>,
    /// Seconds a shutdown waits for running runs before it stops them [default: 60].
    #[arg(long)]
    pub(crate) shutdown_deadline: Option<u64>,
    /// Seconds one preview may take [default: 5].
    #[arg(long)]
    pub(crate) preview_timeout: Option<f64>,
    /// Run the partitions of every run on the Apache DataFusion Ballista
    /// cluster whose scheduler is at df://HOST:PORT (see `run --cluster`).
    #[arg(long, env = "MATERIALIZER_CLUSTER", value_parser = ClusterAddress::parse)]
    pub(crate) cluster: Option<ClusterAddress>,
    /// Memory (MiB) all previews together may use [default: 256].
    #[arg(long)]
    pub(crate) preview_memory_mb: Option<usize>,
    /// Let the web console save mappings back to sql/<topic>/mapping.sql
    /// (checked first, written atomically, the text it replaces kept in
    /// mapping.sql.previous).
    #[arg(long, env = "MATERIALIZER_ALLOW_MAPPING_EDITS")]
    pub(crate) allow_mapping_edits: bool,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    #[command(flatten)]
    pub(crate) runner: RunnerArgs,
}

#[derive(Args, Debug)]
pub(crate) struct HealthcheckArgs {
    /// The address `serve` listens on; all interfaces (0.0.0.0, [::]) are asked
    /// on loopback.
    #[arg(long, env = "MATERIALIZER_LISTEN", default_value = "127.0.0.1:8000")]
    pub(crate) listen: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub(crate) timeout: u64,
}

#[derive(Args, Debug)]
pub(crate) struct WarehouseArgs {
    /// Topic name (a folder under --sql-dir).
    pub(crate) topic: String,
    /// The warehouse.
    #[arg(long, value_parser = dialect_parser())]
    pub(crate) dialect: &'static Dialect,
    /// Print the load statements of this committed run instead of the setup.
    #[arg(long, value_name = "N")]
    pub(crate) run: Option<u64>,
    /// Print the loads of every committed run after the one the warehouse
    /// loaded last (N; 0 when it loaded none), in run order: what a scheduler
    /// runs to catch up.
    #[arg(long, value_name = "N", conflicts_with = "run", requires = "pending")]
    pub(crate) loaded_through: Option<u64>,
    /// With --loaded-through: the loads still pending.
    #[arg(long, requires = "loaded_through")]
    pub(crate) pending: bool,
    /// The first run the warehouse loads (setup only): 1, or a later run for
    /// a warehouse that starts in the middle of the topic's life. Loads of
    /// other runs are refused until it is loaded; then each run in order.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with_all = ["run", "pending"])]
    pub(crate) start_at: u64,
    /// Where the runs were written (for --run): a folder, file:///folder or s3://bucket/prefix.
    #[arg(long, env = "MATERIALIZER_OUTPUT", default_value = "out")]
    pub(crate) output: String,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    #[command(flatten)]
    pub(crate) nakadi: NakadiArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ExplainArgs {
    /// Topic name (a folder under --sql-dir).
    pub(crate) topic: String,
    #[command(flatten)]
    pub(crate) nakadi: NakadiArgs,
}

#[derive(Args, Debug)]
pub(crate) struct PreviewArgs {
    /// Topic name (a folder under --sql-dir).
    pub(crate) topic: String,
    /// Sample events: a file of JSON events, one per line (or one JSON
    /// array). Without it, the first --limit events of the topic's source.
    #[arg(long, conflicts_with = "source")]
    pub(crate) events: Option<PathBuf>,
    /// Files to take the events from: a file, or a folder of *.jsonl /
    /// *.ndjson / *.json files, of events (one JSON event per line) or of
    /// recorded Nakadi batches. Default: the topic's [source] recording, else
    /// the live event type with --nakadi-url, else fixtures/recorded/<topic>.
    #[arg(long)]
    pub(crate) source: Option<PathBuf>,
    /// How many events to take from the source.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) limit: u64,
    /// A draft mapping to try instead of the topic's mapping.sql.
    #[arg(long)]
    pub(crate) mapping: Option<PathBuf>,
    /// Seconds the preview may take.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) timeout: f64,
    /// Print the rows as JSON instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) nakadi: NakadiArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RecordArgs {
    /// A file of events, one JSON event per line.
    pub(crate) events: PathBuf,
    /// The recording the events are appended to: a *.jsonl, *.ndjson or
    /// *.json file, or a folder (its stream.jsonl). Offsets go on after the newest that the recordings in
    /// its folder hold for the partition.
    #[arg(long)]
    pub(crate) into: PathBuf,
    /// The partition the events are recorded in.
    #[arg(long, default_value = "0")]
    pub(crate) partition: String,
    /// Events per recorded batch (one line of the recording).
    #[arg(long, default_value_t = materializer_core::source::record::BATCH_EVENTS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) batch_events: u64,
}

#[derive(Args, Debug)]
pub(crate) struct TopicsArgs {
    #[command(flatten)]
    pub(crate) nakadi: NakadiArgs,
}

/// `--dialect`: the name of one of the engine's dialects, so that `--help`
/// and the usage error of any other value list them all.
fn dialect_parser() -> impl TypedValueParser<Value = &'static Dialect> {
    PossibleValuesParser::new(warehouse::dialect_names().iter().copied())
        .try_map(|name| warehouse::dialect_named(&name))
}

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Topic name (a folder under --sql-dir).
    #[arg(long, short)]
    pub(crate) topic: String,
    /// Files to read: a file, or a folder of *.jsonl / *.ndjson / *.json
    /// files, of events (one JSON event per line; each file a partition, an
    /// event's offset its place in the file from 0, so appended lines are read
    /// by the next run) or of recorded Nakadi batches. Default: the topic's
    /// [source] recording, else the live event type with --nakadi-url, else
    /// fixtures/recorded/<topic>.
    #[arg(long)]
    pub(crate) source: Option<PathBuf>,
    /// Where files go: a folder, file:///folder or s3://bucket/prefix.
    /// A topic's own output.location takes precedence.
    #[arg(long, env = "MATERIALIZER_OUTPUT", default_value = "out")]
    pub(crate) output: String,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    /// Nakadi partitions mapped and written at the same time (default: CPU cores).
    #[arg(long)]
    pub(crate) parallelism: Option<usize>,
    /// Read, map and write the partitions on the executors of the Apache
    /// DataFusion Ballista cluster whose scheduler is at df://HOST:PORT
    /// (started with `materializer cluster scheduler`); this process plans
    /// and commits. For topics that do not compact, read from a live Nakadi.
    #[arg(long, env = "MATERIALIZER_CLUSTER", value_parser = ClusterAddress::parse)]
    pub(crate) cluster: Option<ClusterAddress>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub(crate) no_progress: bool,
    #[command(flatten)]
    pub(crate) runner: RunnerArgs,
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "S3")]
pub(crate) struct S3Args {
    /// Endpoint of an S3-compatible store (default: AWS, from the environment).
    #[arg(long, env = "MATERIALIZER_S3_ENDPOINT")]
    pub(crate) s3_endpoint: Option<String>,
    /// Region of the bucket (default: AWS_REGION / AWS_DEFAULT_REGION).
    #[arg(long, env = "MATERIALIZER_S3_REGION")]
    pub(crate) s3_region: Option<String>,
    /// Allow a plain-HTTP S3 endpoint.
    #[arg(long, env = "MATERIALIZER_S3_ALLOW_HTTP")]
    pub(crate) s3_allow_http: bool,
    /// Retries of a failed S3 request (500, 503 SlowDown, timeouts, resets).
    #[arg(long, env = "MATERIALIZER_S3_MAX_RETRIES", default_value_t = 10)]
    pub(crate) s3_max_retries: usize,
}

impl S3Args {
    pub(crate) fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http,
            max_retries: self.s3_max_retries,
            ..S3Settings::default()
        }
    }
}

impl GlobalArgs {
    /// The context of a command that fetches schemas at most.
    pub(crate) fn context(&self, nakadi: &NakadiArgs) -> Context {
        Context {
            sql_dir: self.sql_dir.clone(),
            engine: EngineArgs::default(),
            nakadi: nakadi.clone(),
            streams: None,
        }
    }

    /// The context of a command that runs topics.
    pub(crate) fn run_context(&self, runner: &RunnerArgs) -> Context {
        Context {
            sql_dir: self.sql_dir.clone(),
            engine: runner.engine.clone(),
            nakadi: runner.nakadi.clone(),
            streams: Some(runner.streams.clone()),
        }
    }
}
