//! The exit codes README promises ("Exit codes"), one process per failure:
//! 1 for an unexpected failure, 2 for a usage or configuration error, 3 for a source that cannot be
//! read, 4 for an output that cannot be written (down or read-only), 5 for
//! a conflict (a busy subscription, a run another process committed first)
//! and 6 for events that cannot be
//! processed (an expired cursor, a recording that repeats events).

use std::process::Output;
use std::sync::atomic::Ordering;

use crate::nakadi::{EVENT_TYPE, append, live, read_through_subscription, subscription_id};
use crate::servers::{self, FaultyProxy};
use crate::support::{Workspace, article_stream};

const TOPIC: &str = "article-stock-changed";

/// `materializer run --topic <topic> --no-progress <args>` in `ws`, with `env`.
async fn run(ws: &Workspace, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = ws.command();
    command
        .args(["run", "--topic", TOPIC, "--no-progress"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    tokio::process::Command::from(command)
        .output()
        .await
        .unwrap()
}

/// The process ended with `code` and said `message` on stderr (0 and "":
/// it succeeded).
fn exited(case: &str, out: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{case}: {stderr}");
    assert!(stderr.contains(message), "{case}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_class_exits_with_its_code() {
    let ws = Workspace::new();
    let recorded = ["--source", "recorded/article-stock-changed"];

    // 1: an unexpected failure (a panic in the run, as a bug would make one).
    exited(
        "internal",
        &run(
            &ws,
            &[&recorded[..], &["--output", "out"]].concat(),
            &[("MATERIALIZER_FAILPOINT", "run".into())],
        )
        .await,
        1,
        "error: an unexpected failure (a bug: please report it with the lines above): \
         failpoint run: a panic, as a bug would make one",
    );
    assert!(!ws.path("out/article-stock-changed/_manifests").exists());

    // 2: usage (clap) and configuration.
    let mut usage = ws.command();
    usage.args(["run", "--no-such-flag"]);
    let usage = usage.output().unwrap();
    exited("usage", &usage, 2, "unexpected argument '--no-such-flag'");
    let mut unknown = ws.command();
    unknown.args(["run", "--topic", "no-such-topic", "--output", "out"]);
    unknown.args(recorded);
    exited(
        "unknown topic",
        &unknown.output().unwrap(),
        2,
        "no-such-topic",
    );

    // 3: nothing listens on port 9 of this machine.
    let down = run(
        &ws,
        &["--nakadi-url", "http://127.0.0.1:9", "--output", "out"],
        &[],
    )
    .await;
    exited(
        "Nakadi down",
        &down,
        3,
        "cannot connect to Nakadi at http://127.0.0.1:9",
    );

    // 4: an S3 endpoint nobody answers on, and a bucket that may only be read.
    let s3 = servers::s3();
    let bucket = s3.bucket("exit-codes");
    let output = format!("s3://{bucket}/exports");
    let mut env = s3.env();
    env.retain(|(k, _)| *k != "MATERIALIZER_S3_ENDPOINT");
    env.push(("MATERIALIZER_S3_MAX_RETRIES", "0".into()));
    let mut unreachable = env.clone();
    unreachable.push(("MATERIALIZER_S3_ENDPOINT", "http://127.0.0.1:9".into()));
    let args = [&recorded[..], &["--output", &output]].concat();
    exited(
        "S3 down",
        &run(&ws, &args, &unreachable).await,
        4,
        "Connection refused",
    );
    let proxy = FaultyProxy::start(&s3.endpoint).await;
    proxy.read_only.store(true, Ordering::Relaxed);
    let mut read_only = env.clone();
    read_only.push(("MATERIALIZER_S3_ENDPOINT", proxy.endpoint.clone()));
    exited(
        "S3 read-only",
        &run(&ws, &args, &read_only).await,
        4,
        "AccessDenied",
    );
    assert!(proxy.injected.load(Ordering::Relaxed) > 0);

    // 6: events missing between the committed run and what Nakadi holds.
    let lines = article_stream(400, 2, 3);
    let nakadi = live(&ws, None, &lines[..lines.len() / 2]).await;
    let from_nakadi = ["--nakadi-url", &nakadi.url, "--output", "expiring"];
    exited("first run", &run(&ws, &from_nakadi, &[]).await, 0, "");
    append(&nakadi, &lines[lines.len() / 2..]);
    let held = nakadi.bus.events_in(EVENT_TYPE, "0").unwrap().len() as u64;
    nakadi.bus.expire(EVENT_TYPE, "0", held).unwrap();
    exited(
        "expired cursor",
        &run(&ws, &from_nakadi, &[]).await,
        6,
        "cursor expired: partition 0",
    );
    // 6: a recording that repeats a batch.
    let repeated = Workspace::new();
    let mut lines = article_stream(100, 2, 1);
    lines.insert(1, lines[0].clone());
    repeated.record(TOPIC, &lines);
    exited(
        "repeated batch",
        &run(
            &repeated,
            &[&recorded[..], &["--output", "out"]].concat(),
            &[],
        )
        .await,
        6,
        "stream.jsonl:2:",
    );

    // 5: the subscription is held by another consumer the whole time.
    let busy = Workspace::new();
    read_through_subscription(&busy);
    let nakadi = live(&busy, None, &article_stream(100, 2, 9)).await;
    let from_nakadi = ["--nakadi-url", &nakadi.url, "--output", "out"];
    exited("first run", &run(&busy, &from_nakadi, &[]).await, 0, "");
    append(&nakadi, &article_stream(20, 2, 10));
    let id = subscription_id(&nakadi).await;
    let holder = reqwest::Client::new()
        .get(format!("{}/subscriptions/{id}/events", nakadi.url))
        .send()
        .await
        .unwrap();
    assert_eq!(holder.status(), 200);
    exited(
        "busy subscription",
        &run(&busy, &from_nakadi, &[("NAKADI_MAX_RETRIES", "1".into())]).await,
        5,
        "No free slots",
    );
    assert!(nakadi.bus.busy_refused.load(Ordering::Relaxed) >= 2);
    drop(holder);

    // 5: another process committed the run first. The first process waits
    // with its files written, before its manifest, while a second one runs
    // the same events to the end; then the first goes on and loses.
    let race = Workspace::new();
    let gate = race.path("gate");
    let mut waiting = gate.clone().into_os_string();
    waiting.push(".waiting");
    let mut held = race.command();
    held.args(["run", "--topic", TOPIC, "--no-progress", "--output", "out"])
        .args(recorded)
        .env("MATERIALIZER_FAILPOINT", "commit")
        .env("MATERIALIZER_FAILPOINT_GATE", &gate);
    let held = tokio::process::Command::from(held)
        .kill_on_drop(true)
        .output();
    let held = tokio::spawn(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::path::Path::new(&waiting).exists() {
        assert!(
            std::time::Instant::now() < deadline && !held.is_finished(),
            "the first run never reached its commit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let winner = run(&race, &[&recorded[..], &["--output", "out"]].concat(), &[]).await;
    exited("the race's winner", &winner, 0, "");
    std::fs::write(&gate, b"").unwrap();
    exited(
        "the race's loser",
        &held.await.unwrap().unwrap(),
        5,
        "run 1 of this topic was committed by another process first",
    );
}

/// 3 for a recording that exists but cannot be read (a file or a folder
/// this user may not read), with the path and the reason; nothing is
/// committed. Root reads anything: then the binary runs as nobody, from a copy
/// nobody may reach.
#[test]
fn a_recording_that_cannot_be_read_exits_3() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ws = Workspace::new();
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let binary = if root {
        mode(ws.dir.path(), 0o755);
        let binary = ws.path("materializer");
        if std::fs::hard_link(env!("CARGO_BIN_EXE_materializer"), &binary).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_materializer"), &binary).unwrap();
        }
        binary
    } else {
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_materializer"))
    };
    let output = ws.path("writable");
    std::fs::create_dir(&output).unwrap();
    mode(&output, 0o777);
    let folder = ws.path("recorded").join(TOPIC);
    let file = folder.join("stream.jsonl");
    let cases = [
        (
            "a file of the folder",
            "recorded/article-stock-changed",
            &file,
            "recorded/article-stock-changed/stream.jsonl",
        ),
        (
            "the file named",
            "recorded/article-stock-changed/stream.jsonl",
            &file,
            "recorded/article-stock-changed/stream.jsonl",
        ),
        (
            "the folder",
            "recorded/article-stock-changed",
            &folder,
            "recorded/article-stock-changed",
        ),
    ];
    for (case, source, locked, named) in cases {
        mode(locked, 0o000);
        let mut command = if root {
            let mut command = std::process::Command::new("setpriv");
            command
                .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(&binary);
            command
        } else {
            std::process::Command::new(&binary)
        };
        let out = command
            .current_dir(ws.dir.path())
            .env("RUST_LOG", "warn")
            .env_remove("MATERIALIZER_OUTPUT")
            .env_remove("NAKADI_URL")
            .args(["run", "--topic", TOPIC, "--no-progress", "--source", source])
            .args(["--output", "writable"])
            .output()
            .unwrap();
        mode(locked, if locked.is_dir() { 0o755 } else { 0o644 });
        exited(
            case,
            &out,
            3,
            &format!(
                "error: topic article-stock-changed: cannot read the source {named}: \
                 Permission denied (os error 13)\n"
            ),
        );
        // Nothing is committed: at most the run's plan is there, which
        // the next run follows.
        let written = crate::support::files_under(&output);
        assert!(
            written
                .iter()
                .all(|f| f.starts_with("article-stock-changed/_plans/")),
            "{case}: {written:?}"
        );
    }
}
