//! The command line: the same runs the HTTP API triggers, from a terminal.

mod args;
mod commands;
mod logging;
mod progress;
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

use commands::run::run_command;
use commands::serve::serve;
use commands::warehouse_sql::warehouse_sql;
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
    max_term_width = 100
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

pub(crate) async fn dispatch(cli: Cli) -> Result<(), String> {
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

pub(crate) async fn load_catalog(engine: &Engine, global: &GlobalArgs) -> Result<Catalog, String> {
    let nakadi = global.nakadi.client()?;
    Catalog::load(&global.sql_dir, engine, nakadi.as_deref())
        .await
        .map_err(|e| e.to_string())
}

/// The settings all runs of this process share.
pub(crate) fn environment(
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
