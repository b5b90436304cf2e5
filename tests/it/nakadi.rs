//! Runs against the Nakadi-compatible server over real HTTP: both reading
//! modes, second runs, every injected fault alone and mixed over many runs,
//! refused credentials, expired cursors and the subscription's commits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use materializer_core::ErrorClass;
use materializer_core::run::{
    Ledger, Outcome, PartitionCursors, Plan, RunError, RunFailure, RunSummary,
};
use materializer_core::sink::{FileKind, OutputLocation, S3Settings};
use materializer_core::source::{
    NakadiClient, NakadiSettings, NakadiSource, Offset, ReadFrom, Source, SubscriptionReader,
    SubscriptionSettings, TokenSource,
};
use nakadi_testkit::Bus;
use nakadi_testkit::faults::{Cap, Countdown, FaultPlan, Refusal, Window};

use crate::support::{Committed, Workspace, article_stream, committed, parse_csv, run_files};

const TOPIC: &str = "article-stock-changed";
const EVENT_TYPE: &str = "article.stock-changed";
const OWNER: &str = "materializer-tests";
const FAILPOINT: &str = "MATERIALIZER_FAILPOINT";
/// A run that takes longer has stalled: the test fails instead of hanging.
const RUN_DEADLINE: Duration = Duration::from_secs(40);

pub(crate) struct Live {
    pub(crate) bus: Arc<Bus>,
    pub(crate) url: String,
    _server: tokio::task::JoinHandle<()>,
}

