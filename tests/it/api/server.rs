//! The server as a whole: which routes need the token, the OpenAPI
//! document, problem answers and their kinds, what `/info` says, and the
//! console it serves.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TOKEN, TOPIC, settings, start};
use crate::support::{Workspace, committed};

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
            "GET /runs/{id}/files/content",
            "GET /runs/{id}/files/preview",
            "GET /runs/{id}/manifest",
            "GET /topics",
            "GET /topics/{topic}",
            "GET /topics/{topic}/mapping",
            "GET /topics/{topic}/runs",
            "GET /topics/{topic}/sample",
            "GET /topics/{topic}/source-events",
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
               "preview_timeout_seconds": 120.0, "preview_max_events": 1000})
    );
}
