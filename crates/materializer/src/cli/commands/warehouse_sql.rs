//! `materializer warehouse-sql`: the import SQL of a topic, or of one run.

use std::path::PathBuf;

use materializer_core::mapping::Engine;
use materializer_core::sink::OutputLocation;

use crate::cli::args::*;
use crate::cli::load_catalog;

/// `materializer warehouse-sql`.
pub(crate) async fn warehouse_sql(
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
