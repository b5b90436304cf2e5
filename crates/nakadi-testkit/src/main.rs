//! `nakadi-server`: a Nakadi-compatible server on this machine, serving the
//! event types of the topics under `--sql-dir` with their recorded events,
//! for trying mappings against a live stream and for tests.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use nakadi_testkit::{Bus, topics};

/// A Nakadi-compatible server (event types, partitions, publishing, the
/// low-level stream, subscriptions, commits, faults on request), preloaded
/// with the recorded events of every topic under --sql-dir. Everything is kept
/// in memory.
///
/// Publish with `POST /event-types/{name}/events` and a JSON array of events.
/// Business and data change events are validated as Nakadi validates them:
/// `metadata.eid` (a UUID) and `metadata.occurred_at` (a date-time), and for
/// data change events `data_op` (C, U, D or S), `data_type` and `data`; a
/// batch with an event that is not valid is refused whole with 422, naming
/// the field. Limits: 16 MiB per publish (413 beyond), 1,000,000 bytes per
/// event (422), as Nakadi's default. Each
/// event goes to the partition the event type's `partition_strategy` chooses,
/// as Nakadi does: `random` (the default) any partition, so one key's events
/// spread over all of them; `hash` the partition its `partition_key_fields`
/// hash to; `user_defined` the one its `metadata.partition` names (a batch
/// with an event that names none, or one that does not exist, is refused
/// whole with 422). Create event types with `POST /event-types` (the document
/// as Nakadi takes it; `default_statistic.read_parallelism` sets the number of
/// partitions).
#[derive(Parser, Debug)]
#[command(
    name = "nakadi-server",
    version,
    about,
    long_about,
    max_term_width = 100
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "NAKADI_SERVER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Folder with one sub-folder per topic (topic.toml, schema.json): the
    /// event types to serve. Topics that map the same event type share it.
    #[arg(long, env = "MATERIALIZER_SQL_DIR", default_value = "sql")]
    sql_dir: PathBuf,
    /// Folder with one folder of recorded stream lines per topic.
    #[arg(long, default_value = "fixtures/recorded")]
    recordings: PathBuf,
    /// Require this bearer token on every request.
    #[arg(long, env = "NAKADI_SERVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Partitions of an event type without recordings.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Seed of the `random` partition strategy: the same events published in
    /// the same order go to the same partitions (default: a new seed at
    /// every start).
    #[arg(long)]
    partition_seed: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let event_types = topics::load(&args.sql_dir, &args.recordings)?;
    let bus = Bus::new(args.token.clone(), args.partitions);
    if let Some(seed) = args.partition_seed {
        bus.seed_partitions(seed);
    }
    let mut served = Vec::new();
    for event_type in event_types {
        let partitions = if event_type.recorded_partitions > 0 {
            event_type.recorded_partitions
        } else {
            args.partitions
        };
        let name = event_type.name().to_string();
        bus.add_event_type(event_type.document.clone(), partitions)?;
        let events = bus
            .append_recording(&name, &event_type.recording)
            .map_err(|e| {
                format!(
                    "recording of topic {}: {e}",
                    event_type.recorded_from.as_deref().unwrap_or("?")
                )
            })?;
        served.push(format!(
            "{name} ({partitions} partitions, {events} events; topics {})",
            event_type.topics.join(", ")
        ));
    }
    let (address, _handle) = bus
        .start(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!("Nakadi-compatible server on http://{address}");
    for line in &served {
        println!("  {line}");
    }
    println!(
        "Try: materializer run --topic <topic> --nakadi-url http://{address}{}",
        if args.token.is_some() {
            " (with NAKADI_TOKEN set)"
        } else {
            ""
        }
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
