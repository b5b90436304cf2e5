//! Runs against the Nakadi-compatible server over real HTTP: both reading
//! modes, second runs, every injected fault alone and mixed over many runs,
//! refused credentials, expired cursors and the subscription's commits.
//!
//! This file holds the harness (a server with the article event type, the
//! sources and runs against it, what they committed) and the plain reads
//! and refusals. The parts: [`faults`] (every fault alone, and mixed over
//! many runs), [`subscriptions`] (the subscription's commits, and the
//! server's subscription streams), [`killed_runs`] (runs of the binary
//! killed or crashed, and the runs after them) and [`publishing`] (where the
//! server's partition strategies put published events).

use std::sync::Arc;
use std::time::Duration;

use materializer_core::commit::Ledger;
use materializer_core::run::{Outcome, RunError, RunSummary};
use materializer_core::sink::{OutputLocation, S3Settings};
use materializer_core::source::{
    NakadiClient, NakadiSettings, NakadiSource, ReadFrom, Source, SubscriptionReader,
    SubscriptionSettings, TokenSource,
};
use nakadi_testkit::Bus;

use crate::support::{Committed, Workspace, article_stream, committed};

mod faults;
mod killed_runs;
mod publishing;
mod subscriptions;

const TOPIC: &str = "article-stock-changed";
pub(crate) const EVENT_TYPE: &str = "article.stock-changed";
pub(crate) const OWNER: &str = "materializer-tests";

/// A run that takes longer has stalled: the test fails instead of hanging.
/// Generous, as a debug build on two busy cores is slow; a run that ends
/// sooner ends the wait.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

pub(crate) struct Live {
    pub(crate) bus: Arc<Bus>,
    pub(crate) url: String,
    _server: tokio::task::JoinHandle<()>,
}

/// A server holding the article event type with `lines` recorded in it.
pub(crate) async fn live(ws: &Workspace, token: Option<&str>, lines: &[String]) -> Live {
    live_with_partitions(ws, token, lines, 4).await
}

/// As [`live`], the event type with `partitions` partitions (`0`, `1`, ...).
pub(crate) async fn live_with_partitions(
    ws: &Workspace,
    token: Option<&str>,
    lines: &[String],
    partitions: usize,
) -> Live {
    let bus = Bus::new(token.map(String::from), partitions);
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.sql().join(TOPIC).join("schema.json")).unwrap(),
    )
    .unwrap();
    bus.add_event_type(doc, partitions).unwrap();
    bus.append_recording(EVENT_TYPE, (lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let (address, handle) = bus.start("127.0.0.1:0").await.unwrap();
    Live {
        bus,
        url: format!("http://{address}"),
        _server: handle,
    }
}

/// Makes the binary read the topic through the subscription the library runs use.
pub(crate) fn read_through_subscription(ws: &Workspace) {
    let dir = ws.sql().join(TOPIC);
    let toml = std::fs::read_to_string(dir.join("topic.toml")).unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        format!("{toml}\n[source]\nmode = \"subscription\"\n\n[source.subscription]\nowning_application = \"{OWNER}\"\n"),
    )
    .unwrap();
}

pub(crate) fn settings(url: &str, token: TokenSource) -> NakadiSettings {
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
    source_of(settings, EVENT_TYPE, subscription)
}

