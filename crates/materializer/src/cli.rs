//! The command line: the same runs the HTTP API triggers, from a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use materializer_core::config::Catalog;
use materializer_core::mapping::{Engine, EngineSettings};
use materializer_core::source::{NakadiClient, NakadiSettings, TokenSource};
use materializer_core::run::{self, Outcome, Progress, RunEnvironment, RunSummary};
use materializer_core::sink::{OutputLocation, S3Settings};

/// Materializes Nakadi event types into warehouse-ready files.
///
/// A run reads each partition of a topic's event type from its last committed
/// cursor up to the newest offset that existed when the run started, compacts
/// the events to the latest version per key, splits out events that arrived
/// out of order, applies the topic's SQL mapping, writes CSV or Parquet files
/// and commits them with the cursors in a manifest. Nothing is visible before
/// the commit; a failed or repeated run never duplicates or loses a row.
#[derive(Parser, Debug)]
#[command(
    name = "materializer",
    version,
    about,
    long_about,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct GlobalArgs {
    /// Folder with one sub-folder per topic (topic.toml, mapping.sql, schema.json).
    #[arg(
        long,
        global = true,
        env = "MATERIALIZER_SQL_DIR",
        default_value = "sql"
    )]
    sql_dir: PathBuf,
    /// Log format on stderr. Levels come from RUST_LOG (default: info).
    #[arg(long, global = true, env = "MATERIALIZER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Memory a run may hold (MiB) before spilling to disk: a quarter for the
    /// decoded events waiting to be mapped, the rest for the query engine's sorts.
    #[arg(
        long,
        global = true,
        env = "MATERIALIZER_MEMORY_MB",
        default_value_t = 512
    )]
    memory_mb: usize,
    /// Folder for spilled data (default: the system temp folder).
    #[arg(long, global = true, env = "MATERIALIZER_SPILL_DIR")]
    spill_dir: Option<PathBuf>,
    #[command(flatten)]
    nakadi: NakadiArgs,
}

/// Connection to a live Nakadi. The bearer token comes from --nakadi-token-file
/// (re-read whenever the file changes) or from the environment variable NAKADI_TOKEN.
#[derive(Args, Debug, Clone)]
struct NakadiArgs {
    /// Base URL of Nakadi. With it, runs read the live event type instead of
    /// recorded batches, and topics without schema.json get the event type's schema.
    #[arg(long, global = true, env = "NAKADI_URL")]
    nakadi_url: Option<String>,
    /// File holding the bearer token, re-read when it changes (mounted credentials).
    #[arg(long, global = true, env = "NAKADI_TOKEN_FILE")]
    nakadi_token_file: Option<PathBuf>,
    /// Events per batch Nakadi may send (batch_limit).
    #[arg(
        long,
        global = true,
        env = "NAKADI_BATCH_LIMIT",
        default_value_t = 1000
    )]
    nakadi_batch_limit: u32,
    /// Seconds Nakadi may wait to fill a batch (batch_flush_timeout).
    #[arg(long, global = true, default_value_t = 1)]
    nakadi_batch_flush_timeout: u64,
    /// Seconds without data or keep-alive after which a stream is dropped and resumed.
    #[arg(long, global = true, default_value_t = 31)]
    nakadi_silence_timeout: u64,
    /// Attempts without progress before a run gives up (connection errors,
    /// 429, 5xx, dropped or cut streams).
    #[arg(long, global = true, env = "NAKADI_MAX_RETRIES", default_value_t = 10)]
    nakadi_max_retries: u32,
    /// Longest pause between two attempts, in seconds (pauses double from 0.5 s, with jitter).
    #[arg(long, global = true, default_value_t = 30)]
    nakadi_max_backoff: u64,
}

