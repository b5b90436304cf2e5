//! Runs against the Nakadi-compatible server over real HTTP: both reading
//! modes, second runs, every injected fault alone and mixed over many runs,
//! refused credentials, expired cursors and the subscription's commits.

use std::sync::Arc;
use std::time::Duration;

use materializer_core::run::{Ledger, Outcome, RunError, RunFailure, RunSummary, Stage};
use materializer_core::sink::{OutputLocation, S3Settings};
use materializer_core::source::{
    NakadiClient, NakadiSettings, NakadiSource, ReadFrom, Source, SubscriptionReader,
    SubscriptionSettings, TokenSource,
};
use nakadi_testkit::Bus;
use nakadi_testkit::faults::{Countdown, FaultPlan, Refusal, Window};

use crate::support::{Committed, Workspace, article_stream, committed};

const TOPIC: &str = "article-stock-changed";
const EVENT_TYPE: &str = "article.stock-changed";
const OWNER: &str = "materializer-tests";

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

async fn subscription_id(live: &Live) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/subscriptions", live.url))
        .json(&serde_json::json!({"owning_application": OWNER, "event_types": [EVENT_TYPE], "consumer_group": "materializer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the run created the subscription");
    response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
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
    live.bus
        .append_recording(
            EVENT_TYPE,
            (lines[lines.len() / 2..].join("\n") + "\n").as_bytes(),
        )
        .unwrap();
    let expected_new: usize = lines[lines.len() / 2..]
        .iter()
        .map(|l| l.matches("\"eid\"").count())
        .sum();
    for subscription in [false, true] {
        let output = local(&ws, &format!("second-{subscription}"));
        let second = run(&ws, &output, source(&live, subscription))
            .await
            .unwrap();
        assert_eq!(second.sequence, Some(2));
        assert_eq!(
            second.counts.events_read, expected_new as u64,
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
    live.bus
        .append_recording(
            EVENT_TYPE,
            (lines[lines.len() / 2..].join("\n") + "\n").as_bytes(),
        )
        .unwrap();
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

#[tokio::test]
async fn a_failed_run_leaves_the_subscription_untouched() {
    let ws = Workspace::new();
    let lines = article_stream(800, 4, 8);
    let live = live(&ws, None, &lines).await;
    let output = local(&ws, "stopped");
    // Stop the run once it has read everything and is mapping.
    let request = ws
        .request_from(TOPIC, output.clone(), source(&live, true))
        .await;
    let (progress, cancel) = (request.progress.clone(), request.cancel.clone());
    tokio::spawn(async move {
        while progress.stage() != Stage::Mapping {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cancel.cancel();
    });
    let engine = Workspace::engine();
    let err = materializer_core::run::execute(&engine, request)
        .await
        .unwrap_err();
    assert!(matches!(err.failure(), RunFailure::Stopped), "{err}");
    let id = subscription_id(&live).await;
    let untouched = live.bus.committed(&id).unwrap();
    assert!(untouched.values().all(|c| c == "BEGIN"), "{untouched:?}");
    assert!(committed(&output, TOPIC).await.sequences.is_empty());

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
    let id = reqwest::Client::new()
        .post(format!("{}/subscriptions", live.url))
        .json(&serde_json::json!({"owning_application": OWNER, "event_types": [EVENT_TYPE], "consumer_group": "slow"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
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
    live.bus
        .append_recording(
            EVENT_TYPE,
            (article_stream(50, 2, 10).join("\n") + "\n").as_bytes(),
        )
        .unwrap();
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
    let dir = ws.sql().join(TOPIC);
    let toml = std::fs::read_to_string(dir.join("topic.toml")).unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        format!("{toml}\n[source]\nmode = \"subscription\"\n\n[source.subscription]\nowning_application = \"{OWNER}\"\n"),
    )
    .unwrap();
    let live = live(&ws, None, &article_stream(600, 4, 12)).await;
    let output = ws.path("crash-out");
    let (cwd, url, out) = (
        ws.dir.path().to_path_buf(),
        live.url.clone(),
        output.clone(),
    );
    let cli = move |failpoint: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_materializer"));
        command
            .current_dir(&cwd)
            .env("RUST_LOG", "warn")
            .args([
                "run",
                "--topic",
                TOPIC,
                "--nakadi-url",
                &url,
                "--no-progress",
                "--output",
            ])
            .arg(&out);
        if let Some(point) = failpoint {
            command.env("MATERIALIZER_FAILPOINT", point);
        }
        command.output().unwrap()
    };
    let crashed = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || cli(Some("post-committed"))
    })
    .await
    .unwrap();
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

    let next = tokio::task::spawn_blocking(move || cli(None))
        .await
        .unwrap();
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(String::from_utf8_lossy(&next.stdout).contains("nothing new since run 1"));
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
        offline.broken[TOPIC].contains("schema.json"),
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
