//! `materializer warehouse-sql`: the import SQL of a topic, or of one run.

use std::path::PathBuf;

use materializer_core::mapping::Engine;
use materializer_core::sink::OutputLocation;

use crate::cli::args::*;
use crate::cli::error::CliError;
use crate::cli::load_catalog;

/// `materializer warehouse-sql`.
pub(crate) async fn warehouse_sql(
    engine: &Engine,
    ctx: &Context,
    args: WarehouseArgs,
) -> Result<(), CliError> {
    use materializer_core::warehouse::{FilePlace, load_run_sql, setup_sql};
    let catalog = load_catalog(engine, ctx).await?;
    let topic = catalog.topic(&args.topic)?;
    let dialect = args.dialect;
    let Some(sequence) = args.run else {
        print!("{}", setup_sql(&topic, dialect, args.start_at)?);
        return Ok(());
    };
    let location = topic
        .output()
        .location
        .clone()
        .unwrap_or_else(|| args.output.clone());
    let output = OutputLocation::parse(&location, &args.s3.settings())?;
    let ledger = materializer_core::commit::Ledger::new(output.clone(), topic.name());
    let manifest = ledger
        .manifest(sequence)
        .await?
        .ok_or_else(|| CliError::NotCommitted {
            topic: topic.name().to_string(),
            sequence,
            output: output.url.clone(),
        })?;
    let topic_url = format!("{}/{}", output.url.trim_end_matches('/'), topic.name());
    let folder = topic_url.strip_prefix("file://").map(PathBuf::from);
    let place = match &folder {
        Some(folder) => FilePlace::Folder(folder),
        None => FilePlace::Url(&topic_url),
    };
    print!("{}", load_run_sql(&topic, dialect, &manifest, place)?);
    Ok(())
}