impl NakadiArgs {
    /// A client when a Nakadi URL is set.
    fn client(&self) -> Result<Option<Arc<NakadiClient>>, String> {
        let Some(url) = &self.nakadi_url else {
            return Ok(None);
        };
        let token = match (&self.nakadi_token_file, std::env::var("NAKADI_TOKEN")) {
            (Some(path), _) => TokenSource::file(path),
            (None, Ok(token)) if !token.trim().is_empty() => {
                TokenSource::Static(token.trim().to_string())
            }
            _ => TokenSource::None,
        };
        let mut settings = NakadiSettings::new(url.clone(), token);
        settings.batch_limit = self.nakadi_batch_limit.max(1);
        settings.batch_flush_timeout = Duration::from_secs(self.nakadi_batch_flush_timeout.max(1));
        settings.silence_timeout = Duration::from_secs(self.nakadi_silence_timeout.max(1));
        settings.max_retries = self.nakadi_max_retries;
        settings.max_backoff = Duration::from_secs(self.nakadi_max_backoff.max(1));
        NakadiClient::new(settings)
            .map(|c| Some(Arc::new(c)))
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Materialize one topic once: read, compact, map, write, commit.
    ///
    /// Without --source, recorded batches are read from fixtures/recorded/<topic>.
    /// The output goes to --output (default ./out), under <output>/<topic>/.
    Run(RunArgs),
    /// Print the whole SQL chain a run of a topic executes, and the columns of `events`.
    Explain {
        /// Topic name (a folder under --sql-dir).
        topic: String,
    },
    /// List the topics under --sql-dir, and why any of them does not load.
    Topics,
    /// Print the warehouse import SQL of a topic: the tables, the MAIN/CORRECTION
    /// view and the ODS merge (once), or with --run, the statements that load one
    /// committed run.
    WarehouseSql(WarehouseArgs),
    /// Serve the HTTP API: trigger, watch and stop runs; list topics and preview
    /// mappings. Settings come from flags, the environment or --config.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// A TOML file with any of: listen, output, recordings, api_tokens,
    /// api_token_file, max_concurrent_runs, shutdown_deadline_seconds,
    /// preview_timeout_seconds, preview_memory_mb. Flags and environment win.
    #[arg(long, env = "MATERIALIZER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "MATERIALIZER_LISTEN")]
    listen: Option<String>,
    /// Where runs write: a folder, file:///folder or s3://bucket/prefix [default: out].
    #[arg(long, env = "MATERIALIZER_OUTPUT")]
    output: Option<String>,
    /// Folder of recorded batches per topic, read when no Nakadi URL is set
    /// [default: fixtures/recorded].
    #[arg(long, env = "MATERIALIZER_RECORDINGS")]
    recordings: Option<PathBuf>,
    /// A bearer token the API accepts (repeatable; the environment variable takes a comma-separated list).
    #[arg(
        long = "api-token",
        env = "MATERIALIZER_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_tokens: Vec<String>,
    /// A file with one accepted bearer token per line.
    #[arg(long, env = "MATERIALIZER_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Runs executing at once; more wait in a queue [default: 2].
    #[arg(long)]
    max_concurrent_runs: Option<usize>,
    /// Seconds a shutdown waits for running runs before it stops them [default: 60].
    #[arg(long)]
    shutdown_deadline: Option<u64>,
    /// Seconds one preview may take [default: 5].
    #[arg(long)]
    preview_timeout: Option<f64>,
    /// Memory (MiB) all previews together may use [default: 256].
    #[arg(long)]
    preview_memory_mb: Option<usize>,
    #[command(flatten)]
    s3: S3Args,
}

/// `--config` of `serve`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
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
}

