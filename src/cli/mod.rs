//! The command line: the same runs the HTTP API triggers, from a terminal.

mod args;
mod commands;
mod error;
mod human;
mod logging;
mod progress;
mod serve_settings;
mod signals;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use materializer_core::config::Catalog;
use materializer_core::mapping::{Engine, EngineSettings};
use materializer_core::run::RunEnvironment;

use crate::cli::args::*;
use crate::cli::logging::*;
use crate::cli::progress::*;

use commands::cluster::{ClusterArgs, cluster};
use commands::explain::explain;
use commands::healthcheck::healthcheck;
use commands::preview::preview;
use commands::record::record;
use commands::run::run_command;
use commands::serve::serve;
use commands::topics::topics;
use commands::warehouse_sql::warehouse_sql;
pub use error::CliError;
use materializer_core::report;
pub use summary::describe_summary;

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
    max_term_width = 100,
    after_long_help = error::exit_codes_help()
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Materialize one topic once: read, compact, map, write, commit.
    ///
    /// Events come from --source (files of events or recorded batches), else
    /// the topic's [source] recording, else the live Nakadi of --nakadi-url,
    /// else fixtures/recorded/<topic>. The output goes to --output (default
    /// ./out), under <output>/<topic>/.
    Run(RunArgs),
    /// Print the whole SQL chain a run of a topic executes, and the columns of `events`.
    Explain(ExplainArgs),
    /// List the topics under --sql-dir, and why any of them does not load.
    Topics(TopicsArgs),
    /// Print the warehouse import SQL of a topic: the staging tables, the ODS,
    /// the history and the merge (run once), or with --run, the statements that
    /// load one committed run. The header states what the ODS and the history
    /// hold.
    WarehouseSql(WarehouseArgs),
    /// Apply a topic's mapping to sample events and show the MAIN, CORRECTION
    /// and rejected rows, as a run would make them. Nothing is written.
    ///
    /// Events come from --events (a file of JSON events, one per line; each
    /// example topic has one under fixtures/samples/), or the first --limit
    /// events of the topic's source. --mapping tries a draft instead of
    /// mapping.sql.
    Preview(PreviewArgs),
    /// Turn a file of events (one JSON event per line) into a recording of
    /// Nakadi batches, or append them to one: offsets go on after the newest
    /// the recording's folder holds, so a recording can grow between runs.
    ///
    /// A run reads files of plain events as they are (--source); a recording
    /// chooses the partition and keeps its offsets whatever else the file
    /// holds.
    Record(RecordArgs),
    /// Serve the HTTP API: trigger, watch and stop runs; list topics and preview
    /// mappings. Settings come from flags, the environment or --config.
    Serve(ServeArgs),
    /// Exit 0 when `serve` on --listen answers GET /healthz with 200, 1 when it
    /// does not (a container health check without an HTTP client).
    Healthcheck(HealthcheckArgs),
    /// Start a role of an Apache DataFusion Ballista cluster that runs the
    /// partitions of runs started with `run --cluster df://HOST:PORT`: a
    /// scheduler, or an executor (one or more per machine).
    Cluster(ClusterArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|runtime| run_to_the_end(runtime, dispatch(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            clear_progress_bar();
            eprintln!("error: {}", report(&error));
            ExitCode::from(error.class().exit_code())
        }
    }
}

/// Runs the command on `runtime`. A panic (a bug) ends it as an `internal`
/// failure with its exit code, instead of Rust's own code 101 that no
/// scheduler knows; the panic's own lines are printed before, as usual.
fn run_to_the_end(
    runtime: tokio::runtime::Runtime,
    command: impl std::future::Future<Output = Result<(), CliError>>,
) -> Result<(), CliError> {
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(command)));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            // Tasks of the broken command may still run: do not wait for them.
            runtime.shutdown_background();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string());
            Err(CliError::Panicked { message })
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Run(args) => {
            let ctx = global.run_context(&args.runner);
            run_command(&ctx.query_engine()?, &ctx, args).await
        }
        Command::Explain(args) => {
            let ctx = global.context(&args.nakadi);
            explain(&ctx.query_engine()?, &ctx, &args.topic).await
        }
        Command::WarehouseSql(args) => {
            let ctx = global.context(&args.nakadi);
            warehouse_sql(&ctx.query_engine()?, &ctx, args).await
        }
        Command::Serve(args) => {
            let ctx = global.run_context(&args.runner);
            serve(&ctx.query_engine()?, &ctx, args).await
        }
        Command::Preview(args) => {
            let ctx = global.context(&args.nakadi);
            let ctx = Context {
                engine: args.engine.clone(),
                ..ctx
            };
            preview(&ctx.query_engine()?, &ctx, args).await
        }
        Command::Topics(args) => {
            let ctx = global.context(&args.nakadi);
            topics(&ctx.query_engine()?, &ctx).await
        }
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Cluster(args) => {
            let ctx = global.context(&NakadiArgs::default());
            let ctx = Context {
                engine: match &args.role {
                    commands::cluster::Role::Executor(executor) => executor.engine.clone(),
                    commands::cluster::Role::Scheduler(_) => EngineArgs::default(),
                },
                ..ctx
            };
            cluster(&ctx, args).await
        }
        Command::Record(args) => record(&args),
    }
}

impl Context {
    /// The query engine, within the memory the command was given.
    fn query_engine(&self) -> Result<Engine, CliError> {
        Engine::new(EngineSettings {
            memory_limit: self.engine.memory_mb << 20,
            spill_dir: self.engine.spill_dir.clone(),
            ..EngineSettings::default()
        })
        .map_err(CliError::Engine)
    }
}

pub(crate) async fn load_catalog(engine: &Engine, ctx: &Context) -> Result<Catalog, CliError> {
    let nakadi = ctx.nakadi_client()?;
    Ok(Catalog::load(&ctx.sql_dir, engine, nakadi.as_deref()).await?)
}

/// The settings all runs of this process share.
pub(crate) fn environment(
    engine: &Engine,
    ctx: &Context,
    output: &str,
    s3: &S3Args,
    parallelism: Option<usize>,
) -> Result<RunEnvironment, CliError> {
    Ok(RunEnvironment {
        engine: engine.clone(),
        nakadi: ctx.nakadi_client()?,
        recordings: PathBuf::from("fixtures/recorded"),
        output: output.to_string(),
        s3: s3.settings(),
        parallelism: parallelism.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        workers: None,
    })
}
