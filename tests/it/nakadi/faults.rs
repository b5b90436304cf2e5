//! Injected faults: each one alone changes nothing in the output, and
//! faults mixed over many runs give what a fault-free twin gives.

use nakadi_testkit::faults::{Countdown, FaultPlan, Refusal, Request, Window};

use super::{
    EVENT_TYPE, TOPIC, end_cursors, live, local, reference, rows, run, source, subscription_id,
};
use crate::support::{Workspace, article_stream};

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
            refusing(429, 3, Some(1)),
        ),
        ("503 four times", refusing(503, 4, None)),
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

/// A fault plan that refuses the next `times` requests with `status`.
fn refusing(status: u16, times: u32, retry_after: Option<u64>) -> FaultPlan {
    FaultPlan {
        refuse: Some(Refusal {
            status,
            times,
            retry_after,
            only: None,
        }),
        ..Default::default()
    }
}

/// 403, 404 and 422 are no outage: the run stops at the first one, naming
/// it, commits nothing, and asks no more.
#[tokio::test]
async fn refusals_no_retry_can_mend_stop_the_run_at_once() {
    let ws = Workspace::new();
    let lines = article_stream(200, 2, 5);
    for (status, says) in [
        (403, "Nakadi forbids"),
        (404, "not found in Nakadi (404)"),
        (422, "Nakadi could not process"),
    ] {
        let live = live(&ws, None, &lines).await;
        live.bus.set_faults(refusing(status, 50, None));
        let output = local(&ws, &format!("refused-{status}"));
        let err = run(&ws, &output, source(&live, false)).await.unwrap_err();
        let err = materializer_core::report(&err);
        assert!(
            err.contains(says) && err.contains(&format!("({status})")),
            "{err}"
        );
        assert_eq!(
            live.bus.injected().refused,
            1,
            "{status} was retried: {err}"
        );
        assert!(rows(&output).await.sequences.is_empty(), "{status}");
    }
}

/// As above through a subscription, refused where it streams: the run stops
/// at the first refusal, naming it, commits nothing and leaves the
/// subscription's cursors where they were.
#[tokio::test]
async fn refusals_no_retry_can_mend_stop_a_subscription_run_at_once() {
    let ws = Workspace::new();
    let lines = article_stream(200, 2, 5);
    for status in [403, 404, 422] {
        let live = live(&ws, None, &lines).await;
        let mut faults = refusing(status, 50, None);
        if let Some(refusal) = faults.refuse.as_mut() {
            refusal.only = Some(Request::SubscriptionEvents);
        }
        live.bus.set_faults(faults);
        let output = local(&ws, &format!("subscription-refused-{status}"));
        let err = run(&ws, &output, source(&live, true)).await.unwrap_err();
        let err = materializer_core::report(&err);
        // The run created the subscription before it was refused its stream.
        let id = subscription_id(&live).await;
        let stream = format!("stream of subscription {id}");
        let says = match status {
            403 => format!("Nakadi forbids {stream} (403)"),
            404 => format!("{stream}: not found in Nakadi (404)"),
            _ => format!("Nakadi could not process {stream} (422)"),
        };
        assert_eq!(err, format!("topic {TOPIC}: {says}: injected fault"));
        assert_eq!(
            live.bus.injected().refused,
            1,
            "{status} was retried: {err}"
        );
        assert!(rows(&output).await.sequences.is_empty(), "{status}");
        let untouched = live.bus.committed(&id).unwrap();
        assert!(
            !untouched.is_empty() && untouched.values().all(|c| c == "BEGIN"),
            "{untouched:?}"
        );
    }
}

/// A 503 with `Retry-After: 2` is retried no sooner than two seconds later
/// (the server measures the wait from its refusal to the retry), though the
/// run's own backoff would retry within 300 ms.
#[tokio::test]
async fn retry_after_is_honoured() {
    let ws = Workspace::new();
    let lines = article_stream(200, 2, 6);
    let expected = reference(&ws, &lines).await;
    let live = live(&ws, None, &lines).await;
    live.bus.set_faults(refusing(503, 1, Some(2)));
    let output = local(&ws, "retry-after");
    run(&ws, &output, source(&live, false)).await.unwrap();
    assert_eq!(live.bus.injected().refused, 1);
    let waits = live.bus.retry_waits();
    assert_eq!(
        waits.len(),
        1,
        "the refused request was retried once: {waits:?}"
    );
    assert!(
        waits[0] >= std::time::Duration::from_secs(2),
        "retried {:?} after a Retry-After of 2 s",
        waits[0]
    );
    assert_eq!(rows(&output).await, expected);
}

/// Every retry is logged and counted: a run of the binary against a server
/// that refuses three requests for the partitions (503) and drops two
/// streams logs each retry
/// (what was refused, which partition's stream was dropped) and counts
/// exactly the five in its summary, as text and as JSON; its events are
/// all read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_of_the_binary_is_logged_and_counted() {
    for json in [false, true] {
        let ws = Workspace::new();
        let lines = article_stream(1000, 4, 7);
        let live = live(&ws, None, &lines).await;
        live.bus.set_faults(FaultPlan {
            refuse: Some(Refusal {
                status: 503,
                times: 3,
                retry_after: None,
                only: Some(Request::Partitions),
            }),
            drop_after_batches: Some(Countdown {
                after: 2,
                streams: 2,
            }),
            ..Default::default()
        });
        let mut command = ws.command();
        command
            .env_remove("NAKADI_URL")
            .env_remove("MATERIALIZER_OUTPUT")
            .args(["run", "--topic", TOPIC, "--no-progress", "--output", "out"])
            .args(["--nakadi-url", &live.url])
            // Batches of 10: a partition's stream is many batches long.
            .args(["--nakadi-batch-limit", "10", "--nakadi-max-backoff", "1"]);
        if json {
            command.arg("--json");
        }
        let out = tokio::process::Command::from(command)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let injected = live.bus.injected();
        assert_eq!((injected.refused, injected.dropped), (3, 2), "{injected:?}");

        let refused: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("Nakadi request failed; retrying"))
            .collect();
        assert_eq!(refused.len(), 3, "{stderr}");
        for (attempt, line) in refused.iter().enumerate() {
            assert!(
                line.contains(" WARN ")
                    && line.contains("Nakadi answered 503")
                    && line.contains(&format!("attempt={}", attempt + 1)),
                "{line}"
            );
        }
        let dropped: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("stream interrupted; resuming from the last delivered offset"))
            .collect();
        assert_eq!(dropped.len(), 2, "{stderr}");
        for line in &dropped {
            assert!(
                line.contains(" WARN ") && line.contains("partition="),
                "{line}"
            );
        }

        if json {
            let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(summary["retries"], 5, "{summary}");
            assert_eq!(summary["counts"]["events_read"], 1000, "{summary}");
        } else {
            let retries: Vec<&str> = stdout
                .lines()
                .filter(|l| l.trim_start().starts_with("retries "))
                .collect();
            assert_eq!(
                retries,
                [
                    "  retries                    5  Nakadi requests or streams repeated after a failure"
                ],
                "{stdout}"
            );
            assert!(
                stdout.contains("  events read            1,000  "),
                "{stdout}"
            );
        }
    }
}