/// A source reading `event_type` through the low-level API or, with
/// `subscription`, through a subscription from the beginning.
pub(crate) fn source_of(settings: NakadiSettings, event_type: &str, subscription: bool) -> Source {
    let client = Arc::new(NakadiClient::new(settings).unwrap());
    Source::Nakadi(NakadiSource {
        subscription: subscription.then(|| {
            SubscriptionReader::new(
                client.clone(),
                event_type.into(),
                SubscriptionSettings {
                    owning_application: OWNER.into(),
                    consumer_group: "materializer".into(),
                    read_from: ReadFrom::Begin,
                },
            )
        }),
        client,
        event_type: event_type.into(),
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

pub(crate) async fn subscription_id(live: &Live) -> String {
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

/// Events in recorded stream lines.
fn events_in(lines: &[String]) -> u64 {
    lines
        .iter()
        .map(|l| l.matches("\"eid\"").count() as u64)
        .sum()
}

pub(crate) fn append(live: &Live, lines: &[String]) {
    live.bus
        .append_recording(EVENT_TYPE, (lines.join("\n") + "\n").as_bytes())
        .unwrap();
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

#[tokio::test]
async fn refused_credentials_give_a_clear_error_without_the_token() {
    let ws = Workspace::new();
    let lines = article_stream(100, 2, 1);
    let live = live(&ws, Some("right-token"), &lines).await;
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
    let with_token = |token: &str, name: &str| {
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        (
            local(&ws, name),
            source_with(settings(&live.url, TokenSource::file(&token_file)), false),
        )
    };
    let (output, source) = with_token("right-token", "accepted");
    let ok = run(&ws, &output, source).await.unwrap();
    assert_eq!(ok.outcome, Outcome::Committed);
    assert_eq!(ok.counts.events_read, events_in(&lines));
    // The file is read again: a token replaced in it is the one sent.
    let (output, source) = with_token("wrong-token-value", "replaced");
    let err = run(&ws, &output, source).await.unwrap_err();
    let err = materializer_core::report(&err);
    assert!(
        err.contains("Nakadi refused the credentials (401)"),
        "{err}"
    );
    assert!(!err.contains("wrong-token-value"), "{err}");
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

/// The binary, given the Nakadi token as `NAKADI_TOKEN` or in a
/// `--nakadi-token-file`, prints it nowhere, with debug logs on and in both
/// log formats: neither when Nakadi refuses it (401: exit 2, with a clear
/// error) nor when it accepts it (the run commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_the_nakadi_token_nowhere() {
    let ws = Workspace::new();
    let accepted = "nakadi-token-accepted-5f0c2a9e71b3";
    let refused = "nakadi-token-refused-d84e6b1c07fa";
    let lines = article_stream(100, 2, 1);
    let live = live(&ws, Some(accepted), &lines).await;
    let mut case = 0;
    for format in ["text", "json"] {
        for token in [refused, accepted] {
            for in_file in [false, true] {
                case += 1;
                let mut command = ws.command();
                command
                    .env("RUST_LOG", "debug")
                    .env_remove("NAKADI_TOKEN")
                    .env_remove("NAKADI_TOKEN_FILE")
                    .env_remove("NAKADI_URL")
                    .env_remove("MATERIALIZER_OUTPUT")
                    .args(["run", "--topic", TOPIC, "--no-progress"])
                    .args(["--nakadi-url", &live.url, "--log-format", format])
                    .args(["--output", &format!("out-{case}")]);
                if in_file {
                    let file = ws.path(&format!("token-{case}"));
                    std::fs::write(&file, format!("{token}\n")).unwrap();
                    command.arg("--nakadi-token-file").arg(&file);
                } else {
                    command.env("NAKADI_TOKEN", token);
                }
                let out = tokio::process::Command::from(command)
                    .output()
                    .await
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                let what = format!("{format} log, token of {token} (in a file: {in_file})");
                // Debug logs were written: the check below looks at them.
                assert!(
                    stderr.contains("DEBUG"),
                    "{what}: no debug log line: {stderr}"
                );
                for secret in [accepted, refused] {
                    // The whole token, and its part no other text holds.
                    let tail = &secret[secret.len() - 12..];
                    assert!(
                        !stdout.contains(tail) && !stderr.contains(tail),
                        "{what}: the token {secret} was printed:\n{stdout}\n{stderr}"
                    );
                }
                if token == refused {
                    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
                    assert_eq!(
                        stderr.lines().last().unwrap_or_default(),
                        "error: topic article-stock-changed: Nakadi refused the credentials (401) \
                         for partitions of event type article.stock-changed: a valid bearer token \
                         is required; check the token",
                        "{what}: {stderr}"
                    );
                    assert!(stdout.is_empty(), "{what}: {stdout}");
                } else {
                    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
                    assert!(
                        stdout.starts_with("article-stock-changed: run 1 committed in "),
                        "{what}: {stdout}"
                    );
                }
            }
        }
    }
}