#[derive(Args, Debug)]
struct WarehouseArgs {
    /// Topic name (a folder under --sql-dir).
    topic: String,
    /// The warehouse.
    #[arg(long, value_enum)]
    dialect: DialectArg,
    /// Print the load statements of this committed run instead of the setup.
    #[arg(long)]
    run: Option<u64>,
    /// Where the runs were written (for --run): a folder, file:///folder or s3://bucket/prefix.
    #[arg(long, env = "MATERIALIZER_OUTPUT", default_value = "out")]
    output: String,
    #[command(flatten)]
    s3: S3Args,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum DialectArg {
    Postgres,
    Redshift,
    Oracle,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Topic name (a folder under --sql-dir).
    #[arg(long, short)]
    topic: String,
    /// Recorded Nakadi stream lines: a file, or a folder of *.jsonl / *.ndjson files.
    #[arg(long)]
    source: Option<PathBuf>,
    /// Where files go: a folder, file:///folder or s3://bucket/prefix.
    /// A topic's own output.location takes precedence.
    #[arg(long, env = "MATERIALIZER_OUTPUT", default_value = "out")]
    output: String,
    #[command(flatten)]
    s3: S3Args,
    /// Nakadi partitions mapped and written at the same time (default: CPU cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args, Debug, Clone)]
struct S3Args {
    /// Endpoint of an S3-compatible store (default: AWS, from the environment).
    #[arg(long, env = "MATERIALIZER_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region of the bucket (default: AWS_REGION / AWS_DEFAULT_REGION).
    #[arg(long, env = "MATERIALIZER_S3_REGION")]
    s3_region: Option<String>,
    /// Allow a plain-HTTP S3 endpoint.
    #[arg(long, env = "MATERIALIZER_S3_ALLOW_HTTP")]
    s3_allow_http: bool,
    /// Retries of a failed S3 request (500, 503 SlowDown, timeouts, resets).
    #[arg(long, env = "MATERIALIZER_S3_MAX_RETRIES", default_value_t = 10)]
    s3_max_retries: usize,
}

impl S3Args {
    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http,
            max_retries: self.s3_max_retries,
            ..S3Settings::default()
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            clear_progress_bar();
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), String> {
    let engine = Engine::new(EngineSettings {
        memory_limit: cli.global.memory_mb << 20,
        spill_dir: cli.global.spill_dir.clone(),
        ..EngineSettings::default()
    })
    .map_err(|e| format!("cannot start the query engine: {e}"))?;
    match cli.command {
        Command::Run(args) => run_command(&engine, &cli.global, args).await,
        Command::Explain { topic } => {
            let catalog = load_catalog(&engine, &cli.global).await?;
            let topic = catalog.topic(&topic).map_err(|e| e.to_string())?;
            let mut out = String::new();
            out.push_str(&format!(
                "-- Columns of `events` (schema from {}):\n",
                topic.schema.origin
            ));
            for field in topic.schema.events.fields() {
                out.push_str(&format!(
                    "--   {} {}{}\n",
                    field.name(),
                    field.data_type(),
                    if field.is_nullable() { "" } else { " NOT NULL" }
                ));
            }
            for warning in &topic.schema.warnings {
                out.push_str(&format!("-- left out: {warning}\n"));
            }
            out.push('\n');
            out.push_str(&topic.explain());
            print!("{out}");
            Ok(())
        }
        Command::WarehouseSql(args) => warehouse_sql(&engine, &cli.global, args).await,
        Command::Serve(args) => serve(&engine, &cli.global, args).await,
        Command::Topics => {
            let catalog = load_catalog(&engine, &cli.global).await?;
            if catalog.topics.is_empty() && catalog.broken.is_empty() {
                println!("no topics under {}", catalog.dir.display());
            }
            for (name, topic) in &catalog.topics {
                println!(
                    "{name}\n  event type      {}\n  keys            partitioning {} / ordering {}\n  output          {} {}\n  mapping         {} (output view {})",
                    topic.event_type,
                    topic.compaction.partitioning_key.join(", "),
                    topic.compaction.ordering_key,
                    topic.output.format.extension(),
                    topic
                        .output
                        .location
                        .as_deref()
                        .unwrap_or("(run's --output)"),
                    topic.mapping.path.display(),
                    topic.mapping.output_view(),
                );
            }
            for (name, reason) in &catalog.broken {
                println!("{name}  DOES NOT LOAD\n  {reason}");
            }
            if catalog.broken.is_empty() {
                Ok(())
            } else {
                Err(format!("{} topic(s) do not load", catalog.broken.len()))
            }
        }
    }
}

async fn load_catalog(engine: &Engine, global: &GlobalArgs) -> Result<Catalog, String> {
    let nakadi = global.nakadi.client()?;
    Catalog::load(&global.sql_dir, engine, nakadi.as_deref())
        .await
        .map_err(|e| e.to_string())
}

/// The settings all runs of this process share.
fn environment(
    engine: &Engine,
    global: &GlobalArgs,
    output: &str,
    s3: &S3Args,
    parallelism: Option<usize>,
) -> Result<RunEnvironment, String> {
    Ok(RunEnvironment {
        engine: engine.clone(),
        nakadi: global.nakadi.client()?,
        recordings: PathBuf::from("fixtures/recorded"),
        output: output.to_string(),
        s3: s3.settings(),
        parallelism: parallelism.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
    })
}

async fn run_command(engine: &Engine, global: &GlobalArgs, args: RunArgs) -> Result<(), String> {
    let catalog = load_catalog(engine, global).await?;
    let topic = catalog.topic(&args.topic).map_err(|e| e.to_string())?;
    let env = environment(engine, global, &args.output, &args.s3, args.parallelism)?;
    let progress = Arc::new(Progress::default());
    let cancel = CancellationToken::new();
    let request = env
        .request(
            topic.clone(),
            args.source.as_deref(),
            progress.clone(),
            cancel.clone(),
        )
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    tracing::info!(topic = %topic.name, source = %request.source.describe(), output = %request.output.url, "run starting");
    let show_progress = !args.no_progress && !args.json && std::io::stderr().is_terminal();
    let ticker = show_progress.then(|| spawn_progress_bar(progress.clone()));
    let result = run::execute(engine, request).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    clear_progress_bar();
    let summary = result.map_err(|e| e.to_string())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", describe_summary(&summary));
    }
    Ok(())
}

/// The human summary at the end of a run.
pub fn describe_summary(s: &RunSummary) -> String {
    let c = &s.counts;
    let mut out = String::new();
    match s.outcome {
        Outcome::NothingNew => {
            out.push_str(&format!(
                "{}: nothing new since run {}; nothing written.\n",
                s.topic,
                s.sequence.map_or("(none)".to_string(), |n| n.to_string())
            ));
            return out;
        }
        Outcome::Committed => out.push_str(&format!(
            "{}: run {} committed in {:.2} s{}\n",
            s.topic,
            s.sequence.unwrap_or_default(),
            s.seconds,
            if s.resumed {
                " (resumed an uncommitted attempt)"
            } else {
                ""
            }
        )),
    }
    out.push_str(&format!(
        "  events read      {:>10}  (rejected {}, superseded {})\n",
        c.events_read, c.events_rejected, c.superseded
    ));
    out.push_str(&format!(
        "  main rows        {:>10}  from {} latest events (compaction rate {:.1}%)\n",
        c.main_rows,
        c.main_input,
        s.compaction_rate * 100.0
    ));
    out.push_str(&format!(
        "  correction rows  {:>10}  from {} out-of-order events\n",
        c.correction_rows, c.correction_events
    ));
    out.push_str(&format!(
        "  files            {:>10}  ({} bytes) under {}/{}\n",
        s.files.len(),
        s.bytes_written,
        s.output.trim_end_matches('/'),
        s.topic
    ));
    for file in &s.files {
        out.push_str(&format!("    {:<60} {:>8} rows\n", file.path, file.rows));
    }
    let cursors: Vec<String> = s
        .partitions
        .iter()
        .map(|p| format!("p{} {} -> {}", p.partition, p.start, p.end))
        .collect();
    out.push_str(&format!("  cursors          {}\n", cursors.join(", ")));
    out
}

static PROGRESS_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn progress_slot() -> &'static Mutex<Option<ProgressBar>> {
    PROGRESS_BAR.get_or_init(|| Mutex::new(None))
}

