//! Previews: MAIN and CORRECTION rows of the events given, what analyst SQL
//! may not do, and a hundred previews at once.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{article, settings, start};
use crate::support::Workspace;

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
    // A deadline of 2 s, which the runaway draft below meets.
    let mut settings = settings(2);
    settings.preview_timeout = Duration::from_secs(2);
    let api = start(&ws, settings).await;
    let stolen = ws.path("stolen.csv");
    let copy_out = format!("COPY events TO '{}';", stolen.display());
    let cases: [(&str, (u64, u64), &str); 6] = [
        (
            "CREATE VIEW output AS SELECT 1 AS x;\nDROP TABLE events;",
            (2, 1),
            "only CREATE VIEW statements are allowed",
        ),
        (&copy_out, (1, 1), "only CREATE VIEW statements are allowed"),
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
    assert!(!stolen.exists());
    // A runaway draft is cut off at the deadline (a query that keeps to
    // little memory, so that the deadline, not the memory limit, stops it).
    let (status, problem) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({
                "mapping": "CREATE VIEW output AS SELECT sum(value) AS n FROM generate_series(1, 100000000000000);",
                "events": [article(1, 1)]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{problem}");
    assert_eq!(
        problem["detail"], "the preview took longer than 2 s",
        "{problem}"
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
async fn events_given_one_per_line_are_read_as_the_cli_reads_a_file_with_its_figures() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let samples = crate::support::repo().join("fixtures/samples/article-stock-changed.jsonl");
    let text = std::fs::read_to_string(&samples).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (status, answer) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"raw_events": lines})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let c = &answer["counts"];
    let n = |field: &str| c[field].as_u64().unwrap();
    assert_eq!(n("events_read"), lines.len() as u64);
    assert_eq!(
        n("events_read"),
        n("main_input") + n("superseded") + n("correction_events") + n("events_rejected"),
        "{c}"
    );
    // The rate: superseded of the decoded events, as `materializer preview` says it.
    let rate = n("superseded") as f64 / (n("events_read") - n("events_rejected")) as f64;
    assert!((answer["compaction_rate"].as_f64().unwrap() - rate).abs() < 1e-9);
    let cli = ws
        .command()
        .args(["preview", "article-stock-changed", "--events"])
        .arg(&samples)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(
        said.contains(&format!("(compaction rate {:.1}%)", rate * 100.0)),
        "{said}"
    );

    // A line that is not JSON is rejected with the reason a run gives.
    let (status, answer) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"raw_events": [r#"{"article_id": 1, oops}"#]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let reason = answer["rejected"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("not valid JSON") && reason.contains("line 1 column"),
        "{reason}"
    );

    // Events given both ways cannot be used.
    let (status, problem) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"events": [article(1, 1)], "raw_events": ["{}"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}

/// The previews' gauges in `/metrics`: (running, waiting).
async fn preview_load(url: &str) -> (u64, u64) {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    (
        gauge("materializer_previews_running"),
        gauge("materializer_previews_waiting"),
    )
}

/// Four previews run at once and a fifth waits for a turn, then answers: the
/// previews are held once they have their turn (the `preview-turn` point) until
/// the test opens the gate, and the server's own gauges say which run and which
/// wait.
#[tokio::test]
async fn four_previews_run_at_once_and_a_fifth_waits_its_turn() {
    let ws = Workspace::new();
    let gate = ws.path("gate");
    let gate_text = gate.to_str().unwrap().to_string();
    let server = crate::support::Serve::start_with(
        &ws,
        &["t"],
        &["--preview-timeout", "600"],
        &[
            ("MATERIALIZER_FAILPOINT", "preview-turn"),
            ("MATERIALIZER_FAILPOINT_GATE", &gate_text),
        ],
    )
    .await;
    assert_eq!(preview_load(&server.url).await, (0, 0));
    let client = reqwest::Client::new();
    let previews: Vec<_> = (1..=5)
        .map(|n| {
            let request = client
                .post(format!(
                    "{}/topics/article-stock-changed/preview",
                    server.url
                ))
                .bearer_auth("t")
                .json(&json!({"events": [article(n, 10 * n)]}));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // Every preview counted, each as running or as waiting: the four that
    // got a turn stay held, so the fifth can only wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let load = loop {
        let (running, waiting) = preview_load(&server.url).await;
        if running + waiting == 5 {
            break (running, waiting);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "previews counted: {running} running, {waiting} waiting; {}",
            server.logged()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(load, (4, 1), "(running, waiting)");
    assert!(previews.iter().all(|p| !p.is_finished()));

    std::fs::write(&gate, "").unwrap();
    for (n, preview) in (1..=5).zip(previews) {
        let (status, answer) = preview.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["main"]["rows"][0]["version"], n, "{answer}");
        assert_eq!(
            answer["main"]["rows"][0]["available_qty"],
            10 * n,
            "{answer}"
        );
    }
    assert_eq!(preview_load(&server.url).await, (0, 0));
}
