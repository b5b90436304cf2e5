//! `materializer run`: one run of one topic, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use materializer_cluster::Cluster;
use materializer_core::mapping::Engine;
use materializer_core::run::remote::PartitionWorkers;
use materializer_core::run::{self, Progress};

use crate::cli::args::*;
use crate::cli::error::CliError;
use crate::cli::progress::*;
use crate::cli::signals::stop_requested;
use crate::cli::summary::*;
use crate::cli::{environment, load_catalog};

pub(crate) async fn run_command(
    engine: &Engine,
    ctx: &Context,
    args: RunArgs,
) -> Result<(), CliError> {
    let catalog = load_catalog(engine, ctx).await?;
    let topic = catalog.topic(&args.topic)?;
    let mut env = environment(engine, ctx, &args.output, &args.s3, args.parallelism)?;
    env.workers = args
        .cluster
        .map(|address| Arc::new(Cluster::new(address)) as Arc<dyn PartitionWorkers>);
    let progress = Arc::new(Progress::default());
    let cancel = CancellationToken::new();
    let request = env.request(
        topic.clone(),
        args.source.as_deref(),
        progress.clone(),
        cancel.clone(),
    )?;
    let stopped = stop_requested();
    tokio::spawn(async move {
        stopped.await;
        cancel.cancel();
    });
    tracing::info!(topic = %topic.name(), source = %request.source.describe(), output = %request.output.url, "run starting");
    let show_progress = !args.no_progress && !args.json && std::io::stderr().is_terminal();
    let ticker = show_progress.then(|| spawn_progress_bar(progress.clone()));
    let result = run::execute(engine, request).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    clear_progress_bar();
    let summary = result?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(CliError::Json)?
        );
    } else {
        print!("{}", describe_summary(&summary));
    }
    Ok(())
}
