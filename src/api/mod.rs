//! The HTTP API: schedulers trigger, watch and stop runs; analysts list topics
//! and preview mappings. Runs go through the same [`run::execute`] as the CLI.
//!
//! Every route but `/healthz`, `/metrics`, `/openapi.json`, `/problems/*`
//! and the web console's files (`/`, `/assets/*`) needs a bearer token. Errors are problem documents (`application/problem+json`) carrying
//! the messages the CLI prints. The OpenAPI document is generated from the
//! handlers below, so it lists exactly the routes that are served.

pub mod auth;
mod columns;
mod error;
mod files;
pub mod metrics;
pub mod models;
mod openapi;
mod registry;
mod routes;
mod sources;
mod state;
pub mod turns;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, CurrentMapping, Problem, SqlError};
pub use state::{ApiSettings, AppState, TopicsView};

use self::openapi::{ApiDoc, complete_responses};
use self::routes::mapping::*;
use self::routes::operations::*;
use self::routes::preview::*;
use self::routes::run_detail::*;
use self::routes::runs::*;
use self::routes::source_events::*;
use self::routes::topics::*;
use crate::console;

/// The routes and their OpenAPI description.
pub fn router(app: Arc<AppState>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let protected: OpenApiRouter<Arc<AppState>> = OpenApiRouter::new()
        .routes(routes!(list_topics))
        .routes(routes!(get_topic))
        .routes(routes!(topic_sample))
        .routes(routes!(warehouse_sql))
        .routes(routes!(get_mapping, put_mapping))
        .routes(routes!(source_events))
        .routes(routes!(preview_topic))
        .routes(routes!(trigger_run, list_runs))
        .routes(routes!(get_run))
        .routes(routes!(run_events))
        .routes(routes!(run_files))
        .routes(routes!(run_manifest))
        .routes(routes!(preview_file))
        .routes(routes!(download_file))
        .routes(routes!(stop_run))
        .routes(routes!(reload))
        .routes(routes!(info))
        .layer(middleware::from_fn_with_state(
            Arc::new(app.settings.tokens.clone()),
            auth::require_token,
        ));
    let public: OpenApiRouter<Arc<AppState>> = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json))
        .routes(routes!(describe_problem));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected)
        .merge(public)
        .split_for_parts();
    complete_responses(&mut doc);
    let _ = app.openapi.set(doc.clone());
    let router = router
        .merge(console::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .layer(middleware::from_fn(error::plain_errors_as_problems))
        .layer(middleware::from_fn(error::catch_panics));
    (router.with_state(app), doc)
}

/// Serves until `stop` fires, then shuts down gracefully: no new runs, running
/// runs get `shutdown_deadline` to finish, then are stopped without committing.
pub async fn serve(
    app: Arc<AppState>,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (router, _) = router(app.clone());
    let shutdown = {
        let app = app.clone();
        async move {
            stop.cancelled().await;
            app.shutdown.cancel();
            let (active, queued) = app.runs.load();
            info!(
                active,
                queued,
                deadline_s = app.settings.shutdown_deadline.as_secs(),
                "shutting down"
            );
            app.runs.cancel_queued();
            let deadline = tokio::time::Instant::now() + app.settings.shutdown_deadline;
            while app.runs.load().0 > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if app.runs.load().0 > 0 {
                warn!(
                    "shutdown deadline reached: stopping the runs still going (nothing of them is committed)"
                );
                app.runs.cancel_all();
                while app.runs.load().0 > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether an address is only reachable from this machine.
pub fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}
