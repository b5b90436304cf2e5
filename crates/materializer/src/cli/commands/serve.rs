//! `materializer serve`: the HTTP API.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use materializer_core::mapping::{Engine, EngineSettings};

use crate::cli::args::*;
use crate::cli::environment;

/// `materializer serve`.
pub(crate) async fn serve(
    engine: &Engine,
    global: &GlobalArgs,
    args: ServeArgs,
) -> Result<(), String> {
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
