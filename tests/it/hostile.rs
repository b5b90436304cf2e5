//! Input that must not end the process, bloat it or leave stray files: events
//! nested thousands deep, numbers that do not fit, recordings that repeat
//! themselves, mappings too big or too deep, previews that ask for too much,
//! and what killed runs leave behind.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Serve, Workspace};

const TOPIC: &str = "article-stock-changed";

fn article(n: u64, version: &str) -> String {
    format!(
        r#"{{"metadata":{{"eid":"5a1e0000-0000-4000-8000-{n:012x}","occurred_at":"2024-06-03T08:00:00.000Z"}},"article_id":{},"brand":"b","model":"m","version":{version},"available_qty":1}}"#,
        100 + n
    )
}

fn batch(last_offset: u64, events: &[String]) -> String {
    format!(
        r#"{{"cursor":{{"partition":"0","offset":"001-0001-{last_offset:018}"}},"events":[{}]}}"#,
        events.join(",")
    )
}

/// The rejected events of run 1: (offset, reason).
fn rejected(ws: &Workspace) -> Vec<(String, String)> {
    let text = ws.read_out(&format!(
        "{TOPIC}/rejected/run=0000000001/rejected-0000000001-p0.ndjson"
    ));
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["offset"].as_str().unwrap().to_string(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn materializer(ws: &Workspace, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_materializer"))
        .current_dir(ws.dir.path())
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn events_nested_past_the_limit_are_rejected_and_the_run_goes_on() {
    let ws = Workspace::new();
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_field = article(2, "1").replace("\"brand\"", &format!("\"extra\":{deep},\"brand\""));
    ws.record(
        TOPIC,
        &[batch(
            3,
            &[article(1, "1"), deep.clone(), deep_field, article(4, "1")],
        )],
    );
    let summary = ws.run(TOPIC).await.unwrap();
    assert_eq!(summary.counts.events_read, 4);
    assert_eq!(summary.counts.events_rejected, 2);
    assert_eq!(summary.counts.main_rows, 2);
    let reason = "the event nests objects and arrays deeper than 128 levels";
    assert_eq!(
        rejected(&ws),
        vec![
            (
                "001-0001-000000000000000001".to_string(),
                reason.to_string()
            ),
            (
                "001-0001-000000000000000002".to_string(),
                reason.to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn numbers_that_do_not_fit_an_integer_column_are_rejected_not_rounded() {
    let ws = Workspace::new();
    let versions = [
        "1.5",
        "9223372036854775808",
        "-9223372036854775809",
        "1e1",
        "2.0",
    ];
    let events: Vec<String> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| article(i as u64, v))
        .collect();
    ws.record(TOPIC, &[batch(4, &events)]);
    let summary = ws.run(TOPIC).await.unwrap();
    assert_eq!(summary.counts.events_rejected, 3);
    let reasons: Vec<String> = rejected(&ws).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        vec![
            "field 'version': 1.5 is not an integer",
            "field 'version': 9223372036854775808 is out of the 64-bit integer range",
            "field 'version': -9.223372036854776e+18 is out of the 64-bit integer range",
        ]
    );
    // Integral values written with an exponent or a fraction of zero are integers.
    let main = ws.read_out(&format!(
        "{TOPIC}/main/run=0000000001/main-0000000001-p0.csv"
    ));
    let versions: Vec<&str> = main
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap())
        .collect();
    assert_eq!(versions, vec!["10", "2"]);
}

#[tokio::test]
async fn a_recorded_batch_that_repeats_events_already_read_fails_naming_its_line() {
    let ws = Workspace::new();
    ws.record(
        TOPIC,
        &[
            batch(1, &[article(0, "1"), article(1, "1")]),
            batch(3, &[article(1, "2"), article(2, "1"), article(3, "1")]),
        ],
    );
    let err = ws.run(TOPIC).await.unwrap_err();
    let message = materializer_core::report(&err);
    assert!(
        message.contains("stream.jsonl:2:")
            && message.contains(
                "overlaps the previous batch, which ended at 001-0001-000000000000000001"
            ),
        "{message}"
    );
    assert!(
        ws.out_files().iter().all(|f| !f.contains("_manifests/")),
        "nothing is committed"
    );
}

#[tokio::test]
async fn a_half_written_upload_is_removed_when_its_run_commits() {
    let ws = Workspace::new();
    // What a process killed during an upload leaves beside the file.
    let folder = ws.out().join(format!("{TOPIC}/main/run=0000000001"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("main-0000000001-p0.csv#3"), "half a file").unwrap();
    ws.run(TOPIC).await.unwrap();
    let in_folder: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut in_folder = in_folder;
    in_folder.sort();
    assert_eq!(
        in_folder,
        vec![
            "_SUCCESS".to_string(),
            "main-0000000001-p0.csv".to_string(),
            "main-0000000001-p1.csv".to_string(),
        ]
    );
}

/// The id of a process that has ended.
fn ended_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn spill_folders_of_processes_that_are_gone_are_removed() {
    let ws = Workspace::new();
    let spill = ws.path("spill");
    let abandoned = spill.join(format!("materializer-spill-{}-0", ended_pid()));
    std::fs::create_dir_all(&abandoned).unwrap();
    std::fs::write(abandoned.join("spill.arrow"), vec![0u8; 4096]).unwrap();
    let unrelated = spill.join("something-else");
    std::fs::create_dir_all(&unrelated).unwrap();
    let out = materializer(
        &ws,
        &[
            "run",
            "--topic",
            TOPIC,
            "--source",
            "recorded/article-stock-changed",
            "--spill-dir",
            spill.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = std::fs::read_dir(&spill)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The abandoned folder is gone, and so is the run's own when it ended.
    assert_eq!(left, vec!["something-else".to_string()]);
}

#[test]
fn mappings_too_large_or_too_deep_are_refused_with_their_place() {
    let ws = Workspace::new();
    let mapping = ws.sql().join(TOPIC).join("mapping.sql");
    let write = |text: String| std::fs::write(&mapping, text).unwrap();

    // 20,000 terms: once enough to end the process while explaining it.
    write(format!(
        "CREATE VIEW output AS SELECT article_id, {} AS x FROM events;\n",
        vec!["1"; 20_000].join("+")
    ));
    let out = materializer(&ws, &["explain", TOPIC]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mapping.sql:1:")
            && stderr.contains("expressions and subqueries nest deeper than 100 levels"),
        "{stderr}"
    );

    write(
        std::iter::once("CREATE VIEW v0 AS SELECT article_id FROM events;\n".to_string())
            .chain(
                (1..3000)
                    .map(|i| format!("CREATE VIEW v{i} AS SELECT article_id FROM v{};\n", i - 1)),
            )
            .collect(),
    );
    let out = materializer(&ws, &["explain", TOPIC]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mapping.sql:101:1: a mapping may define at most 100 views"),
        "{stderr}"
    );

    write(format!(
        "CREATE VIEW output AS SELECT article_id, '{}' AS x FROM events;\n",
        "y".repeat(300 << 10)
    ));
    let out = materializer(&ws, &["explain", TOPIC]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a mapping may hold at most 256 KiB of SQL"),
        "{stderr}"
    );
}

/// `materializer serve` as its own process, with a token, reading recordings.
struct Server(Serve);

const TOKEN: &str = "hostile-test-token";

impl Server {
    async fn start(ws: &Workspace) -> Server {
        Server(Serve::start(ws, &[TOKEN], &["--recordings", "recorded"]).await)
    }

    /// The most memory the server held so far (MiB).
    fn peak_rss_mib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024
    }

    async fn preview(&self, mapping: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/topics/{TOPIC}/preview", self.0.url))
            .bearer_auth(TOKEN)
            .json(&json!({"mapping": mapping, "events": [serde_json::from_str::<Value>(&article(1, "1")).unwrap()]}))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn previews_that_ask_for_too_much_are_cut_off_and_the_server_stays_small() {
    let ws = Workspace::new();
    let server = Server::start(&ws).await;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("CREATE VIEW output AS SELECT {} AS x FROM events;", vec!["1"; 2000].join("+")),
            422,
            "nest deeper than 100 levels",
        ),
        (
            std::iter::once("CREATE VIEW v0 AS SELECT article_id FROM events;\n".to_string())
                .chain((1..3000).map(|i| format!("CREATE VIEW v{i} AS SELECT article_id FROM v{};\n", i - 1)))
                .collect(),
            422,
            "at most 100 views",
        ),
        (
            "CREATE VIEW output AS SELECT value FROM generate_series(1, 1000000000000);".into(),
            200,
            "",
        ),
        (
            "CREATE VIEW output AS SELECT a.value AS a, b.value AS b FROM generate_series(1, 1000000) a CROSS JOIN generate_series(1, 1000000) b;".into(),
            200,
            "",
        ),
        (
            "CREATE VIEW output AS SELECT value FROM generate_series(1, 20000000);".into(),
            200,
            "",
        ),
        (
            "CREATE VIEW output AS SELECT repeat('x', 100000000) AS x FROM generate_series(1, 10);".into(),
            422,
            "repeat() was asked for 100000000 bytes",
        ),
        (
            "CREATE VIEW output AS SELECT cardinality(range(1, 1000000000000)) AS n FROM events;".into(),
            422,
            "range() was asked for",
        ),
    ];
    for (mapping, status, detail) in cases {
        let (got, body) = server.preview(&mapping).await;
        assert_eq!(got, status, "{}: {body}", &mapping[..mapping.len().min(80)]);
        if status == 200 {
            assert_eq!(body["main"]["rows"].as_array().unwrap().len(), 1000);
            assert_eq!(body["main"]["truncated"], true);
        } else {
            assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
        }
    }
    let peak = server.peak_rss_mib();
    assert!(peak < 1024, "the server held {peak} MiB");
    // And it still answers.
    let (status, _) = server
        .preview("CREATE VIEW output AS SELECT article_id FROM events;")
        .await;
    assert_eq!(status, 200);
}

/// Schemathesis, from PyPI, generates requests from the OpenAPI document and
/// checks every answer against it.
#[tokio::test]
async fn the_api_answers_as_its_openapi_document_says() {
    let ws = Workspace::new();
    let server = Server::start(&ws).await;
    let config = ws.path("schemathesis.toml");
    // A schema-valid mapping may still be invalid SQL (422), and a preview
    // may time out (408): valid requests, answered as documented.
    std::fs::write(
        &config,
        "[checks.positive_data_acceptance]\nexpected-statuses = [\"2XX\", 401, 403, 404, 408, 409, 422]\n",
    )
    .unwrap();
    let out = Command::new("schemathesis")
        .current_dir(ws.dir.path())
        .args(["--config-file"])
        .arg(&config)
        .args([
            "run",
            &format!("{}/openapi.json", server.0.url),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ])
        .output()
        .expect("schemathesis (pip install schemathesis; scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A preview answers at most 4 MiB of data per table: of 100 rows of
/// 100 kB, as many as fit come back, marked truncated.
#[tokio::test]
async fn a_preview_answers_at_most_4_mib_per_table() {
    let ws = Workspace::new();
    let server = Server::start(&ws).await;
    let (status, body) = server
        .preview(
            "CREATE VIEW output AS SELECT value, repeat('x', 100000) AS x FROM generate_series(1, 100);",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["main"]["rows"].as_array().unwrap();
    let bytes: usize = rows.iter().map(|r| r["x"].as_str().unwrap().len()).sum();
    assert!(!rows.is_empty() && rows.len() < 100, "{} rows", rows.len());
    // As many rows as fit, short of the limit by less than two rows.
    assert!(
        bytes <= 4 << 20 && bytes > (4 << 20) - 200_000,
        "{bytes} bytes"
    );
    assert_eq!(body["main"]["truncated"], true);
}
