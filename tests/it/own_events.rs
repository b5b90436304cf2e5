//! An analyst's own events: files of plain events read as they are,
//! `materializer record`, a topic without a source told what gives one, and
//! what the commands say about them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use crate::support::{Serve, Workspace, copy_dir, repo};

fn materializer(ws: &Workspace, args: &[&str]) -> Output {
    ws.materializer(args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn succeed(ws: &Workspace, args: &[&str]) -> String {
    let out = materializer(ws, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The first `n` sample events of the article topic, one per line.
fn sample_events(n: usize) -> String {
    let text = std::fs::read_to_string(repo().join("fixtures/samples/article-stock-changed.jsonl"))
        .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// An article event with `metadata`, as the article topic takes it.
fn article(id: u64, version: u64) -> String {
    format!(
        r#"{{"metadata":{{"eid":"5a1e0000-0000-4000-8000-{id:06}{version:06}","occurred_at":"2024-06-03T08:00:00Z"}},"article_id":{id},"brand":"b","model":"m","version":{version},"available_qty":1}}"#
    )
}

/// `events_read` of a run's JSON summary.
fn events_read(summary: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(summary).unwrap();
    value["counts"]["events_read"].as_u64().unwrap()
}

#[test]
fn record_turns_events_into_a_recording_that_runs_read_and_that_grows() {
    let ws = Workspace::new();
    std::fs::write(ws.path("events.jsonl"), sample_events(3)).unwrap();
    let recorded = succeed(&ws, &["record", "events.jsonl", "--into", "recorded/mine"]);
    assert_eq!(
        recorded,
        "recorded/mine/stream.jsonl: 3 events recorded in partition 0 (1 batch), offsets \
         001-0001-000000000000000000 to 001-0001-000000000000000002\n"
    );
    let run = [
        "run",
        "--topic",
        "article-stock-changed",
        "--source",
        "recorded/mine",
        "--json",
    ];
    assert_eq!(events_read(&succeed(&ws, &run)), 3);

    // More events go on after the newest offset; the next run reads them only.
    std::fs::write(ws.path("more.jsonl"), article(7, 1) + "\n" + &article(7, 2)).unwrap();
    let more = succeed(
        &ws,
        &[
            "record",
            "more.jsonl",
            "--into",
            "recorded/mine",
            "--batch-events",
            "1",
        ],
    );
    assert_eq!(
        more,
        "recorded/mine/stream.jsonl: 2 events recorded in partition 0 (2 batches), offsets \
         001-0001-000000000000000003 to 001-0001-000000000000000004\n"
    );
    assert_eq!(events_read(&succeed(&ws, &run)), 2);

    // A line that is not JSON: nothing is written, the line is named.
    let before = std::fs::read(ws.path("recorded/mine/stream.jsonl")).unwrap();
    std::fs::write(
        ws.path("bad.jsonl"),
        article(8, 1) + "\n{\"article_id\": 8,\n",
    )
    .unwrap();
    let bad = materializer(&ws, &["record", "bad.jsonl", "--into", "recorded/mine"]);
    assert_eq!(bad.status.code(), Some(6), "{}", stderr(&bad));
    assert!(
        stderr(&bad).starts_with("error: bad.jsonl:2: not a JSON event: "),
        "{}",
        stderr(&bad)
    );
    assert_eq!(
        std::fs::read(ws.path("recorded/mine/stream.jsonl")).unwrap(),
        before
    );
    // A recording is read as it is.
    let again = materializer(
        &ws,
        &[
            "record",
            "recorded/mine/stream.jsonl",
            "--into",
            "copy.jsonl",
        ],
    );
    assert!(!again.status.success());
    assert_eq!(
        stderr(&again),
        "error: recorded/mine/stream.jsonl:1: already a recording (Nakadi batches with \
         cursors): pass it to --source as it is\n"
    );
}

#[test]
fn a_run_reads_a_file_of_plain_events_and_appended_lines_next_time() {
    let ws = Workspace::new();
    std::fs::write(ws.path("own.jsonl"), sample_events(3)).unwrap();
    let run = [
        "run",
        "--topic",
        "article-stock-changed",
        "--source",
        "own.jsonl",
        "--json",
    ];
    assert_eq!(events_read(&succeed(&ws, &run)), 3);
    ws.append("own.jsonl", &(article(9, 1) + "\n"));
    assert_eq!(events_read(&succeed(&ws, &run)), 1);
    ws.append("own.jsonl", &(article(9, 2) + "\n"));
    let text = succeed(&ws, &run[..5]);
    assert!(
        text.contains("\n  cursors          own.jsonl 3 -> 4\n"),
        "{text}"
    );
    let nothing = materializer(&ws, &run[..5]);
    assert_eq!(
        stdout(&nothing),
        "article-stock-changed: nothing new since run 3; nothing written.\n"
    );
}

#[test]
fn a_copied_topic_without_a_source_says_what_gives_one_and_takes_a_setting() {
    let ws = Workspace::new();
    copy_dir(
        &ws.path("sql/article-stock-changed"),
        &ws.path("sql/my-stock"),
    );
    let run = materializer(&ws, &["run", "--topic", "my-stock"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert_eq!(
        stderr(&run),
        "error: topic my-stock has no source: no Nakadi URL is set, and there is no recording \
         at fixtures/recorded/my-stock (where a topic without a source of its own is read \
         from). Give one: --source PATH (a file or folder of events, one JSON event per line, \
         or of recorded Nakadi batches), `[source] recording = \"PATH\"` in \
         sql/my-stock/topic.toml, or --nakadi-url URL (NAKADI_URL) for a live Nakadi\n"
    );
    let preview = materializer(&ws, &["preview", "my-stock"]);
    assert!(
        stderr(&preview).contains("Give one: --events FILE, --source PATH (a file or folder"),
        "{}",
        stderr(&preview)
    );

    // The topic's own events, named in topic.toml (relative to its folder).
    std::fs::write(ws.path("own.jsonl"), sample_events(3)).unwrap();
    ws.append(
        "sql/my-stock/topic.toml",
        "\n[source]\nrecording = \"../../own.jsonl\"\n",
    );
    let committed = succeed(&ws, &["run", "--topic", "my-stock"]);
    assert!(
        committed.starts_with("my-stock: run 1 committed in "),
        "{committed}"
    );
}

#[tokio::test]
async fn serve_runs_a_copied_topic_from_a_source_named_in_the_request() {
    let ws = Workspace::new();
    copy_dir(
        &ws.path("sql/article-stock-changed"),
        &ws.path("sql/my-stock"),
    );
    std::fs::write(ws.path("recorded/own.jsonl"), sample_events(3)).unwrap();
    let serve = Serve::start(&ws, &["t"], &["--recordings", "recorded"]).await;
    let client = reqwest::Client::new();
    let trigger = |body: Option<serde_json::Value>| {
        let mut request = client
            .post(format!("{}/topics/my-stock/runs", serve.url))
            .bearer_auth("t");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let refused = trigger(None).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let problem: serde_json::Value = refused.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("topic my-stock has no source: ")
            && detail.contains(
                "Give one: \"source\" in the request, a file or folder under the server's \
                 recordings folder recorded"
            )
            && detail.contains("`[source] recording = \"PATH\"` in sql/my-stock/topic.toml"),
        "{detail}"
    );
    let outside = trigger(Some(serde_json::json!({"source": "../own.jsonl"})))
        .await
        .unwrap();
    assert_eq!(outside.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let problem: serde_json::Value = outside.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "source \"../own.jsonl\" is not a path inside the server's recordings folder recorded: \
         name a file or folder relative to it, without `..` (serve --recordings sets the folder)"
    );
    // A preview and the sample events read the same file.
    let answer = |request: reqwest::RequestBuilder| async move {
        let response = request.bearer_auth("t").send().await.unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    };
    let preview = answer(
        client
            .post(format!("{}/topics/my-stock/preview", serve.url))
            .json(&serde_json::json!({"source": "own.jsonl", "limit": 2})),
    )
    .await;
    assert_eq!(preview["counts"]["events_read"], 2, "{preview}");
    let sample = answer(client.get(format!(
        "{}/topics/my-stock/sample?source=own.jsonl",
        serve.url
    )))
    .await;
    assert_eq!(sample["events"].as_array().unwrap().len(), 3, "{sample}");
    let accepted = trigger(Some(serde_json::json!({"source": "own.jsonl"})))
        .await
        .unwrap();
    assert_eq!(accepted.status(), reqwest::StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ws.path("out/my-stock/_manifests/0000000001.json").is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "no run committed: {}",
            serve.logged()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn serve_says_where_the_console_is() {
    let ws = Workspace::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_materializer"))
        .current_dir(ws.dir.path())
        .env("RUST_LOG", "warn")
        .env_remove("MATERIALIZER_API_TOKENS")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--api-token", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner);
    // The port it took (port 0 is the system's choice), and it listens there.
    let port: String = banner
        .trim_start_matches("materializer on http://127.0.0.1:")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let listens = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    assert!(listens, "nothing listens where the banner says: {banner}");
    assert_ne!(port, "0", "{banner}");
    assert_eq!(
        banner,
        format!(
            "materializer on http://127.0.0.1:{port}: the console at http://127.0.0.1:{port}/, \
             the API's OpenAPI description at /openapi.json\n"
        )
    );
}

#[test]
fn a_planned_run_of_a_recording_logs_its_partitions_in_plain_text() {
    let ws = Workspace::new();
    let out = ws
        .command()
        .env("RUST_LOG", "info")
        .args(["run", "--topic", "order-placed", "--source"])
        .arg("recorded/order-placed")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    let planned = log
        .lines()
        .find(|l| l.contains("run planned"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(planned.contains(" partitions=2 "), "{planned}");
    assert!(
        !log.contains('\u{1b}'),
        "colours in a log that is not a terminal: {log}"
    );
}

#[test]
fn a_partition_with_only_rejected_events_gets_a_keys_file() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path("own")).unwrap();
    std::fs::write(ws.path("own/a.jsonl"), article(1, 1) + "\n").unwrap();
    std::fs::write(
        ws.path("own/b.jsonl"),
        "{\"article_id\": \"not a number\"}\n",
    )
    .unwrap();
    let summary = succeed(
        &ws,
        &[
            "run",
            "--topic",
            "article-stock-changed",
            "--source",
            "own",
            "--json",
        ],
    );
    let value: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(value["counts"]["events_rejected"], 1, "{value}");
    let keys: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.starts_with("article-stock-changed/keys/run=0000000001/keys-"))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let texts: Vec<String> = keys.iter().map(|f| ws.read_out(f)).collect();
    assert!(
        texts.contains(&"article_id,version,deleted,kind\n".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"article_id,version,deleted,kind\n1,1,false,main\n".to_string()),
        "{texts:?}"
    );
}

#[test]
fn preview_numbers_rejected_events_as_the_api_does() {
    let ws = Workspace::new();
    copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    let args = [
        "preview",
        "article-stock-changed",
        "--events",
        "fixtures/samples/article-stock-changed.jsonl",
    ];
    let text = succeed(&ws, &args);
    let json: serde_json::Value =
        serde_json::from_str(&succeed(&ws, &[&args[..], &["--json"]].concat())).unwrap();
    let index = json["rejected"][0]["index"].as_u64().unwrap();
    assert_eq!(index, 9, "{json}");
    assert!(
        text.contains(&format!("\nREJECTED: 1 event\n  offset {index}: ")),
        "{text}"
    );
}

/// Column names are case-sensitive, exactly as in the JSON: a field
/// `articleId` is named `"articleId"` or `articleId` (both give its values),
/// `stockQty` keeps its case as an output column and `articleId` as a key,
/// and `articleid` is no column of the events.
#[test]
fn camel_case_fields_are_named_as_in_the_json_quoted_or_not() {
    let ws = Workspace::new();
    let dir = ws.sql().join("camel");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        "event_type = \"article.camel\"\ncategory = \"business\"\n\
         partitioning_key = \"articleId\"\nordering_key = \"version\"\n\n\
         [output]\nformat = \"csv\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("schema.json"),
        r#"{"type": "object", "required": ["articleId", "version"], "properties": {
            "articleId": {"type": "integer"}, "version": {"type": "integer"},
            "stockQty": {"type": "integer"}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("mapping.sql"),
        "CREATE VIEW output AS\n\
         SELECT \"articleId\" AS quoted_id, articleId AS bare_id, version, stockQty\n\
         FROM events;\n",
    )
    .unwrap();
    // (articleId, version, stockQty), in the order they arrive.
    let events = [(7, 1, 5), (8, 1, 3), (7, 2, 4), (9, 3, 0)];
    let lines: String = events
        .iter()
        .enumerate()
        .map(|(i, (id, version, qty))| {
            format!(
                r#"{{"metadata":{{"eid":"7c2f6a1e-0000-4000-8000-{i:012}","occurred_at":"2024-07-01T09:00:00Z"}},"articleId":{id},"version":{version},"stockQty":{qty}}}"#
            ) + "\n"
        })
        .collect();
    std::fs::write(ws.path("camel.jsonl"), lines).unwrap();
    let mut newest = std::collections::BTreeMap::new();
    for (id, version, qty) in events {
        let top = newest.entry(id).or_insert((version, qty));
        if version > top.0 {
            *top = (version, qty);
        }
    }
    let mut expected = vec!["quoted_id,bare_id,version,stockQty".to_string()];
    let mut rows: Vec<String> = newest
        .iter()
        .map(|(id, (version, qty))| format!("{id},{id},{version},{qty}"))
        .collect();
    rows.sort();
    expected.extend(rows);

    succeed(
        &ws,
        &[
            "run",
            "--topic",
            "camel",
            "--source",
            "camel.jsonl",
            "--output",
            "out",
        ],
    );
    let main = ws.read_out_sorted("camel/main/run=0000000001/main-0000000001-pcamel.jsonl.csv");
    assert_eq!(main.lines().collect::<Vec<_>>(), expected);
    let keys = ws.read_out("camel/keys/run=0000000001/keys-0000000001-pcamel.jsonl.csv");
    assert_eq!(
        keys.lines().next(),
        Some("articleId,version,deleted,kind"),
        "{keys}"
    );

    // Another case is another name.
    std::fs::write(
        ws.path("draft.sql"),
        "CREATE VIEW output AS\nSELECT articleid FROM events;\n",
    )
    .unwrap();
    let draft = materializer(
        &ws,
        &[
            "preview",
            "camel",
            "--events",
            "camel.jsonl",
            "--mapping",
            "draft.sql",
        ],
    );
    assert_eq!(draft.status.code(), Some(2), "{}", stderr(&draft));
    assert_eq!(
        stderr(&draft).trim_end().lines().last(),
        Some(
            "error: draft.sql:2:8: in view output: column 'articleid' not found; did you mean 'articleId'?"
        ),
        "{}",
        stderr(&draft)
    );
}

/// Copies of one version in files named so that their order by length and
/// their order by name differ: the copy in the file that sorts last in
/// partition order (names that are not numbers by length, then by name)
/// is the one in MAIN, as README's "Compaction and corrections" says.
#[test]
fn of_copies_in_files_the_one_in_the_partition_that_sorts_last_wins() {
    let ws = Workspace::new();
    let copy = |id: u64, brand: &str| {
        format!(
            r#"{{"metadata":{{"eid":"5a1e0000-0000-4000-8000-{id:012}","occurred_at":"2024-06-03T08:00:00Z"}},"article_id":{id},"brand":"{brand}","model":"m","version":2,"available_qty":1}}"#
        ) + "\n"
    };
    std::fs::create_dir(ws.path("mine")).unwrap();
    // Partition order: b.jsonl (7 bytes), then aa.jsonl and ab.jsonl (8
    // bytes, by name). By name alone b.jsonl would be last.
    std::fs::write(ws.path("mine/b.jsonl"), copy(7, "in b") + &copy(8, "in b")).unwrap();
    std::fs::write(
        ws.path("mine/aa.jsonl"),
        copy(7, "in aa") + &copy(8, "in aa"),
    )
    .unwrap();
    std::fs::write(ws.path("mine/ab.jsonl"), copy(7, "in ab")).unwrap();
    succeed(
        &ws,
        &[
            "run",
            "--topic",
            "article-stock-changed",
            "--source",
            "mine",
            "--output",
            "out",
        ],
    );
    let mut main = Vec::new();
    let folder = ws.path("out/article-stock-changed/main/run=0000000001");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            let (header, rows) = crate::support::csv_rows(&std::fs::read_to_string(&path).unwrap());
            let column = |name: &str| {
                header
                    .iter()
                    .position(|h| h.as_deref() == Some(name))
                    .unwrap()
            };
            let (id, brand) = (column("article_id"), column("brand"));
            main.extend(
                rows.into_iter()
                    .map(|row| (row[id].clone().unwrap(), row[brand].clone().unwrap())),
            );
        }
    }
    main.sort();
    assert_eq!(
        main,
        vec![
            ("7".to_string(), "in ab".to_string()),
            ("8".to_string(), "in aa".to_string()),
        ]
    );
}