fn clear_progress_bar() {
    if let Some(bar) = progress_slot()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        bar.finish_and_clear();
    }
}

fn spawn_progress_bar(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    *progress_slot().lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    tokio::spawn(async move {
        loop {
            let p = progress.snapshot();
            bar.set_message(format!(
                "{:?} | partitions {}/{} | {} events ({:.1} MB) | {} rejected | rows {} main, {} correction | {} files",
                p.stage,
                p.partitions_finished,
                p.partitions_total,
                p.events_read,
                p.bytes_read as f64 / 1e6,
                p.events_rejected,
                p.main_rows,
                p.correction_rows,
                p.files_written,
            ));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Log lines pause the progress bar while they print.
#[derive(Clone, Copy)]
struct StderrAroundBar;

struct BarAwareWriter;

impl Write for BarAwareWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let slot = progress_slot().lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StderrAroundBar {
    type Writer = BarAwareWriter;

    fn make_writer(&'a self) -> Self::Writer {
        BarAwareWriter
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrAroundBar)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `materializer warehouse-sql`.
async fn warehouse_sql(
    engine: &Engine,
    global: &GlobalArgs,
    args: WarehouseArgs,
) -> Result<(), String> {
    use materializer_core::warehouse::{Dialect, FilePlace, load_run_sql, setup_sql};
    let catalog = load_catalog(engine, global).await?;
    let topic = catalog.topic(&args.topic).map_err(|e| e.to_string())?;
    let dialect = match args.dialect {
        DialectArg::Postgres => Dialect::Postgres,
        DialectArg::Redshift => Dialect::Redshift,
        DialectArg::Oracle => Dialect::Oracle,
    };
    let Some(sequence) = args.run else {
        print!("{}", setup_sql(&topic, dialect).map_err(|e| e.to_string())?);
        return Ok(());
    };
    let location = topic
        .output
        .location
        .clone()
        .unwrap_or_else(|| args.output.clone());
    let output =
        OutputLocation::parse(&location, &args.s3.settings()).map_err(|e| e.to_string())?;
    let ledger = materializer_core::run::Ledger::new(output.clone(), &topic.name);
    let manifest = ledger
        .manifest(sequence)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "run {sequence} of topic {} is not committed under {}",
                topic.name, output.url
            )
        })?;
    let topic_url = format!("{}/{}", output.url.trim_end_matches('/'), topic.name);
    let folder = topic_url.strip_prefix("file://").map(PathBuf::from);
    let place = match &folder {
        Some(folder) => FilePlace::Folder(folder),
        None => FilePlace::Url(&topic_url),
    };
    print!(
        "{}",
        load_run_sql(&topic, dialect, &manifest, place).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// `materializer serve`.
async fn serve(engine: &Engine, global: &GlobalArgs, args: ServeArgs) -> Result<(), String> {
    let file: ServeFile = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ServeFile::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let output = args.output.or(file.output).unwrap_or_else(|| "out".into());
    let recordings = args
        .recordings
        .or(file.recordings)
        .unwrap_or_else(|| PathBuf::from("fixtures/recorded"));
    let token_list = if args.api_tokens.is_empty() {
        file.api_tokens
    } else {
        args.api_tokens
    };
    let tokens = crate::api::auth::Tokens::load(
        &token_list,
        args.api_token_file.or(file.api_token_file).as_ref(),
    )?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    if tokens.is_empty() {
        if !crate::api::is_loopback(&address) {
            return Err(format!(
                "refusing to serve on {address} without API tokens: set --api-token or --api-token-file, \
                 or listen on a loopback address"
            ));
        }
        tracing::warn!(
            "NO API TOKENS: anyone on this machine can trigger and stop runs ({address} is loopback only)"
        );
        eprintln!(
            "WARNING: serving without API tokens; anyone on this machine can trigger and stop runs."
        );
    }
    let mut env = environment(engine, global, &output, &args.s3, None)?;
    env.recordings = recordings;
    let preview_engine = Engine::new(EngineSettings {
        memory_limit: args
            .preview_memory_mb
            .or(file.preview_memory_mb)
            .unwrap_or(256)
            << 20,
        spill_dir: global.spill_dir.clone(),
        ..EngineSettings::default()
    })
    .map_err(|e| e.to_string())?;
    let settings = crate::api::ApiSettings {
        tokens,
        max_concurrent_runs: args
            .max_concurrent_runs
            .or(file.max_concurrent_runs)
            .unwrap_or(2),
        shutdown_deadline: Duration::from_secs(
            args.shutdown_deadline
                .or(file.shutdown_deadline_seconds)
                .unwrap_or(60),
        ),
        preview_timeout: Duration::from_secs_f64(
            args.preview_timeout
                .or(file.preview_timeout_seconds)
                .unwrap_or(5.0),
        ),
        preview_max_events: 1000,
    };
    let nakadi = global.nakadi.client()?;
    let app = crate::api::AppState::new(
        env,
        preview_engine,
        global.sql_dir.clone(),
        nakadi,
        settings,
    )
    .await?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            stop.cancel();
        });
    }
    {
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangups.recv().await.is_some() {
                match app.reload().await {
                    Ok(report) => tracing::info!(
                        topics = report.topics.len(),
                        broken = report.broken.len(),
                        "reloaded on SIGHUP"
                    ),
                    Err(e) => tracing::error!(error = %e, "reload on SIGHUP failed"),
                }
            }
        });
    }
    println!("materializer API on http://{address} (OpenAPI description at /openapi.json)");
    crate::api::serve(app, listener, stop)
        .await
        .map_err(|e| e.to_string())
}
