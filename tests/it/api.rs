//! The HTTP API over a real listening server: every route, statuses, bodies,
//! tokens, runs triggered, watched and stopped, previews and the OpenAPI document.
//!
//! This file holds the harness: a server on a port it chose itself, a client that
//! calls it with the token, and the events the previews are asked about.
//! The tests are in its parts: [`server`] (tokens, the OpenAPI document,
//! problems, info, the console), [`topics`] (topics, their schema, SQL and
//! mapping), [`runs`] (runs triggered, queued, watched and stopped) and
//! [`previews`].

use std::sync::Arc;
use std::time::Duration;

use materializer::api::auth::Tokens;
use materializer::api::{ApiSettings, AppState};
use materializer_core::run::RunEnvironment;
use materializer_core::{Engine, EngineSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::Workspace;

mod previews;
mod runs;
mod server;
mod topics;

const TOKEN: &str = "test-token-7f3a";
const TOPIC: &str = "article-stock-changed";

struct Api {
    url: String,
    client: reqwest::Client,
    app: Arc<AppState>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn settings(max_concurrent_runs: usize) -> ApiSettings {
    ApiSettings {
        tokens: Tokens::load(&[TOKEN.to_string()], None).unwrap(),
        max_concurrent_runs,
        shutdown_deadline: Duration::from_secs(30),
        // Long enough for any preview of a debug build on busy cores: the
        // test of the deadline sets its own.
        preview_timeout: Duration::from_secs(120),
        preview_max_events: 1000,
        allow_mapping_edits: false,
    }
}

async fn start(ws: &Workspace, settings: ApiSettings) -> Api {
    let env = RunEnvironment {
        engine: Workspace::engine(),
        nakadi: None,
        recordings: ws.path("recorded"),
        output: ws.out().display().to_string(),
        s3: Default::default(),
        parallelism: 2,
        workers: None,
    };
    let preview_engine = Engine::new(EngineSettings {
        memory_limit: 256 << 20,
        ..EngineSettings::default()
    })
    .unwrap();
    let app = AppState::new(env, preview_engine, ws.sql(), None, settings)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(materializer::api::serve(
        app.clone(),
        listener,
        stop.clone(),
    ));
    Api {
        url,
        client: reqwest::Client::new(),
        app,
        stop,
        server,
    }
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }

    /// The answer to `GET /runs/{id}/events`, its body still to be read.
    async fn events(&self, run: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{run}/events", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    async fn put_mapping(&self, body: Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/topics/{TOPIC}/mapping"),
            Some(body),
        )
        .await
    }

    /// Polls a run until it ends; returns every view seen.
    async fn follow(&self, id: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..6000 {
            let (status, view) = self.get(&format!("/runs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{view}");
            let state = view["state"].as_str().unwrap().to_string();
            seen.push(view);
            if ["succeeded", "failed", "stopped"].contains(&state.as_str()) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {id} did not end");
    }
}

fn article(n: i64, qty: i64) -> Value {
    json!({"metadata": {"eid": format!("e-{n}"), "occurred_at": "2024-06-03T08:00:00Z"},
           "article_id": 100 + n % 3, "brand": "Nike", "version": n, "available_qty": qty})
}
