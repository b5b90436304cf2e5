//! `materializer serve`: the HTTP API.

use tokio_util::sync::CancellationToken;

use materializer_core::mapping::{Engine, EngineSettings};

use crate::api::auth::Tokens;
use crate::cli::args::*;
use crate::cli::environment;
use crate::cli::error::CliError;
use crate::cli::serve_settings::{ServeFile, ServeSettings};
use crate::cli::signals::stop_requested;

/// `materializer serve`.
pub(crate) async fn serve(engine: &Engine, ctx: &Context, args: ServeArgs) -> Result<(), CliError> {
    let file = match &args.config {
        Some(path) => ServeFile::read(path)?,
        None => ServeFile::default(),
    };
    let settings = ServeSettings::resolve(&args, file)?;
    let tokens = Tokens::load(&settings.api_tokens, settings.api_token_file.as_ref())?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|source| CliError::Listen {
            address: settings.listen.clone(),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| CliError::Listen {
        address: settings.listen.clone(),
        source,
    })?;
    if tokens.is_empty() {
        if !crate::api::is_loopback(&address) {
            return Err(CliError::NoTokens { address });
        }
        tracing::warn!(
            "NO API TOKENS: anyone on this machine can trigger and stop runs ({address} is loopback only)"
        );
        eprintln!(
            "WARNING: serving without API tokens; anyone on this machine can trigger and stop runs."
        );
    }
    let mut env = environment(engine, ctx, &settings.output, &args.s3, None)?;
    env.recordings = settings.recordings.clone();
    env.workers = settings.cluster.clone().map(|address| {
        std::sync::Arc::new(materializer_cluster::Cluster::new(address))
            as std::sync::Arc<dyn materializer_core::run::remote::PartitionWorkers>
    });
    let preview_engine = Engine::new(EngineSettings {
        memory_limit: settings.preview_memory_mb << 20,
        spill_dir: ctx.engine.spill_dir.clone(),
        ..EngineSettings::default()
    })
    .map_err(CliError::Engine)?;
    let api_settings = crate::api::ApiSettings {
        tokens,
        max_concurrent_runs: settings.max_concurrent_runs,
        shutdown_deadline: settings.shutdown_deadline,
        preview_timeout: settings.preview_timeout,
        preview_max_events: settings.preview_max_events,
        allow_mapping_edits: settings.allow_mapping_edits,
    };
    let nakadi = ctx.nakadi_client()?;
    let app = crate::api::AppState::new(
        env,
        preview_engine,
        ctx.sql_dir.clone(),
        nakadi,
        api_settings,
    )
    .await?;
    let stop = CancellationToken::new();
    {
        // Watched from here on, before the banner says the server is up.
        let stopped = stop_requested();
        let stop = stop.clone();
        tokio::spawn(async move {
            stopped.await;
            stop.cancel();
        });
    }
    // SIGHUP is watched before the banner too: one that came before the
    // watch would end the process (its default action).
    if let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    {
        let app = app.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match app.reload().await {
                    Ok(report) => tracing::info!(
                        topics = report.topics.len(),
                        broken = report.broken.len(),
                        "reloaded on SIGHUP"
                    ),
                    Err(e) => {
                        tracing::error!(error = %materializer_core::report(&e), "reload on SIGHUP failed")
                    }
                }
            }
        });
    }
    println!(
        "materializer on http://{address}: the console at http://{address}/, the API's OpenAPI \
         description at /openapi.json"
    );
    crate::api::serve(app, listener, stop)
        .await
        .map_err(CliError::Serve)
}