/// A server holding the article event type with `lines` recorded in it.
pub(crate) async fn live(ws: &Workspace, token: Option<&str>, lines: &[String]) -> Live {
    let bus = Bus::new(token.map(String::from), 4);
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.sql().join(TOPIC).join("schema.json")).unwrap(),
    )
    .unwrap();
    bus.add_event_type(doc, 4).unwrap();
    bus.append_recording(EVENT_TYPE, (lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let (address, handle) = bus.start("127.0.0.1:0").await.unwrap();
    Live {
        bus,
        url: format!("http://{address}"),
        _server: handle,
    }
}

fn settings(url: &str, token: TokenSource) -> NakadiSettings {
    let mut s = NakadiSettings::new(url, token);
    s.batch_limit = 7;
    s.batch_flush_timeout = Duration::from_secs(1);
    s.silence_timeout = Duration::from_millis(1500);
    s.max_retries = 8;
    s.initial_backoff = Duration::from_millis(20);
    s.max_backoff = Duration::from_millis(300);
    s
}

fn source_with(settings: NakadiSettings, subscription: bool) -> Source {
    let client = Arc::new(NakadiClient::new(settings).unwrap());
    Source::Nakadi(NakadiSource {
        subscription: subscription.then(|| {
            SubscriptionReader::new(
                client.clone(),
                EVENT_TYPE.into(),
                SubscriptionSettings {
                    owning_application: OWNER.into(),
                    consumer_group: "materializer".into(),
                    read_from: ReadFrom::Begin,
                },
            )
        }),
        client,
        event_type: EVENT_TYPE.into(),
    })
}

fn source(live: &Live, subscription: bool) -> Source {
    source_with(settings(&live.url, TokenSource::None), subscription)
}

fn local(ws: &Workspace, name: &str) -> OutputLocation {
    OutputLocation::parse(&ws.path(name).display().to_string(), &S3Settings::default()).unwrap()
}

async fn run(
    ws: &Workspace,
    output: &OutputLocation,
    source: Source,
) -> Result<RunSummary, RunError> {
    let engine = Workspace::engine();
    materializer_core::run::execute(
        &engine,
        ws.request_from(TOPIC, output.clone(), source).await,
    )
    .await
}

/// Committed rows, with the rejected events' origins (file lines of a
/// recording; none for a live stream) left out.
async fn rows(output: &OutputLocation) -> Committed {
    let mut c = committed(output, TOPIC).await;
    for line in &mut c.rejected {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object_mut().unwrap().remove("origin");
        *line = v.to_string();
    }
    c.rejected.sort();
    c
}

/// The fault-free result: the same events from the recorded file.
async fn reference(ws: &Workspace, lines: &[String]) -> Committed {
    ws.record(TOPIC, lines);
    let output = local(ws, "reference");
    ws.run_with(TOPIC, output.clone()).await.unwrap();
    rows(&output).await
}

/// `POST /subscriptions` (finds or creates): the answer's status and the id.
async fn post_subscription(live: &Live, body: serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/subscriptions", live.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (status, id)
}

async fn subscription_id(live: &Live) -> String {
    let body = serde_json::json!({"owning_application": OWNER, "event_types": [EVENT_TYPE], "consumer_group": "materializer"});
    let (status, id) = post_subscription(live, body).await;
    assert_eq!(status, 200, "the run created the subscription");
    id
}

async fn end_cursors(output: &OutputLocation) -> std::collections::BTreeMap<String, String> {
    let ledger = Ledger::new(output.clone(), TOPIC);
    let manifest = ledger.latest().await.unwrap().unwrap();
    manifest
        .end_cursors()
        .into_iter()
        .map(|(p, o)| (p, o.to_string()))
        .collect()
}

/// What a warehouse that loads every committed run in order holds: per
/// article, the version and eid of its MAIN row of the highest version.
async fn warehouse(output: &OutputLocation) -> BTreeMap<String, (i64, String)> {
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for run in run_files(output, TOPIC).await {
        for (_, text) in run.files.iter().filter(|(kind, _)| *kind == FileKind::Main) {
            let mut rows = parse_csv(text);
            let header = rows.remove(0);
            let column = |name: &str| {
                header
                    .iter()
                    .position(|h| h.as_deref() == Some(name))
                    .unwrap()
            };
            let (key, version, eid) = (column("article_id"), column("version"), column("eid"));
            for row in rows {
                let v: i64 = row[version].as_deref().unwrap().parse().unwrap();
                let k = row[key].clone().unwrap();
                if latest.get(&k).is_none_or(|(top, _)| v > *top) {
                    latest.insert(k, (v, row[eid].clone().unwrap()));
                }
            }
        }
    }
    latest
}

/// The events of recorded stream lines: (eid, article, version).
fn events_of(lines: &[String]) -> BTreeSet<(String, String, i64)> {
    let mut events = BTreeSet::new();
    for line in lines {
        let batch: serde_json::Value = serde_json::from_str(line).unwrap();
        for event in batch["events"].as_array().unwrap() {
            events.insert((
                event["metadata"]["eid"].as_str().unwrap().to_string(),
                event["article_id"].to_string(),
                event["version"].as_i64().unwrap(),
            ));
        }
    }
    events
}

/// The committed runs hold the latest version of every article in `lines`,
/// each as one of the events with that version (equal versions are
/// redeliveries of one state).
async fn holds_the_latest_versions(output: &OutputLocation, lines: &[String]) {
    let events = events_of(lines);
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    for (_, article, version) in &events {
        let top = latest.entry(article.clone()).or_insert(*version);
        *top = (*top).max(*version);
    }
    let held = warehouse(output).await;
    let versions: BTreeMap<String, i64> = held.iter().map(|(a, (v, _))| (a.clone(), *v)).collect();
    assert_eq!(versions, latest);
    for (article, (version, eid)) in held {
        assert!(
            events.contains(&(eid.clone(), article.clone(), version)),
            "{article}: {eid} is not an event of version {version}"
        );
    }
}

/// Events in recorded stream lines.
fn events_in(lines: &[String]) -> u64 {
    lines
        .iter()
        .map(|l| l.matches("\"eid\"").count() as u64)
        .sum()
}

fn append(live: &Live, lines: &[String]) {
    live.bus
        .append_recording(EVENT_TYPE, (lines.join("\n") + "\n").as_bytes())
        .unwrap();
}

/// Makes the binary read the topic through the subscription the library runs use.
fn read_through_subscription(ws: &Workspace) {
    let dir = ws.sql().join(TOPIC);
    let toml = std::fs::read_to_string(dir.join("topic.toml")).unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        format!("{toml}\n[source]\nmode = \"subscription\"\n\n[source.subscription]\nowning_application = \"{OWNER}\"\n"),
    )
    .unwrap();
}

/// A run of the binary against `live`, writing to `output`.
fn cli_run(ws: &Workspace, live: &Live, output: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(ws.command());
    command
        .args([
            "run",
            "--topic",
            TOPIC,
            "--nakadi-url",
            &live.url,
            "--no-progress",
            "--output",
        ])
        .arg(output)
        .kill_on_drop(true);
    command
}

