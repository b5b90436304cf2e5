//! Runs over HTTP: triggered, refused while one runs, queued beyond the
//! limit, stopped, watched as server-sent events, kept in the history across
//! a restart, and stopped at shutdown.

use std::time::Duration;

use materializer_core::commit::Ledger;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TOPIC, settings, start};
use crate::support::{Workspace, article_stream, committed};

fn big_workspace(events: usize) -> Workspace {
    let ws = Workspace::new();
    ws.record(TOPIC, &article_stream(events, 4, 99));
    ws
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
async fn a_committed_run_gives_its_manifest_cursors_and_files_and_one_that_finds_nothing_says_so() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (_, triggered) = api.post(&format!("/topics/{TOPIC}/runs"), None).await;
    let first = api.follow(triggered["id"].as_str().unwrap()).await;
    let first = first.last().unwrap();
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(first["label"], "#1");
    let partitions = first["partitions"].as_array().unwrap();
    assert!(!partitions.is_empty(), "{first}");
    let read: u64 = partitions
        .iter()
        .map(|p| p["events"].as_u64().unwrap())
        .sum();
    assert_eq!(read, first["counts"]["events_read"].as_u64().unwrap());
    assert!(first["timings"]["read"].as_f64().is_some(), "{first}");
    assert!(first["keys_rows"].as_u64().is_some(), "{first}");

    // Its manifest and files: the same checksums; a file's first rows and bytes.
    let (status, manifest) = api.get(&format!("/runs/{TOPIC}@1/manifest")).await;
    assert_eq!(status, StatusCode::OK, "{manifest}");
    let (_, files) = api.get(&format!("/runs/{TOPIC}@1/files")).await;
    let files = files.as_array().unwrap();
    let text = manifest.to_string();
    for file in files {
        assert!(text.contains(file["sha256"].as_str().unwrap()), "{file}");
    }
    let main = files.iter().find(|f| f["kind"] == "main").unwrap();
    let path = main["path"].as_str().unwrap();
    let (status, shown) = api
        .get(&format!("/runs/{TOPIC}@1/files/preview?path={path}&rows=2"))
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["total_rows"], main["rows"]);
    assert_eq!(
        shown["rows"].as_array().unwrap().len() as u64,
        main["rows"].as_u64().unwrap().min(2)
    );
    let bytes = api
        .client
        .get(format!(
            "{}/runs/{TOPIC}@1/files/content?path={path}",
            api.url
        ))
        .bearer_auth(super::TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len() as u64, main["bytes"].as_u64().unwrap());
    let (status, _) = api
        .get(&format!("/runs/{TOPIC}@1/files/preview?path=nope.csv"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing new: labelled after the run before it, not as it.
    let (_, triggered) = api.post(&format!("/topics/{TOPIC}/runs"), None).await;
    let second = api.follow(triggered["id"].as_str().unwrap()).await;
    let second = second.last().unwrap();
    assert_eq!(second["outcome"], "nothing_new", "{second}");
    assert_eq!(second["label"], "nothing new after #1");

    // The source's events, as it holds them; an offset needs its partition.
    let (status, events) = api
        .get(&format!("/topics/{TOPIC}/source-events?limit=3"))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");
    let (status, _) = api
        .get(&format!("/topics/{TOPIC}/source-events?from=0"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
