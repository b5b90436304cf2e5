//! The HTTP API over a real listening server: every route, statuses, bodies,
//! tokens, runs triggered, watched and stopped, previews and the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use materializer::api::auth::Tokens;
use materializer::api::{ApiSettings, AppState};
use materializer_core::run::{Ledger, RunEnvironment};
use materializer_core::{Engine, EngineSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{Workspace, article_stream, committed};

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
        preview_timeout: Duration::from_secs(2),
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

fn big_workspace(events: usize) -> Workspace {
    let ws = Workspace::new();
    ws.record(TOPIC, &article_stream(events, 4, 99));
    ws
}

#[tokio::test]
async fn tokens_are_required_except_for_health_metrics_and_the_description() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let plain = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/topics"),
        (reqwest::Method::GET, "/topics/article-stock-changed"),
        (reqwest::Method::POST, "/topics/article-stock-changed/runs"),
        (reqwest::Method::GET, "/topics/article-stock-changed/runs"),
        (
            reqwest::Method::POST,
            "/topics/article-stock-changed/preview",
        ),
        (reqwest::Method::GET, "/runs/x"),
        (reqwest::Method::POST, "/runs/x/stop"),
        (reqwest::Method::POST, "/reload"),
        (reqwest::Method::GET, "/runs/x/events"),
        (reqwest::Method::GET, "/runs/x/files"),
        (reqwest::Method::GET, "/topics/article-stock-changed/sample"),
        (
            reqwest::Method::GET,
            "/topics/article-stock-changed/warehouse-sql",
        ),
        (
            reqwest::Method::PUT,
            "/topics/article-stock-changed/mapping",
        ),
        (reqwest::Method::GET, "/info"),
    ] {
        let none = plain
            .request(method.clone(), format!("{}{path}", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        assert_eq!(none.headers()["content-type"], "application/problem+json");
        let wrong = plain
            .request(method, format!("{}{path}", api.url))
            .bearer_auth("test-token-7f3b")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["status"], 403);
        assert!(
            !body.to_string().contains("7f3b"),
            "the given token is not echoed"
        );
    }
    for path in [
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/",
        "/assets/app.js",
        "/assets/app.css",
    ] {
        let open = plain
            .get(format!("{}{path}", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(open.status(), StatusCode::OK, "{path}");
    }
    // Nothing was triggered by the refused requests.
    assert!(
        committed(&ws.local_output(), TOPIC)
            .await
            .sequences
            .is_empty()
    );
}

#[tokio::test]
async fn topics_are_listed_and_shown_with_schema_and_sql() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, topics) = api.get("/topics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        topics,
        json!([
            {"name": "article-stock-changed", "event_type": "article.stock-changed", "status": "ok",
             "error": null, "error_at": null, "running": false, "partitioning_key": ["article_id"],
             "ordering_key": "version", "format": "csv", "last_run": null},
            {"name": "order-placed", "event_type": "shop.order-placed", "status": "ok",
             "error": null, "error_at": null, "running": false, "partitioning_key": ["order_number"],
             "ordering_key": "metadata.occurred_at", "format": "csv", "last_run": null},
        ])
    );
    let (status, topic) = api.get("/topics/article-stock-changed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(topic["partitioning_key"], json!(["article_id"]));
    assert_eq!(topic["ordering_key"], "version");
    assert_eq!(topic["output"]["format"], "csv");
    assert_eq!(
        topic["events"][1],
        json!({"name": "article_id", "type": "BIGINT", "nullable": false})
    );
    assert!(
        topic["mapping_sql"]
            .as_str()
            .unwrap()
            .contains("CREATE VIEW output AS")
    );
    assert!(
        topic["generated_sql"]
            .as_str()
            .unwrap()
            .contains("ROW_NUMBER() OVER (PARTITION BY \"article_id\"")
    );
    assert_eq!(topic["output_columns"].as_array().unwrap().len(), 7);
    let (status, problem) = api.get("/topics/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["title"], "Unknown topic");
    assert_eq!(
        problem["detail"],
        "unknown topic \"nope\"; topics: article-stock-changed, order-placed"
    );
}

#[tokio::test]
async fn a_run_over_http_commits_what_the_cli_commits_and_its_counters_end_at_the_summary() {
    let ws = big_workspace(40_000);
    let api = start(&ws, settings(2)).await;
    let (status, triggered) = api.post("/topics/article-stock-changed/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = triggered["id"].as_str().unwrap().to_string();
    assert_eq!(triggered["status_url"], format!("/runs/{id}"));
    let seen = api.follow(&id).await;
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["sequence"], 1);
    assert_eq!(last["outcome"], "committed");
    // Counters only grow, and end where the summary is.
    let reads: Vec<u64> = seen
        .iter()
        .map(|v| v["progress"]["events_read"].as_u64().unwrap())
        .collect();
    assert!(reads.windows(2).all(|w| w[0] <= w[1]), "{reads:?}");
    assert!(
        seen.iter().any(|v| v["state"] == "running"),
        "the run was seen running"
    );
    let counts = &last["counts"];
    assert_eq!(counts["events_read"], 40_000);
    assert_eq!(last["progress"]["events_read"], counts["events_read"]);
    assert_eq!(last["progress"]["main_rows"], counts["main_rows"]);
    assert_eq!(
        last["progress"]["correction_rows"],
        counts["correction_rows"]
    );
    assert_eq!(
        last["progress"]["partitions_finished"],
        last["progress"]["partitions_total"]
    );
    assert_eq!(
        last["progress"]["files_written"].as_u64().unwrap() as usize,
        last["files"].as_u64().unwrap() as usize
    );

    // The CLI's run of the same recording writes the same files, byte for byte.
    let cli_out = ws.path("cli-out");
    let out = ws
        .command()
        .args([
            "run",
            "--topic",
            TOPIC,
            "--source",
            "recorded/article-stock-changed",
            "--output",
        ])
        .arg(&cli_out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_location = materializer_core::sink::OutputLocation::parse(
        &cli_out.display().to_string(),
        &Default::default(),
    )
    .unwrap();
    let http = Ledger::new(ws.local_output(), TOPIC)
        .manifest(1)
        .await
        .unwrap()
        .unwrap();
    let cli = Ledger::new(cli_location, TOPIC)
        .manifest(1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(http.files, cli.files);
    assert_eq!(http.counts, cli.counts);

    // Metrics count the run.
    let metrics = reqwest::get(format!("{}/metrics", api.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "materializer_runs_total{topic=\"article-stock-changed\",state=\"succeeded\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("materializer_events_read_total{topic=\"article-stock-changed\"} 40000"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("materializer_run_duration_seconds_count{topic=\"article-stock-changed\"} 1")
    );
}

#[tokio::test]
async fn a_second_trigger_of_a_running_topic_is_refused() {
    let ws = big_workspace(40_000);
    let api = start(&ws, settings(2)).await;
    let (status, first) = api.post("/topics/article-stock-changed/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, problem) = api.post("/topics/article-stock-changed/runs", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        problem["detail"],
        format!(
            "topic article-stock-changed is already queued or running as {}",
            first["id"].as_str().unwrap()
        )
    );
    let (status, _) = api.post("/topics/nope/runs", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.follow(first["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn a_stopped_run_commits_nothing_and_the_next_run_redoes_it() {
    let ws = big_workspace(60_000);
    let api = start(&ws, settings(2)).await;
    let (_, triggered) = api.post("/topics/article-stock-changed/runs", None).await;
    let id = triggered["id"].as_str().unwrap().to_string();
    // Stop once it is reading.
    loop {
        let (_, view) = api.get(&format!("/runs/{id}")).await;
        if view["progress"]["events_read"].as_u64().unwrap() > 0 || view["state"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, view) = api.post(&format!("/runs/{id}/stop"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{view}");
    let last = api.follow(&id).await.pop().unwrap();
    assert_eq!(last["state"], "stopped", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("run stopped before its commit")
    );
    assert!(
        committed(&ws.local_output(), TOPIC)
            .await
            .sequences
            .is_empty(),
        "nothing committed"
    );
    let (status, problem) = api.post(&format!("/runs/{id}/stop"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("has finished already (stopped)")
    );

    let (_, again) = api.post("/topics/article-stock-changed/runs", None).await;
    let done = api
        .follow(again["id"].as_str().unwrap())
        .await
        .pop()
        .unwrap();
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["sequence"], 1);
    assert_eq!(done["counts"]["events_read"], 60_000);
}

#[tokio::test]
async fn runs_beyond_the_limit_wait_in_a_queue() {
    let ws = big_workspace(30_000);
    let api = start(&ws, settings(1)).await;
    let (_, a) = api.post("/topics/article-stock-changed/runs", None).await;
    let (_, b) = api.post("/topics/order-placed/runs", None).await;
    let (_, view) = api
        .get(&format!("/runs/{}", b["id"].as_str().unwrap()))
        .await;
    assert_eq!(view["state"], "queued", "{view}");
    let (_, health) = api.get("/healthz").await;
    assert_eq!(health["runs_queued"], 1);
    for id in [&a, &b] {
        let last = api.follow(id["id"].as_str().unwrap()).await.pop().unwrap();
        assert_eq!(last["state"], "succeeded");
    }
}

#[tokio::test]
async fn history_survives_a_restart() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (_, t) = api.post("/topics/order-placed/runs", None).await;
    api.follow(t["id"].as_str().unwrap()).await;
    api.stop.cancel();
    api.server.await.unwrap().unwrap();

    let restarted = start(&ws, settings(2)).await;
    let (status, runs) = restarted.get("/topics/order-placed/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["id"], "order-placed@1");
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["counts"]["main_rows"], 6);
    let (status, run) = restarted.get("/runs/order-placed@1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["sequence"], 1);
    let (status, _) = restarted.get("/runs/order-placed@2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn article(n: i64, qty: i64) -> Value {
    json!({"metadata": {"eid": format!("e-{n}"), "occurred_at": "2024-06-03T08:00:00Z"},
           "article_id": 100 + n % 3, "brand": "Nike", "version": n, "available_qty": qty})
}

#[tokio::test]
async fn previews_answer_main_and_correction_rows() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let events = json!([article(1, 10), article(4, 40), article(2, 20), {"article_id": "bad"}]);
    let (status, answer) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let ids = |table: &Value| -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["article_id"].as_i64().unwrap(),
                    r["version"].as_i64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    // 101: versions 1 and 4 -> 4 is MAIN; 102: version 2 -> MAIN.
    assert_eq!(ids(&answer["main"]), vec![(101, 4), (102, 2)]);
    assert_eq!(ids(&answer["correction"]), vec![]);
    assert_eq!(answer["rejected"][0]["index"], 3);
    assert_eq!(answer["counts"]["events_read"], 4);
    assert_eq!(answer["counts"]["superseded"], 1);

    // A draft mapping, and events from the topic's recording when none are given.
    let (status, answer) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"mapping": "CREATE VIEW output AS SELECT article_id, upper(brand) AS b FROM events;", "limit": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["main"]["columns"], json!(["article_id", "b"]));
    assert_eq!(answer["counts"]["events_read"], 5);
    assert!(
        answer["main"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["b"] == "NIKE")
    );
}

#[tokio::test]
async fn previews_refuse_what_analyst_sql_may_not_do() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let cases = [
        (
            "CREATE VIEW output AS SELECT 1 AS x;\nDROP TABLE events;",
            (2, 1),
            "only CREATE VIEW statements are allowed",
        ),
        (
            "COPY events TO '/tmp/stolen.csv';",
            (1, 1),
            "only CREATE VIEW statements are allowed",
        ),
        (
            "CREATE VIEW output AS\nSELECT * FROM '/etc/passwd';",
            (2, 15),
            "is not available",
        ),
        (
            "CREATE VIEW output AS SELECT * FROM read_csv('/etc/passwd');",
            (1, 37),
            "table function read_csv() is not available",
        ),
        (
            "CREATE VIEW output AS\n  SELECT nope FROM events;",
            (2, 10),
            "column 'nope' not found",
        ),
        (
            "CREATE VIEW output AS SELECT article_id,, brand FROM events;",
            (1, 41),
            "SQL syntax",
        ),
    ];
    for (sql, (line, column), message) in cases {
        let (status, problem) = api
            .post(
                "/topics/article-stock-changed/preview",
                Some(json!({"mapping": sql, "events": [article(1, 1)]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sql}: {problem}");
        let error = &problem["errors"][0];
        assert_eq!(
            (
                error["line"].as_u64().unwrap(),
                error["column"].as_u64().unwrap()
            ),
            (line, column),
            "{sql}: {problem}"
        );
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{sql}: {problem}"
        );
    }
    assert!(!std::path::Path::new("/tmp/stolen.csv").exists());
    // A runaway draft is cut off.
    let (status, problem) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({
                "mapping": "CREATE VIEW output AS SELECT count(*) AS n FROM generate_series(1, 100000000) a, generate_series(1, 100000000) b;",
                "events": [article(1, 1)]
            })),
        )
        .await;
    assert!(
        status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status}: {problem}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_previews_are_answered_correctly() {
    let ws = Workspace::new();
    // Previews take turns; this test is about answers, not speed.
    let mut settings = settings(2);
    settings.preview_timeout = Duration::from_secs(300);
    let api = Arc::new(start(&ws, settings).await);
    let mut tasks = Vec::new();
    for n in 0..100i64 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let (status, answer) = api
                .post(
                    "/topics/article-stock-changed/preview",
                    Some(json!({"events": [article(n, n * 7), article(n + 1000, n * 7 + 1)]})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let mut quantities: Vec<i64> = answer["main"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["available_qty"].as_i64().unwrap())
                .collect();
            quantities.sort();
            // Two versions of one article when n and n+1000 share it (always: 1000 % 3 == 1? no) - compute.
            let expected: Vec<i64> = if (n % 3) == ((n + 1000) % 3) {
                vec![n * 7 + 1]
            } else {
                vec![n * 7, n * 7 + 1]
            };
            assert_eq!(quantities, expected, "preview {n}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn reload_keeps_the_last_good_config_of_a_broken_topic() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    std::fs::write(
        ws.sql().join("order-placed/mapping.sql"),
        "CREATE VIEW output AS SELECT nope FROM events;",
    )
    .unwrap();
    let (status, report) = api.post("/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["kept_last_good"], json!(["order-placed"]));
    assert!(
        report["broken"]["order-placed"]
            .as_str()
            .unwrap()
            .contains("column 'nope' not found")
    );
    let (_, topics) = api.get("/topics").await;
    assert_eq!(topics[1]["status"], "stale");
    // The last good mapping still runs.
    let (status, t) = api.post("/topics/order-placed/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let last = api.follow(t["id"].as_str().unwrap()).await.pop().unwrap();
    assert_eq!(last["state"], "succeeded");
    assert_eq!(last["counts"]["main_rows"], 6);
}

#[tokio::test]
async fn shutdown_stops_runs_past_the_deadline_without_committing() {
    let ws = big_workspace(80_000);
    let mut s = settings(2);
    s.shutdown_deadline = Duration::from_millis(200);
    let api = start(&ws, s).await;
    let (_, t) = api.post("/topics/article-stock-changed/runs", None).await;
    let id = t["id"].as_str().unwrap().to_string();
    loop {
        let (_, view) = api.get(&format!("/runs/{id}")).await;
        if view["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    api.stop.cancel();
    api.server.await.unwrap().unwrap();
    let view = api.app.runs.view(&id).unwrap();
    assert_eq!(view.state, "stopped");
    assert!(
        committed(&ws.local_output(), TOPIC)
            .await
            .sequences
            .is_empty()
    );
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", api.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    assert_eq!(
        routes,
        vec![
            "GET /healthz",
            "GET /info",
            "GET /metrics",
            "GET /openapi.json",
            "GET /problems/{kind}",
            "GET /runs/{id}",
            "GET /runs/{id}/events",
            "GET /runs/{id}/files",
            "GET /topics",
            "GET /topics/{topic}",
            "GET /topics/{topic}/runs",
            "GET /topics/{topic}/sample",
            "GET /topics/{topic}/warehouse-sql",
            "POST /reload",
            "POST /runs/{id}/stop",
            "POST /topics/{topic}/preview",
            "POST /topics/{topic}/runs",
            "PUT /topics/{topic}/mapping",
        ]
    );
    // Every documented route is served (none answers 404 or 405 for its method).
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{topic}", TOPIC)
            .replace("{id}", "nope")
            .replace("{kind}", "source-unavailable");
        let response = api
            .client
            .request(method.parse().unwrap(), format!("{}{path}", api.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{route}");
        if !path.contains("nope") {
            assert_ne!(response.status(), StatusCode::NOT_FOUND, "{route}");
        }
    }
    // A real validator checks the document.
    let file = ws.path("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let check = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn problems_name_their_kind_and_the_kinds_are_described() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, problem) = api.get("/topics/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "/problems/not-found");

    // A mapping that does not load is a configuration problem, with its place.
    let (status, problem) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(serde_json::json!({"mapping": "CREATE VIEW output AS SELECT nope FROM events;"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "/problems/config");
    assert_eq!(problem["errors"][0]["line"], 1);

    // A body that is not JSON is a bad request, answered as a problem document.
    let response = api
        .client
        .post(format!("{}/topics/article-stock-changed/preview", api.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"events\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/bad-request");
    assert!(
        problem["detail"].as_str().unwrap().contains("line 1"),
        "{problem}"
    );

    // Each kind is described, with the command line's exit code for run failures.
    let described = reqwest::get(format!("{}/problems/source-unavailable", api.url))
        .await
        .unwrap();
    assert_eq!(described.status(), StatusCode::OK);
    let described: Value = described.json().await.unwrap();
    assert_eq!(described["exit_code"], 3);
    assert_eq!(described["retryable"], true);
    let (status, _) = api.get("/problems/nothing-like-it").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The events of a server-sent event stream, read to its end: (event, data).
async fn server_sent_events(response: reqwest::Response) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .filter_map(|l| l.strip_prefix(name))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            (
                field("event:"),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_run_is_watched_as_server_sent_events_and_its_files_are_listed() {
    let ws = big_workspace(40_000);
    let api = start(&ws, settings(2)).await;
    let (_, triggered) = api.post("/topics/article-stock-changed/runs", None).await;
    let id = triggered["id"].as_str().unwrap().to_string();
    let (status, problem) = api.get(&format!("/runs/{id}/files")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no files before the commit");
    assert_eq!(problem["type"], "/problems/not-found");

    let response = api.events(&format!("/runs/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = server_sent_events(response).await;
    let (last_name, last) = events.last().unwrap();
    assert_eq!(last_name, "end");
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["id"], id.as_str());
    // Progress before the end, counters only growing; one end only.
    let (progress, ends): (Vec<_>, Vec<_>) = events.iter().partition(|(n, _)| n == "progress");
    assert_eq!(ends.len(), 1);
    assert!(!progress.is_empty(), "{events:?}");
    assert!(progress.iter().all(|(_, v)| v["state"] != "succeeded"));
    let reads: Vec<u64> = events
        .iter()
        .map(|(_, v)| v["progress"]["events_read"].as_u64().unwrap())
        .collect();
    assert!(reads.windows(2).all(|w| w[0] <= w[1]), "{reads:?}");
    // A recording's plan names its size in bytes, read to the end; once read,
    // the run knows how many events it holds.
    let recording = std::fs::metadata(ws.path("recorded").join(TOPIC).join("stream.jsonl"))
        .unwrap()
        .len();
    assert_eq!(last["progress"]["recording_bytes"], recording);
    assert_eq!(last["progress"]["recording_bytes_read"], recording);
    let bytes_read: Vec<u64> = events
        .iter()
        .filter_map(|(_, v)| v["progress"]["recording_bytes_read"].as_u64())
        .collect();
    assert!(
        bytes_read.windows(2).all(|w| w[0] <= w[1]),
        "{bytes_read:?}"
    );
    assert_eq!(last["progress"]["events_planned"], 40_000);
    assert_eq!(last["progress"]["events_read"], 40_000);

    // The files are the manifest's.
    let (status, files) = api.get(&format!("/runs/{id}/files")).await;
    assert_eq!(status, StatusCode::OK, "{files}");
    let manifest = Ledger::new(ws.local_output(), TOPIC)
        .manifest(1)
        .await
        .unwrap()
        .unwrap();
    let files = files.as_array().unwrap();
    assert_eq!(files.len(), manifest.files.len());
    for (file, expected) in files.iter().zip(&manifest.files) {
        assert_eq!(file["path"], expected.path.as_str());
        assert_eq!(file["kind"], expected.kind.as_str());
        assert_eq!(file["partition"], expected.partition.as_str());
        assert_eq!(file["rows"], expected.rows);
        assert_eq!(file["bytes"], expected.bytes);
        assert_eq!(file["output_partition"], json!([]));
    }
    let (status, same) = api.get(&format!("/runs/{TOPIC}@1/files")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same.as_array().unwrap(), files);

    // A committed run's stream is its end alone; an unknown run is a problem.
    let response = api.events(&format!("/runs/{TOPIC}@1")).await;
    let events = server_sent_events(response).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "end");
    assert_eq!(events[0].1["sequence"], 1);
    let (status, problem) = api.get("/runs/nope/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "/problems/not-found");

    // The topic list shows the run.
    let (_, topics) = api.get("/topics").await;
    let last_run = &topics[0]["last_run"];
    assert_eq!(last_run["sequence"], 1);
    assert_eq!(last_run["events_read"], 40_000);
    assert_eq!(last_run["main_rows"], manifest.counts.main_rows);
    assert!(last_run["compaction_rate"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_stopped_run_ends_its_event_stream_stopped() {
    let ws = big_workspace(60_000);
    let api = start(&ws, settings(2)).await;
    let (_, triggered) = api.post("/topics/article-stock-changed/runs", None).await;
    let id = triggered["id"].as_str().unwrap().to_string();
    let response = api.events(&format!("/runs/{id}")).await;
    let (status, _) = api.post(&format!("/runs/{id}/stop"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = server_sent_events(response).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(
        (name.as_str(), last["state"].as_str()),
        ("end", Some("stopped"))
    );
    let (status, _) = api.get(&format!("/runs/{id}/files")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_console_is_served_with_its_policy_and_revalidated() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let console = crate::support::repo().join("src/console/web/dist");
    for (path, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/assets/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "app.css", "text/css; charset=utf-8"),
    ] {
        // No token: the page asks for one.
        let response = reqwest::get(format!("{}{path}", api.url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type);
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            headers["content-security-policy"],
            materializer::console::CONTENT_SECURITY_POLICY
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(body, std::fs::read(console.join(file)).unwrap(), "{path}");
        // The same version is not sent again.
        let etag = headers["etag"].to_str().unwrap().to_string();
        let again = api
            .client
            .get(format!("{}{path}", api.url))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
        let other = api
            .client
            .get(format!("{}{path}", api.url))
            .header("if-none-match", "\"another\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }
    // The page loads its script and style from this server only, and has no
    // inline script for the policy to refuse.
    let page = std::fs::read_to_string(console.join("index.html")).unwrap();
    assert!(page.contains(r#"<script defer src="/assets/app.js"></script>"#));
    assert_eq!(page.matches("<script").count(), 1);
    assert!(!page.contains("http://") && !page.contains("https://"));
    let (status, problem) = api.get("/assets/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "/problems/not-found");
}

#[tokio::test]
async fn info_says_what_the_server_allows() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, info) = api.get("/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        info,
        json!({"version": env!("CARGO_PKG_VERSION"), "mapping_edits": false,
               "preview_timeout_seconds": 2.0, "preview_max_events": 1000})
    );
}

#[tokio::test]
async fn a_topic_that_does_not_load_says_where() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    std::fs::write(
        ws.sql().join("order-placed/mapping.sql"),
        "CREATE VIEW output AS\nSELECT order_number, nope FROM events;",
    )
    .unwrap();
    api.post("/reload", None).await;
    let (_, topics) = api.get("/topics").await;
    let stale = &topics[1];
    assert_eq!(stale["status"], "stale");
    let file = ws.sql().join("order-placed/mapping.sql");
    assert_eq!(
        stale["error_at"],
        json!({"file": file.display().to_string(), "line": 2, "column": 22})
    );
    assert!(
        stale["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:2:22: ", file.display())),
        "{stale}"
    );
    // Its last good configuration still says what it is.
    assert_eq!(stale["partitioning_key"], json!(["order_number"]));
    // A topic.toml that does not parse points into topic.toml.
    std::fs::write(
        ws.sql().join("order-placed/topic.toml"),
        "event_type = \"shop.order-placed\"\npartitioning_key = [\n",
    )
    .unwrap();
    api.post("/reload", None).await;
    let (_, topics) = api.get("/topics").await;
    let at = &topics[1]["error_at"];
    assert!(
        at["file"]
            .as_str()
            .unwrap()
            .ends_with("order-placed/topic.toml"),
        "{at}"
    );
    assert!(at["line"].as_u64().unwrap() >= 2, "{at}");
}

#[tokio::test]
async fn events_columns_have_sql_types_and_their_nested_fields() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, topic) = api.get("/topics/order-placed").await;
    assert_eq!(status, StatusCode::OK);
    let column = |name: &str| {
        topic["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}: {topic}"))
            .clone()
    };
    let metadata = column("metadata");
    assert!(metadata["type"].as_str().unwrap().starts_with("STRUCT<"));
    let occurred_at = metadata["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "occurred_at")
        .unwrap();
    assert_eq!(occurred_at["type"], "TIMESTAMP WITH TIME ZONE");
    let items = column("items");
    assert!(
        items["type"].as_str().unwrap().starts_with("LIST<STRUCT<"),
        "{items}"
    );
    let item_fields: Vec<&str> = items["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(item_fields.contains(&"sku"), "{items}");
    assert_eq!(column("_offset")["type"], "VARCHAR");
    assert!(column("_offset").get("children").is_none());
}

#[tokio::test]
async fn sample_events_are_the_first_of_the_source() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, sample) = api
        .get("/topics/article-stock-changed/sample?limit=3")
        .await;
    assert_eq!(status, StatusCode::OK, "{sample}");
    let events = sample["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        sample["source"]
            .as_str()
            .unwrap()
            .contains("recorded/article-stock-changed"),
        "{sample}"
    );
    // The same events as a preview without events reads.
    let (_, preview) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"limit": 3})),
        )
        .await;
    let (_, given) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(preview["main"], given["main"]);
    assert_eq!(preview["counts"], given["counts"]);
    let (_, default) = api.get("/topics/article-stock-changed/sample").await;
    assert!(!default["events"].as_array().unwrap().is_empty());
    for limit in ["0", "1001", "-1", "x"] {
        let (status, problem) = api
            .get(&format!(
                "/topics/article-stock-changed/sample?limit={limit}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}: {problem}");
        assert_eq!(problem["type"], "/problems/bad-request");
    }
    let (status, _) = api.get("/topics/nope/sample").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn warehouse_sql_is_what_the_command_line_writes() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let topic = ws.catalog().await.topic(TOPIC).unwrap();
    for (name, dialect) in [
        ("postgres", materializer_core::warehouse::Dialect::Postgres),
        ("redshift", materializer_core::warehouse::Dialect::Redshift),
        ("oracle", materializer_core::warehouse::Dialect::Oracle),
    ] {
        let (status, answer) = api
            .get(&format!("/topics/{TOPIC}/warehouse-sql?dialect={name}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["dialect"], name);
        assert_eq!(
            answer["sql"],
            materializer_core::warehouse::setup_sql(&topic, dialect).unwrap()
        );
    }
    let (_, default) = api.get(&format!("/topics/{TOPIC}/warehouse-sql")).await;
    assert_eq!(default["dialect"], "postgres");
    let (status, problem) = api
        .get(&format!("/topics/{TOPIC}/warehouse-sql?dialect=mysql"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "/problems/bad-request");
}

#[tokio::test]
async fn mappings_are_saved_only_when_allowed_checked_first_and_the_old_one_kept() {
    let ws = Workspace::new();
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    let original = std::fs::read_to_string(&file).unwrap();
    let draft = "CREATE VIEW output AS\nSELECT article_id, upper(brand) AS brand FROM events;\n";

    // Not allowed: refused, nothing written.
    let api = start(&ws, settings(2)).await;
    let (status, problem) = api.put_mapping(json!({"mapping": draft})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["type"], "/problems/forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--allow-mapping-edits")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    api.stop.cancel();
    api.server.await.unwrap().unwrap();

    let mut allowed = settings(2);
    allowed.allow_mapping_edits = true;
    let api = start(&ws, allowed).await;
    let (_, info) = api.get("/info").await;
    assert_eq!(info["mapping_edits"], true);

    // Not valid: the errors with their place, nothing written.
    let (status, problem) = api
        .put_mapping(
            json!({"mapping": "CREATE VIEW output AS\nSELECT article_id, nope FROM events;"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/config");
    assert_eq!(problem["errors"][0]["line"], 2);
    assert_eq!(problem["errors"][0]["column"], 20);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    // Nor is a body that is not the documented one.
    for body in [json!({"sql": draft}), json!({"mapping": draft, "extra": 1})] {
        let (status, problem) = api.put_mapping(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["type"], "/problems/bad-request");
    }
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            "/topics/nope/mapping",
            Some(json!({"mapping": draft})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Valid: written, the old text kept, the topic served with it at once.
    let (status, topic) = api.put_mapping(json!({"mapping": draft})).await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    assert_eq!(topic["mapping_sql"], draft);
    assert_eq!(
        topic["output_columns"],
        json!([{"name": "article_id", "type": "BIGINT", "nullable": false},
               {"name": "brand", "type": "VARCHAR", "nullable": true}])
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), draft);
    assert_eq!(
        std::fs::read_to_string(ws.sql().join(TOPIC).join("mapping.sql.previous")).unwrap(),
        original
    );
    let mut names: Vec<String> = std::fs::read_dir(ws.sql().join(TOPIC))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "mapping.sql",
            "mapping.sql.previous",
            "schema.json",
            "topic.toml"
        ]
    );
    let (_, preview) = api
        .post(
            &format!("/topics/{TOPIC}/preview"),
            Some(json!({"events": [article(1, 1)]})),
        )
        .await;
    assert_eq!(
        preview["main"]["rows"],
        json!([{"article_id": 101, "brand": "NIKE"}])
    );
    // A reload reads the same file.
    let (_, report) = api.post("/reload", None).await;
    assert_eq!(report["broken"], json!({}));
    let (_, reloaded) = api.get(&format!("/topics/{TOPIC}")).await;
    assert_eq!(reloaded["mapping_sql"], draft);
}