/// What a run of the binary printed once it ended; a run that does not end
/// fails the test.
async fn finished(command: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(RUN_DEADLINE, command.output())
        .await
        .expect("the run did not end")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn both_modes_read_every_partition_exactly_once() {
    let ws = Workspace::new();
    let lines = article_stream(3000, 4, 11);
    let expected = reference(&ws, &lines).await;
    let live = live(&ws, None, &lines).await;
    for subscription in [false, true] {
        let output = local(&ws, &format!("live-{subscription}"));
        let summary = run(&ws, &output, source(&live, subscription))
            .await
            .unwrap();
        assert_eq!(summary.outcome, Outcome::Committed);
        assert_eq!(summary.counts.events_read, 3000);
        assert_eq!(
            rows(&output).await,
            expected,
            "subscription: {subscription}"
        );
    }
    // The subscription's committed cursors are the run's end cursors.
    let id = subscription_id(&live).await;
    assert_eq!(
        live.bus.committed(&id).unwrap(),
        end_cursors(&local(&ws, "live-true")).await
    );
}

#[tokio::test]
async fn a_second_run_gets_only_newer_events() {
    let ws = Workspace::new();
    let lines = article_stream(1200, 4, 5);
    let live = live(&ws, None, &lines[..lines.len() / 2]).await;
    for subscription in [false, true] {
        let output = local(&ws, &format!("second-{subscription}"));
        let first = run(&ws, &output, source(&live, subscription))
            .await
            .unwrap();
        assert_eq!(first.sequence, Some(1));
        let again = run(&ws, &output, source(&live, subscription))
            .await
            .unwrap();
        assert_eq!(again.outcome, Outcome::NothingNew);
    }
    append(&live, &lines[lines.len() / 2..]);
    let expected_new = events_in(&lines[lines.len() / 2..]);
    for subscription in [false, true] {
        let output = local(&ws, &format!("second-{subscription}"));
        let second = run(&ws, &output, source(&live, subscription))
            .await
            .unwrap();
        assert_eq!(second.sequence, Some(2));
        assert_eq!(
            second.counts.events_read, expected_new,
            "subscription: {subscription}"
        );
        let ledger = Ledger::new(output.clone(), TOPIC);
        let (m1, m2) = (
            ledger.manifest(1).await.unwrap().unwrap(),
            ledger.manifest(2).await.unwrap().unwrap(),
        );
        for (a, b) in m1.partitions.iter().zip(&m2.partitions) {
            assert_eq!(a.end, b.start);
        }
    }
    let id = subscription_id(&live).await;
    assert_eq!(
        live.bus.committed(&id).unwrap(),
        end_cursors(&local(&ws, "second-true")).await
    );
}

fn faults() -> Vec<(&'static str, FaultPlan)> {
    vec![
        (
            "drop the connection after 3 batches, 4 times",
            FaultPlan {
                drop_after_batches: Some(Countdown {
                    after: 3,
                    streams: 4,
                }),
                ..Default::default()
            },
        ),
        (
            "cut a line in half after 2 batches, 3 times",
            FaultPlan {
                cut_line_after_batches: Some(Countdown {
                    after: 2,
                    streams: 3,
                }),
                ..Default::default()
            },
        ),
        (
            "429 three times with Retry-After",
            FaultPlan {
                refuse: Some(Refusal {
                    status: 429,
                    times: 3,
                    retry_after: Some(1),
                }),
                ..Default::default()
            },
        ),
        (
            "503 four times",
            FaultPlan {
                refuse: Some(Refusal {
                    status: 503,
                    times: 4,
                    retry_after: None,
                }),
                ..Default::default()
            },
        ),
        (
            "only keep-alives for a second",
            FaultPlan {
                keepalive_only: Some(Window {
                    seconds: 1.2,
                    streams: 2,
                }),
                ..Default::default()
            },
        ),
        (
            "silent past the deadline",
            FaultPlan {
                silence: Some(Window {
                    seconds: 3.0,
                    streams: 1,
                }),
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test]
async fn each_fault_alone_changes_nothing_in_the_output() {
    let ws = Workspace::new();
    let lines = article_stream(1500, 4, 21);
    let expected = reference(&ws, &lines).await;
    for subscription in [false, true] {
        for (i, (name, plan)) in faults().into_iter().enumerate() {
            // A server per case: each subscription starts from the beginning.
            let live = live(&ws, None, &lines).await;
            live.bus.set_faults(plan);
            let output = local(&ws, &format!("fault-{subscription}-{i}"));
            let summary = run(&ws, &output, source(&live, subscription))
                .await
                .unwrap_or_else(|e| panic!("{name} (subscription: {subscription}): {e}"));
            let injected = live.bus.injected();
            assert!(
                injected.refused
                    + injected.dropped
                    + injected.cut
                    + injected.keepalive_only
                    + injected.silent
                    > 0,
                "{name}: no fault was injected"
            );
            assert_eq!(
                rows(&output).await,
                expected,
                "{name} (subscription: {subscription})"
            );
            if !name.starts_with("only keep-alives") {
                assert!(summary.counts.events_read == 1500, "{name}");
            }
            if subscription {
                let id = subscription_id(&live).await;
                assert_eq!(
                    live.bus.committed(&id).unwrap(),
                    end_cursors(&output).await,
                    "{name}"
                );
            }
        }
    }
}

#[tokio::test]
async fn mixed_faults_over_many_runs_match_a_fault_free_twin() {
    let ws = Workspace::new();
    let lines = article_stream(4000, 4, 33);
    let chunks: Vec<&[String]> = lines.chunks(lines.len() / 8 + 1).collect();
    for subscription in [false, true] {
        let clean = live(&ws, None, &[]).await;
        let faulty = live(&ws, None, &[]).await;
        let clean_out = local(&ws, &format!("twin-clean-{subscription}"));
        let faulty_out = local(&ws, &format!("twin-faulty-{subscription}"));
        let plans = faults();
        for (round, chunk) in chunks.iter().enumerate() {
            let text = chunk.join("\n") + "\n";
            clean
                .bus
                .append_recording(EVENT_TYPE, text.as_bytes())
                .unwrap();
            faulty
                .bus
                .append_recording(EVENT_TYPE, text.as_bytes())
                .unwrap();
            // Two faults at once, different in every round.
            let (a, b) = (
                &plans[round % plans.len()].1,
                &plans[(round * 3 + 1) % plans.len()].1,
            );
            faulty.bus.set_faults(FaultPlan {
                refuse: a.refuse.clone().or(b.refuse.clone()),
                drop_after_batches: a
                    .drop_after_batches
                    .clone()
                    .or(b.drop_after_batches.clone()),
                cut_line_after_batches: a
                    .cut_line_after_batches
                    .clone()
                    .or(b.cut_line_after_batches.clone()),
                keepalive_only: a.keepalive_only.clone().or(b.keepalive_only.clone()),
                silence: a.silence.clone().or(b.silence.clone()),
                max_uncommitted: a.max_uncommitted.clone().or(b.max_uncommitted.clone()),
            });
            run(&ws, &clean_out, source(&clean, subscription))
                .await
                .unwrap();
            run(&ws, &faulty_out, source(&faulty, subscription))
                .await
                .unwrap_or_else(|e| panic!("round {round} (subscription: {subscription}): {e}"));
            assert_eq!(
                rows(&faulty_out).await,
                rows(&clean_out).await,
                "round {round}"
            );
        }
        let c = rows(&clean_out).await;
        assert_eq!(c.sequences, (1..=chunks.len() as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn refused_credentials_give_a_clear_error_without_the_token() {
    let ws = Workspace::new();
    let live = live(&ws, Some("right-token"), &article_stream(100, 2, 1)).await;
    for token in [
        TokenSource::None,
        TokenSource::Static("wrong-token-value".into()),
    ] {
        let err = run(
            &ws,
            &local(&ws, "refused"),
            source_with(settings(&live.url, token), false),
        )
        .await
        .unwrap_err();
        let err = materializer_core::report(&err);
        assert!(
            err.contains("Nakadi refused the credentials (401) for partitions of event type article.stock-changed"),
            "{err}"
        );
        assert!(
            !err.contains("wrong-token-value") && !err.contains("right-token"),
            "{err}"
        );
    }
    // A token file is read (and re-read) for every request.
    let token_file = ws.path("token");
    std::fs::write(&token_file, "right-token\n").unwrap();
    let ok = run(
        &ws,
        &local(&ws, "accepted"),
        source_with(settings(&live.url, TokenSource::file(&token_file)), false),
    )
    .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[tokio::test]
async fn an_expired_cursor_names_the_partition_and_offsets() {
    let ws = Workspace::new();
    let lines = article_stream(400, 2, 3);
    let live = live(&ws, None, &lines[..lines.len() / 2]).await;
    let output = local(&ws, "expired");
    run(&ws, &output, source(&live, false)).await.unwrap();
    let ends = end_cursors(&output).await;
    append(&live, &lines[lines.len() / 2..]);
    // Retention deletes partition 0 beyond what the first run read.
    let end0: u64 = ends["0"].rsplit('-').next().unwrap().parse().unwrap();
    live.bus.expire(EVENT_TYPE, "0", end0 + 5).unwrap();
    let err = run(&ws, &output, source(&live, false)).await.unwrap_err();
    let err = materializer_core::report(&err);
    assert_eq!(
        err,
        format!(
            "topic article-stock-changed: cursor expired: partition 0: the last committed run ended at offset {}, \
             but the oldest event Nakadi still holds is 001-0001-{:018}; the events in between were deleted before they were read",
            ends["0"],
            end0 + 5
        )
    );
}

// The watcher that stops the run has a thread of its own: on the test's
// thread it would wait while the run maps (the query engine computes as it is
// polled) and could miss the moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_leaves_the_subscription_untouched() {
    let ws = Workspace::new();
    let lines = article_stream(800, 4, 8);
    let live = live(&ws, None, &lines).await;
    let output = local(&ws, "failed");
    // A file where the MAIN folder goes: the run reads everything, then
    // fails writing its files, before any commit.
    let blocker = ws.path("failed").join(TOPIC).join("main");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a folder").unwrap();
    let err = run(&ws, &output, source(&live, true)).await.unwrap_err();
    assert!(
        matches!(err.failure(), RunFailure::Sink(_) | RunFailure::Ledger(_)),
        "{err}"
    );
    let id = subscription_id(&live).await;
    let untouched = live.bus.committed(&id).unwrap();
    assert!(untouched.values().all(|c| c == "BEGIN"), "{untouched:?}");
    assert!(committed(&output, TOPIC).await.sequences.is_empty());

    std::fs::remove_file(&blocker).unwrap();
    run(&ws, &output, source(&live, true)).await.unwrap();
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
}

#[tokio::test]
async fn a_commit_after_the_stream_timed_out_goes_through_a_new_stream() {
    let ws = Workspace::new();
    let lines = article_stream(300, 2, 4);
    let live = live(&ws, None, &lines).await;
    let mut s = settings(&live.url, TokenSource::None);
    s.commit_timeout = Duration::from_secs(1);
    let client = Arc::new(NakadiClient::new(s).unwrap());
    let reader = SubscriptionReader::new(
        client.clone(),
        EVENT_TYPE.into(),
        SubscriptionSettings {
            owning_application: OWNER.into(),
            consumer_group: "slow".into(),
            read_from: ReadFrom::Begin,
        },
    );
    reader.recover(&Default::default()).await.unwrap();
    let partitions = client.partitions(EVENT_TYPE).await.unwrap();
    let ranges = materializer_core::source::plan_ranges(&partitions, &Default::default());
    let mut stream = reader.stream(&ranges);
    let mut read = 0;
    use futures::StreamExt;
    let mut positions = std::collections::BTreeMap::new();
    while read < 300 {
        let mut batch = stream.next().await.unwrap().unwrap();
        // Batches come with their events unframed; the decoder frames them.
        batch.frame().unwrap();
        read += batch.event_count();
        positions.insert(batch.partition.to_string(), batch.offset.clone());
    }
    drop(stream);
    // Longer than the commit timeout: Nakadi closes the stream.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    reader.commit(&positions).await.unwrap();
    let body = serde_json::json!({"owning_application": OWNER, "event_types": [EVENT_TYPE], "consumer_group": "slow"});
    let (_, id) = post_subscription(&live, body).await;
    let mut expected: std::collections::BTreeMap<String, String> = positions
        .into_iter()
        .map(|(p, o)| (p, o.to_string()))
        .collect();
    // The event type has four partitions; the stream held events in two.
    for p in ["2", "3"] {
        expected
            .entry(p.to_string())
            .or_insert_with(|| "BEGIN".to_string());
    }
    assert_eq!(live.bus.committed(&id).unwrap(), expected);
}

#[tokio::test]
async fn a_busy_subscription_is_waited_for() {
    let ws = Workspace::new();
    let live = live(&ws, None, &article_stream(200, 2, 9)).await;
    // The run creates the subscription; a second consumer then holds it for a while.
    let output = local(&ws, "busy");
    run(&ws, &output, source(&live, true)).await.unwrap();
    append(&live, &article_stream(50, 2, 10));
    let id = subscription_id(&live).await;
    let holder = reqwest::Client::new()
        .get(format!(
            "{}/subscriptions/{id}/events?batch_flush_timeout=1&max_uncommitted_events=1",
            live.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(holder.status(), 200);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(holder);
    });
    let summary = run(&ws, &output, source(&live, true)).await.unwrap();
    assert_eq!(summary.sequence, Some(2));
    assert!(summary.counts.events_read > 0);
}

#[tokio::test]
async fn a_crash_between_manifest_and_cursor_commit_is_finished_by_the_next_run() {
    let ws = Workspace::new();
    read_through_subscription(&ws);
    let live = live(&ws, None, &article_stream(600, 4, 12)).await;
    let output = ws.path("crash-out");
    let crashed = finished(cli_run(&ws, &live, &output).env(FAILPOINT, "post-committed")).await;
    assert!(!crashed.status.success());
    let location =
        OutputLocation::parse(&output.display().to_string(), &S3Settings::default()).unwrap();
    assert_eq!(
        committed(&location, TOPIC).await.sequences,
        vec![1],
        "the manifest was written"
    );
    let id = subscription_id(&live).await;
    assert!(
        live.bus
            .committed(&id)
            .unwrap()
            .values()
            .all(|c| c == "BEGIN"),
        "no cursor commit yet"
    );

    let next = finished(&mut cli_run(&ws, &live, &output)).await;
    assert!(next.status.success(), "{}", text(&next.stderr));
    assert!(text(&next.stdout).contains("nothing new since run 1"));
    assert_eq!(
        live.bus.committed(&id).unwrap(),
        end_cursors(&location).await
    );
}

#[tokio::test]
async fn a_topic_without_schema_json_takes_the_schema_from_nakadi() {
    let ws = Workspace::new();
    let live = live(&ws, None, &article_stream(50, 2, 2)).await;
    let with_file = ws.catalog().await.topic(TOPIC).unwrap();
    std::fs::remove_file(ws.sql().join(TOPIC).join("schema.json")).unwrap();
    let engine = Workspace::engine();
    let offline = materializer_core::Catalog::load(&ws.sql(), &engine, None)
        .await
        .unwrap();
    assert!(
        offline.broken[TOPIC].reason.contains("schema.json"),
        "{}",
        offline.broken[TOPIC]
    );
    let client = NakadiClient::new(settings(&live.url, TokenSource::None)).unwrap();
    let online = materializer_core::Catalog::load(&ws.sql(), &engine, Some(&client))
        .await
        .unwrap();
    let topic = online.topic(TOPIC).unwrap();
    assert_eq!(topic.schema().events, with_file.schema().events);
    assert_eq!(
        topic.schema().origin,
        format!("Nakadi event type {EVENT_TYPE} at {}", live.url)
    );
    assert!(topic.schema().events.field_with_name("metadata").is_ok());
}

/// Waits until the server noticed that the killed run's stream is gone.
async fn until_no_stream_holds(live: &Live, id: &str) {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let stats: serde_json::Value =
            reqwest::get(format!("{}/subscriptions/{id}/stats", live.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let assigned = stats["items"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["state"] == "assigned");
        if !assigned {
            return;
        }
        assert!(Instant::now() < deadline, "the stream stays held: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events between a plan's start and end cursors.
fn planned_events(plan: &Plan) -> u64 {
    plan.partitions
        .iter()
        .map(|p| p.start.distance_to(&p.end).unwrap())
        .sum()
}

#[tokio::test]
async fn a_killed_subscription_run_resumes_its_plan_after_the_stream_grew() {
    let ws = Workspace::new();
    read_through_subscription(&ws);
    let lines = article_stream(1600, 4, 41);
    let parts: Vec<&[String]> = lines.chunks(lines.len() / 3 + 1).collect();
    let live = live(&ws, None, parts[0]).await;
    let dir = ws.path("resumed");
    let output = OutputLocation::parse(&dir.display().to_string(), &S3Settings::default()).unwrap();
    run(&ws, &output, source(&live, true)).await.unwrap();
    append(&live, parts[1]);
    // Run 2 dies after its first batch went to a decoder: its plan is
    // written, its manifest is not, its stream had sent events uncommitted.
    let killed = finished(cli_run(&ws, &live, &dir).env(FAILPOINT, "reading")).await;
    assert!(
        text(&killed.stderr).contains("failpoint reading"),
        "{}",
        text(&killed.stderr)
    );
    let ledger = Ledger::new(output.clone(), TOPIC);
    let plan = ledger.plan(2).await.unwrap().expect("run 2 wrote its plan");
    assert_eq!(ledger.committed_sequences().await.unwrap(), vec![1]);
    assert_eq!(planned_events(&plan), events_in(parts[1]));

    // The stream grows: Nakadi sends these events past the plan's end.
    append(&live, parts[2]);
    let id = subscription_id(&live).await;
    until_no_stream_holds(&live, &id).await;
    let mut s = settings(&live.url, TokenSource::None);
    s.commit_timeout = Duration::from_secs(2);
    let resumed = tokio::time::timeout(RUN_DEADLINE, run(&ws, &output, source_with(s, true)))
        .await
        .expect("the resumed run did not end")
        .unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.sequence, Some(2));
    assert_eq!(resumed.counts.events_read, planned_events(&plan));
    let cursors = |p: &[PartitionCursors]| -> Vec<(String, String, String)> {
        p.iter()
            .map(|c| (c.partition.clone(), c.start.to_string(), c.end.to_string()))
            .collect()
    };
    assert_eq!(cursors(&resumed.partitions), cursors(&plan.partitions));
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
    let planned = [parts[0], parts[1]].concat();
    holds_the_latest_versions(&output, &planned).await;

    // The growth is the next run's.
    let next = run(&ws, &output, source(&live, true)).await.unwrap();
    assert_eq!(next.counts.events_read, events_in(parts[2]));
    holds_the_latest_versions(&output, &lines).await;
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
}

#[tokio::test]
async fn runs_killed_at_any_moment_on_a_growing_stream_commit_every_event_once() {
    let ws = Workspace::new();
    read_through_subscription(&ws);
    let lines = article_stream(3000, 4, 57);
    let live = live(&ws, None, &[]).await;
    let dir = ws.path("series");
    let output = OutputLocation::parse(&dir.display().to_string(), &S3Settings::default()).unwrap();
    // Every failpoint once, and SIGKILL at random moments in between.
    let deaths = [
        Some("planned"),
        None,
        Some("reading"),
        None,
        Some("files-written"),
        None,
        Some("committed"),
        None,
        Some("post-committed"),
        None,
        None,
        Some("reading"),
    ];
    let rounds: Vec<&[String]> = lines.chunks(lines.len().div_ceil(deaths.len())).collect();
    // How long a whole run takes, to spread the kills over it.
    let mut span = Duration::from_millis(500);
    let mut seed = 0x5eed_u64;
    let mut random = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    assert_eq!(rounds.len(), deaths.len());
    for (round, (events, death)) in rounds.iter().zip(deaths).enumerate() {
        let (before, meanwhile) = events.split_at(events.len() / 2);
        append(&live, before);
        match death {
            Some(point) => {
                let died = finished(cli_run(&ws, &live, &dir).env(FAILPOINT, point)).await;
                assert!(
                    text(&died.stderr).contains(&format!("failpoint {point}")),
                    "round {round}: {}",
                    text(&died.stderr)
                );
            }
            None => {
                let mut child = cli_run(&ws, &live, &dir)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let moment = random(span.as_millis() as u64 + 1);
                tokio::time::sleep(Duration::from_millis(moment)).await;
                let _ = child.start_kill(); // SIGKILL
                let _ = child.wait().await;
            }
        }
        // Events keep arriving while no run is there.
        append(&live, meanwhile);
        let started = Instant::now();
        let next = finished(&mut cli_run(&ws, &live, &dir)).await;
        span = started.elapsed();
        assert!(
            next.status.success(),
            "round {round}: {}",
            text(&next.stderr)
        );
    }

    // A run that resumed a plan left the last events to the next one.
    let last = finished(&mut cli_run(&ws, &live, &dir)).await;
    assert!(last.status.success(), "{}", text(&last.stderr));

    // Every event is in exactly one committed run, and the runs follow each other.
    let ledger = Ledger::new(output.clone(), TOPIC);
    let mut manifests = Vec::new();
    for sequence in ledger.committed_sequences().await.unwrap() {
        manifests.push(ledger.manifest(sequence).await.unwrap().unwrap());
    }
    let read: u64 = manifests.iter().map(|m| m.counts.events_read).sum();
    assert_eq!(read, events_in(&lines));
    for pair in manifests.windows(2) {
        let ends: Vec<_> = pair[0].partitions.iter().map(|p| &p.end).collect();
        let starts: Vec<_> = pair[1].partitions.iter().map(|p| &p.start).collect();
        assert_eq!(ends, starts, "run {}", pair[1].sequence);
    }
    holds_the_latest_versions(&output, &lines).await;
    let id = subscription_id(&live).await;
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
}

#[tokio::test]
async fn a_subscription_run_that_gets_no_further_fails_naming_its_partitions() {
    let ws = Workspace::new();
    let lines = article_stream(800, 4, 17);
    let (old, new) = lines.split_at(lines.len() / 2);
    let live = live(&ws, None, old).await;
    let output = local(&ws, "stalled");
    run(&ws, &output, source(&live, true)).await.unwrap();
    let first_ends = end_cursors(&output).await;
    append(&live, new);
    // Nakadi lets 5 uncommitted events out where the run needs hundreds,
    // and closes streams that stay a second without commits.
    live.bus.set_faults(FaultPlan {
        max_uncommitted: Some(Cap {
            events: 5,
            streams: 100,
        }),
        ..Default::default()
    });
    let mut s = settings(&live.url, TokenSource::None);
    s.commit_timeout = Duration::from_secs(1);
    s.silence_timeout = Duration::from_secs(10);
    s.max_retries = 2;
    let err = tokio::time::timeout(RUN_DEADLINE, run(&ws, &output, source_with(s, true)))
        .await
        .expect("the run did not end")
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::SourceUnavailable);

    // The first stream sent 5 events of partition 0; the three after it sent
    // the same again.
    let id = subscription_id(&live).await;
    let ledger = Ledger::new(output.clone(), TOPIC);
    let plan = ledger.plan(2).await.unwrap().unwrap();
    let unfinished: Vec<String> = plan
        .partitions
        .iter()
        .map(|p| {
            let at = Offset::new(first_ends[&p.partition].clone());
            let read_to = if p.partition == "0" {
                at.plus(5).unwrap()
            } else {
                at
            };
            format!(
                "partition {} read to {read_to}, its plan ends at {}",
                p.partition, p.end
            )
        })
        .collect();
    let message = materializer_core::report(&err);
    let expected = format!(
        "topic {TOPIC}: subscription {id}: no progress in 3 streams in a row: {}; the run commits \
         nothing and the next run reads its plan again: stream ",
        unfinished.join("; ")
    );
    assert!(message.starts_with(&expected), "{message}\n{expected}");
    assert!(
        message.ends_with(": the server ended the stream"),
        "{message}"
    );

    // As a killed run would: nothing committed, the subscription untouched,
    // and the next run reads the same plan.
    assert_eq!(ledger.committed_sequences().await.unwrap(), vec![1]);
    assert_eq!(live.bus.committed(&id).unwrap(), first_ends);
    live.bus.set_faults(FaultPlan::default());
    let next = run(&ws, &output, source(&live, true)).await.unwrap();
    assert!(next.resumed);
    assert_eq!(next.counts.events_read, events_in(new));
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
}

/// A subscription stream opened by hand, read line by line.
struct RawStream {
    id: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl RawStream {
    async fn open(live: &Live, subscription: &str, query: &str) -> Result<RawStream, u16> {
        let response = reqwest::get(format!(
            "{}/subscriptions/{subscription}/events?{query}",
            live.url
        ))
        .await
        .unwrap();
        if !response.status().is_success() {
            return Err(response.status().as_u16());
        }
        let id = response.headers()["X-Nakadi-StreamId"]
            .to_str()
            .unwrap()
            .to_string();
        Ok(RawStream {
            id,
            response,
            buffer: Vec::new(),
        })
    }

    /// The next line; `None` once the server ended the stream.
    async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(at) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                return Some(serde_json::from_slice(&line[..at]).unwrap());
            }
            let chunk = tokio::time::timeout(RUN_DEADLINE, self.response.chunk())
                .await
                .expect("the stream went silent")
                .unwrap();
            self.buffer.extend_from_slice(&chunk?);
        }
    }

    /// Reads batches until `count` events came; the cursors of the batches.
    async fn events(&mut self, count: usize) -> Vec<serde_json::Value> {
        let (mut seen, mut cursors) = (0, Vec::new());
        while seen < count {
            let line = self.next().await.expect("the stream ended early");
            if let Some(events) = line["events"].as_array() {
                seen += events.len();
                cursors.push(line["cursor"].clone());
            }
        }
        assert_eq!(seen, count);
        cursors
    }

    /// Reads to the end of the stream: the events that still came.
    async fn rest(&mut self) -> usize {
        let mut seen = 0;
        while let Some(line) = self.next().await {
            seen += line["events"].as_array().map_or(0, Vec::len);
        }
        seen
    }
}

#[tokio::test]
async fn the_server_pauses_at_the_window_and_ends_streams_left_without_commits() {
    let ws = Workspace::new();
    let live = live(&ws, None, &article_stream(200, 4, 6)).await;
    let body = serde_json::json!({"owning_application": "raw", "event_types": [EVENT_TYPE], "read_from": "begin"});
    let (_, id) = post_subscription(&live, body).await;
    let query = "batch_limit=4&max_uncommitted_events=10&commit_timeout=2&batch_flush_timeout=1";

    // The first stream holds every partition: a second one finds no free slot.
    let mut first = RawStream::open(&live, &id, query).await.unwrap();
    assert_eq!(RawStream::open(&live, &id, query).await.err(), Some(409));
    // 10 events, then a pause without commits until the commit timeout ends the stream.
    let sent = first.events(10).await;
    assert_eq!(first.rest().await, 0);

    // The next stream starts again at the committed cursors (BEGIN): the same events.
    let mut second = RawStream::open(&live, &id, query).await.unwrap();
    let resent = second.events(10).await;
    assert_eq!(resent, sent);
    // A commit of 4 lets 4 more out, no more.
    let commit = reqwest::Client::new()
        .post(format!("{}/subscriptions/{id}/cursors", live.url))
        .header("X-Nakadi-StreamId", &second.id)
        .json(&serde_json::json!({ "items": [resent[0]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(commit.status(), 204);
    assert_eq!(second.rest().await, 4);
    let committed = live.bus.committed(&id).unwrap();
    assert_eq!(
        committed[resent[0]["partition"].as_str().unwrap()],
        resent[0]["offset"]
    );

    // A wide window gets every event, and those published while the stream is open.
    let mut third = RawStream::open(&live, &id, "batch_limit=50&max_uncommitted_events=1000")
        .await
        .unwrap();
    third.events(196).await;
    append(&live, &article_stream(12, 4, 99));
    third.events(12).await;
}
