//! What the handlers share: the run environment, the topics as last loaded,
//! the runs, the metrics and the settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use materializer_core::config::{Broken, Catalog, Topic};
use materializer_core::mapping::Engine;
use materializer_core::run::RunEnvironment;
use materializer_core::source::NakadiClient;

use crate::api::auth::Tokens;
use crate::api::error::{ApiError, ProblemKind};
use crate::api::metrics::Metrics;
use crate::api::models::*;
use crate::api::registry::{RunHost, RunRegistry};
use crate::api::turns::Turns;
use materializer_core::ErrorClass;
use materializer_core::config::ConfigError;

/// How the API serves.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub tokens: Tokens,
    /// Runs executing at once; more wait in a queue.
    pub max_concurrent_runs: usize,
    /// How long a shutdown waits for running runs before it stops them.
    pub shutdown_deadline: Duration,
    /// Longest time one preview may take.
    pub preview_timeout: Duration,
    /// Most sample events a preview reads from the topic's source.
    pub preview_max_events: usize,
    /// Whether mappings may be saved back to `sql/<topic>/mapping.sql`.
    pub allow_mapping_edits: bool,
}

/// Previews running at once; more wait for a turn (within their timeout).
const PREVIEWS_AT_ONCE: usize = 4;

/// A topic's configuration as served: the last good one, and why the newest
/// files do not load, if they do not.
#[derive(Default)]
pub struct TopicsView {
    pub topics: BTreeMap<String, Arc<Topic>>,
    /// Topics whose files do not load now, with the reason; when they loaded
    /// before, `topics` still holds their last good configuration.
    pub broken: BTreeMap<String, Broken>,
}

/// Everything the handlers share.
pub struct AppState {
    pub env: RunEnvironment,
    /// A separate, smaller engine for previews: a runaway draft cannot take the runs' memory.
    pub preview_engine: Engine,
    pub sql_dir: PathBuf,
    pub nakadi: Option<Arc<NakadiClient>>,
    pub settings: ApiSettings,
    pub topics: RwLock<TopicsView>,
    pub runs: RunRegistry,
    /// Turns of the previews running at once.
    pub previews: Turns,
    /// Held while a mapping is checked and saved, and while topics reload:
    /// each sees the files the one before left.
    pub edits: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: no new runs are accepted.
    pub shutdown: CancellationToken,
    /// This API's OpenAPI document, built with the routes.
    pub openapi: std::sync::OnceLock<utoipa::openapi::OpenApi>,
}

impl AppState {
    pub async fn new(
        env: RunEnvironment,
        preview_engine: Engine,
        sql_dir: PathBuf,
        nakadi: Option<Arc<NakadiClient>>,
        settings: ApiSettings,
    ) -> Result<Arc<AppState>, ConfigError> {
        let state = Arc::new(AppState {
            runs: RunRegistry::new(settings.max_concurrent_runs),
            previews: Turns::new(PREVIEWS_AT_ONCE),
            edits: tokio::sync::Mutex::new(()),
            env,
            preview_engine,
            sql_dir,
            nakadi,
            settings,
            topics: RwLock::new(TopicsView::default()),
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            openapi: std::sync::OnceLock::new(),
        });
        state.reload().await?;
        Ok(state)
    }

    /// Re-reads the topic folders. A topic that no longer loads keeps its last
    /// good configuration and the reason is reported.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigError> {
        // Not while a mapping is being saved: this reload could read the old
        // file and replace the topic the save has just served.
        let _edits = self.edits.lock().await;
        let catalog =
            Catalog::load(&self.sql_dir, &self.env.engine, self.nakadi.as_deref()).await?;
        let mut view = self.topics.write().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::new();
        let mut topics = catalog.topics;
        for name in catalog.broken.keys() {
            if let Some(last_good) = view.topics.get(name) {
                topics.insert(name.clone(), last_good.clone());
                kept.push(name.clone());
            }
        }
        for (name, broken) in &catalog.broken {
            warn!(topic = %name, reason = %broken, "topic does not load");
        }
        let reasons = catalog
            .broken
            .iter()
            .map(|(name, broken)| (name.clone(), broken.reason.clone()))
            .collect();
        *view = TopicsView {
            topics,
            broken: catalog.broken,
        };
        Ok(ReloadReport {
            topics: view.topics.keys().cloned().collect(),
            broken: reasons,
            kept_last_good: kept,
        })
    }

    /// Serves `topic` as loaded now (its files were just checked and saved).
    pub(crate) fn install(&self, topic: Topic) -> Arc<Topic> {
        let topic = Arc::new(topic);
        let mut view = self.topics.write().unwrap_or_else(|e| e.into_inner());
        view.broken.remove(topic.name());
        view.topics.insert(topic.name().to_string(), topic.clone());
        topic
    }

    /// A topic's folder, its configuration as served (none when it never
    /// loaded) and why its files do not load now. Only names of the folders
    /// the last reload found are answered: a name never becomes a path.
    pub(crate) fn topic_files(&self, name: &str) -> Result<TopicFiles, ApiError> {
        let view = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let served = view.topics.get(name).cloned();
        let broken = view.broken.get(name).cloned();
        if served.is_none() && broken.is_none() {
            return Err(unknown_topic(&view, name));
        }
        let dir = match &served {
            Some(topic) => topic.dir().to_path_buf(),
            None => self.sql_dir.join(name),
        };
        Ok(TopicFiles {
            dir,
            served,
            broken,
        })
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, ApiError> {
        let view = self.topics.read().unwrap_or_else(|e| e.into_inner());
        view.topics
            .get(name)
            .cloned()
            .ok_or_else(|| match view.broken.get(name) {
                Some(broken) => ApiError::class(ErrorClass::Config, broken.reason.clone())
                    .titled("Topic does not load"),
                None => unknown_topic(&view, name),
            })
    }
}

/// What [`AppState::topic_files`] answers.
pub(crate) struct TopicFiles {
    pub dir: PathBuf,
    pub served: Option<Arc<Topic>>,
    pub broken: Option<Broken>,
}

impl TopicFiles {
    /// `ok`, `stale` or `broken`, as `GET /topics` says.
    pub fn status(&self) -> &'static str {
        match (&self.served, &self.broken) {
            (Some(_), None) => "ok",
            (Some(_), Some(_)) => "stale",
            (None, _) => "broken",
        }
    }
}

/// The answer for a topic that is neither served nor broken.
fn unknown_topic(view: &TopicsView, name: &str) -> ApiError {
    ApiError::new(
        ProblemKind::NotFound,
        format!(
            "unknown topic {name:?}; topics: {}",
            view.topics.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )
    .titled("Unknown topic")
}

impl RunHost for AppState {
    fn runs(&self) -> &RunRegistry {
        &self.runs
    }

    fn environment(&self) -> &RunEnvironment {
        &self.env
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
