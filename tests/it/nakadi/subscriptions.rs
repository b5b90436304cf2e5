//! The subscription: untouched by a failed run, committed through a new
//! stream after a timeout, waited for while busy, and named with its
//! partitions when a run gets no further; and the server's subscription
//! streams, opened by hand: the window and the commit timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use materializer_core::ErrorClass;
use materializer_core::commit::Ledger;
use materializer_core::run::RunFailure;
use materializer_core::source::{
    NakadiClient, Offset, ReadFrom, SubscriptionReader, SubscriptionSettings, TokenSource,
};
use nakadi_testkit::faults::{Cap, FaultPlan};

use super::{
    EVENT_TYPE, Live, OWNER, RUN_DEADLINE, TOPIC, append, end_cursors, events_in, live, local,
    post_subscription, run, settings, source, source_with, subscription_id,
};
use crate::support::{Workspace, article_stream, committed};

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
    let body = serde_json::json!({"owning_application": OWNER, "event_types": [EVENT_TYPE], "consumer_group": "slow"});
    let (_, id) = post_subscription(&live, body).await;
    // The stream is closed and its commit timeout over: a commit naming it
    // is refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.bus.streams_accepting_commits(&id) > 0 {
        assert!(Instant::now() < deadline, "the stream still takes commits");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = live.bus.streams_opened.load(Ordering::Relaxed);
    reader.commit(&positions).await.unwrap();
    assert_eq!(
        live.bus.streams_opened.load(Ordering::Relaxed),
        opened + 1,
        "the commit went through a new stream"
    );
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
    // The holder lets go once the run was refused for it.
    let bus = live.bus.clone();
    tokio::spawn(async move {
        while bus.busy_refused.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(holder);
    });
    let summary = run(&ws, &output, source(&live, true)).await.unwrap();
    assert!(live.bus.busy_refused.load(Ordering::Relaxed) >= 1);
    assert_eq!(summary.sequence, Some(2));
    assert_eq!(summary.counts.events_read, 50);
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
