//! `materializer warehouse-sql`: the import SQL of a topic, or the loads of
//! committed runs.

use std::path::PathBuf;

use materializer_core::commit::{Ledger, Manifest};
use materializer_core::config::output_settings_of;
use materializer_core::mapping::Engine;
use materializer_core::sink::OutputLocation;
use materializer_core::warehouse::{FilePlace, WarehouseError, load_run_sql, setup_sql};

use crate::cli::args::*;
use crate::cli::error::CliError;
use crate::cli::load_catalog;

/// `materializer warehouse-sql`.
pub(crate) async fn warehouse_sql(
    engine: &Engine,
    ctx: &Context,
    args: WarehouseArgs,
) -> Result<(), CliError> {
    if args.run.is_none() && args.loaded_through.is_none() {
        let catalog = load_catalog(engine, ctx).await?;
        let topic = catalog.topic(&args.topic)?;
        print!("{}", setup_sql(&topic, args.dialect, args.start_at)?);
        return Ok(());
    }
    let ledger = ledger(ctx, &args)?;
    let sequences = match (args.run, args.loaded_through) {
        (Some(run), _) => vec![run],
        (None, loaded) => {
            let loaded = loaded.unwrap_or(0);
            let committed = ledger.committed_sequences().await?;
            committed.into_iter().filter(|&s| s > loaded).collect()
        }
    };
    let mut scripts = String::new();
    for sequence in sequences {
        let manifest = ledger
            .manifest(sequence)
            .await?
            .ok_or_else(|| CliError::NotCommitted {
                topic: args.topic.clone(),
                sequence,
                output: ledger.location().url.clone(),
            })?;
        scripts.push_str(&load_script(engine, ctx, &args, &ledger, &manifest).await?);
    }
    print!("{scripts}");
    Ok(())
}

/// The committed runs of the topic: in its `[output] location`, or where
/// `--output` says. Only `topic.toml` is read: a run's SQL needs nothing
/// else of the topic.
fn ledger(ctx: &Context, args: &WarehouseArgs) -> Result<Ledger, CliError> {
    let settings = output_settings_of(&ctx.sql_dir.join(&args.topic))?;
    let location = settings.location.unwrap_or_else(|| args.output.clone());
    let output = OutputLocation::parse(&location, &args.s3.settings())?;
    Ok(Ledger::new(output, &args.topic))
}

/// The load of one committed run. A run committed by an earlier release
/// kept no description of its files: the topic is loaded to describe them.
async fn load_script(
    engine: &Engine,
    ctx: &Context,
    args: &WarehouseArgs,
    ledger: &Ledger,
    manifest: &Manifest,
) -> Result<String, CliError> {
    let topic = match manifest.shape {
        Some(_) => None,
        None => {
            let topic = match load_catalog(engine, ctx).await {
                Ok(catalog) => catalog.topic(&args.topic).map_err(CliError::from),
                Err(e) => Err(e),
            };
            match topic {
                Ok(topic) => Some(topic),
                Err(e) => {
                    return Err(WarehouseError::NoShape {
                        topic: args.topic.clone(),
                        sequence: manifest.sequence,
                        reason: materializer_core::report(&e),
                    }
                    .into());
                }
            }
        }
    };
    let output = ledger.location();
    let topic_url = format!("{}/{}", output.url.trim_end_matches('/'), args.topic);
    let folder = topic_url.strip_prefix("file://").map(PathBuf::from);
    let place = match &folder {
        Some(folder) => FilePlace::Folder(folder),
        None => FilePlace::Url(&topic_url),
    };
    Ok(load_run_sql(
        manifest,
        topic.as_deref(),
        args.dialect,
        place,
    )?)
}
