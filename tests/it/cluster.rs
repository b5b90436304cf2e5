//! Runs on a real Apache DataFusion Ballista cluster: a scheduler and two
//! executors, each its own process of the product's binary, an
//! S3-protocol server as the output location, and the Nakadi-compatible
//! server as the source. The cluster's files must hold the rows of a local
//! run of the same events, and the events themselves.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use materializer_core::sink::OutputLocation;

use std::collections::HashMap;

use crate::nakadi::{live, live_with_partitions};
use crate::servers::{announced_port, s3, spawn_tied};
use crate::support::{Committed, Workspace, article_stream, committed, run_files};

const TOPIC: &str = "article-stock-changed";

/// A scheduler and its executors, killed with the test.
struct Cluster {
    scheduler: Child,
    executors: Vec<Child>,
    port: u16,
    logs: Vec<std::path::PathBuf>,
}

impl Cluster {
    /// A scheduler on a free port and `executors` executors of one task
    /// each, with their own work folders, writing to the S3 server.
    fn start(ws: &Workspace, executors: usize) -> Cluster {
        Cluster::start_with(ws, executors, |_| String::new())
    }

    /// The work folder of executor `n`.
    fn work_dir(ws: &Workspace, n: usize) -> std::path::PathBuf {
        ws.path(&format!("executor-{n}"))
    }

    /// As [`Cluster::start`], with `env(n)` in executor `n`'s environment
    /// (`NAME=value ...`).
    fn start_with(ws: &Workspace, executors: usize, env: impl Fn(usize) -> String) -> Cluster {
        let binary = env!("CARGO_BIN_EXE_materializer");
        let log = ws.path("scheduler.log");
        let mut scheduler = spawn_tied(
            &format!(
                "RUST_LOG=info exec {binary} cluster scheduler --bind-host 127.0.0.1 --bind-port 0 \
                 --external-host 127.0.0.1 --executor-timeout-seconds 10 \
                 --expire-dead-executor-interval-seconds 2"
            ),
            &log,
        );
        let port = announced_port(
            &mut scheduler,
            &log,
            "scheduler listening on 127.0.0.1:",
            "materializer cluster scheduler",
        );
        let mut logs = vec![log];
        let s3_env: String = s3()
            .env()
            .into_iter()
            .map(|(name, value)| format!("{name}={value} "))
            .collect();
        let executors = (0..executors)
            .map(|n| {
                let log = ws.path(&format!("executor-{n}.log"));
                let work = Cluster::work_dir(ws, n);
                let mut executor = spawn_tied(
                    &format!(
                        "{s3_env} {} RUST_LOG=info exec {binary} cluster executor \
                         --scheduler-host 127.0.0.1 --scheduler-port {port} \
                         --bind-host 127.0.0.1 --external-host 127.0.0.1 --bind-port 0 \
                         --bind-grpc-port 0 --work-dir {} --vcores 1 \
                         --heartbeat-interval-seconds 2",
                        env(n),
                        work.display()
                    ),
                    &log,
                );
                announced_port(
                    &mut executor,
                    &log,
                    "executor listening on flight port ",
                    "materializer cluster executor",
                );
                logs.push(log);
                executor
            })
            .collect();
        let cluster = Cluster {
            scheduler,
            executors,
            port,
            logs,
        };
        cluster.wait_for_executors();
        cluster
    }

    fn address(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }

    /// Waits until the scheduler has seen every executor register.
    fn wait_for_executors(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The scheduler's log comes first.
            let text = std::fs::read_to_string(&self.logs[0]).unwrap_or_default();
            let registered = text.matches("Received register executor request").count();
            if registered >= self.executors.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} executors registered within a minute; the logs:\n{}",
                registered,
                self.executors.len(),
                self.logs_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs_text(&self) -> String {
        self.logs
            .iter()
            .map(|log| {
                format!(
                    "--- {}\n{}",
                    log.display(),
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Kills (SIGKILL) the server a wrapper of [`spawn_tied`] started: the
/// wrapper's children. The wrapper then ends by itself.
fn kill_server(wrapper: &mut Child) -> bool {
    let killed = std::process::Command::new("pkill")
        .args(["-9", "-P", &wrapper.id().to_string()])
        .status()
        .is_ok_and(|status| status.success());
    let _ = wrapper.wait();
    killed
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for wrapper in self.executors.iter_mut().chain([&mut self.scheduler]) {
            kill_server(wrapper);
        }
    }
}

/// Makes the topic keep every event (no compaction).
fn keep_every_event(ws: &Workspace) {
    let path = ws.sql().join(TOPIC).join("topic.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let toml = toml.replacen("[output]", "compact = false\n\n[output]", 1);
    std::fs::write(&path, toml).unwrap();
}

fn location(bucket: &str, prefix: &str) -> OutputLocation {
    OutputLocation::parse(&format!("s3://{bucket}/{prefix}"), &s3().settings()).unwrap()
}

/// `materializer run` of the topic from the live server to `s3://bucket/prefix`,
/// on `cluster` when given.
fn run_binary(
    ws: &Workspace,
    nakadi: &str,
    bucket: &str,
    prefix: &str,
    cluster: Option<&str>,
) -> std::process::Output {
    run_binary_with(ws, nakadi, bucket, prefix, cluster, &[])
}

/// As [`run_binary`], with `env` set too.
fn run_binary_with(
    ws: &Workspace,
    nakadi: &str,
    bucket: &str,
    prefix: &str,
    cluster: Option<&str>,
    env: &[(&str, &str)],
) -> std::process::Output {
    let output = format!("s3://{bucket}/{prefix}");
    let mut args = vec![
        "run",
        "--topic",
        TOPIC,
        "--nakadi-url",
        nakadi,
        "--output",
        &output,
    ];
    if let Some(address) = cluster {
        args.extend(["--cluster", address]);
    }
    ws.command()
        .envs(s3().env())
        .env_remove("MATERIALIZER_OUTPUT")
        .envs(env.iter().copied())
        .args(&args)
        .output()
        .unwrap()
}

/// `materializer run` on `cluster` as a child process, its output piped.
fn spawn_run(ws: &Workspace, nakadi: &str, bucket: &str, cluster: &str) -> Child {
    let output = format!("s3://{bucket}/cluster");
    ws.command()
        .envs(s3().env())
        .env_remove("MATERIALIZER_OUTPUT")
        .args(["run", "--topic", TOPIC, "--nakadi-url", nakadi])
        .args(["--output", &output, "--cluster", cluster])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Executors that hold each task at its start until `gate(n)` exists.
fn holding_tasks(gate: impl Fn(usize) -> std::path::PathBuf) -> impl Fn(usize) -> String {
    move |n| {
        format!(
            "MATERIALIZER_FAILPOINT=partition-task MATERIALIZER_FAILPOINT_GATE={}",
            gate(n).display()
        )
    }
}

/// The first of `gates` that a held task waits at.
fn first_held(cluster: &Cluster, gates: &[std::path::PathBuf]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let held = gates.iter().position(|gate| {
            let mut waiting = gate.clone().into_os_string();
            waiting.push(".waiting");
            Path::new(&waiting).exists()
        });
        if let Some(n) = held {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no task started:\n{}",
            cluster.logs_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether no run of the topic is committed under `s3://bucket/prefix`.
async fn nothing_committed(bucket: &str, prefix: &str) -> bool {
    committed(&location(bucket, prefix), TOPIC)
        .await
        .sequences
        .is_empty()
}

fn assert_ok(output: &std::process::Output, what: &str, cluster: Option<&Cluster>) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        cluster.map(Cluster::logs_text).unwrap_or_default()
    );
}

/// The (eid, article_id, version, available_qty) of every event in `lines`,
/// read from the JSON as it is: what MAIN of a topic that keeps every event
/// holds, one row per event.
fn events_of(lines: &[String]) -> Vec<(String, String, String, String)> {
    let mut events = Vec::new();
    for line in lines {
        let batch: serde_json::Value = serde_json::from_str(line).unwrap();
        for event in batch["events"].as_array().into_iter().flatten() {
            events.push((
                event["metadata"]["eid"].as_str().unwrap().to_string(),
                event["article_id"].to_string(),
                event["version"].to_string(),
                event["available_qty"].to_string(),
            ));
        }
    }
    events.sort();
    events
}

fn main_events(committed: &Committed) -> Vec<(String, String, String, String)> {
    // article_id, brand, model, version, available_qty, occurred_at, eid
    let mut rows: Vec<_> = committed
        .main
        .iter()
        .map(|row| {
            let text = |i: usize| row[i].as_deref().unwrap_or("").to_string();
            (text(6), text(0), text(3), text(4))
        })
        .collect();
    rows.sort();
    rows
}

/// Two runs of a topic that keeps every event, on the cluster and locally:
/// the same rows, every event once; the second run reads only what came
/// after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_run_writes_the_rows_of_a_local_run() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let first = article_stream(3_000, 4, 11);
    let nakadi = live(&ws, None, &first).await;
    let bucket = s3().bucket("cluster");
    let cluster = Cluster::start(&ws, 2);

    let on_cluster = run_binary(
        &ws,
        &nakadi.url,
        &bucket,
        "cluster",
        Some(&cluster.address()),
    );
    assert_ok(&on_cluster, "the cluster run", Some(&cluster));
    // The summary names the Ballista job, as the scheduler knows it.
    let summary = String::from_utf8_lossy(&on_cluster.stdout);
    let job = summary
        .lines()
        .find_map(|line| line.trim().strip_prefix("cluster job"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cluster job in the summary:\n{summary}"))
        .to_string();
    let scheduler = std::fs::read_to_string(ws.path("scheduler.log")).unwrap();
    assert!(
        scheduler.contains(&job),
        "job {job} is not in the scheduler's log"
    );
    let local = run_binary(&ws, &nakadi.url, &bucket, "local", None);
    assert_ok(&local, "the local run", None);

    let more = article_stream(2_000, 4, 12);
    nakadi
        .bus
        .append_recording(
            crate::nakadi::EVENT_TYPE,
            (more.join("\n") + "\n").as_bytes(),
        )
        .unwrap();
    let output_url = format!("s3://{bucket}/cluster");
    let on_cluster = ws
        .command()
        .envs(s3().env())
        .env_remove("MATERIALIZER_OUTPUT")
        .args([
            "run",
            "--topic",
            TOPIC,
            "--nakadi-url",
            &nakadi.url,
            "--json",
        ])
        .args(["--output", &output_url, "--cluster", &cluster.address()])
        .output()
        .unwrap();
    assert_ok(&on_cluster, "the second cluster run", Some(&cluster));
    // With --json the summary names the job as `workers_job`: another one.
    let summary: serde_json::Value = serde_json::from_slice(&on_cluster.stdout).unwrap();
    let second = summary["workers_job"]
        .as_str()
        .unwrap_or_else(|| panic!("no workers_job in {summary}"));
    assert_ne!(second, job.as_str());
    let scheduler = std::fs::read_to_string(ws.path("scheduler.log")).unwrap();
    assert!(
        scheduler.contains(second),
        "job {second} is not in the scheduler's log"
    );
    let local = run_binary(&ws, &nakadi.url, &bucket, "local", None);
    assert_ok(&local, "the second local run", None);

    let on_cluster = committed(&location(&bucket, "cluster"), TOPIC).await;
    let local = committed(&location(&bucket, "local"), TOPIC).await;
    assert_eq!(on_cluster.sequences, vec![1, 2]);
    assert_eq!(
        on_cluster, local,
        "the cluster's rows are not the local run's"
    );
    let all: Vec<String> = first.iter().chain(&more).cloned().collect();
    assert_eq!(main_events(&on_cluster), events_of(&all));
}

/// A scheduler nobody listens at: exit 3 within seconds, naming the
/// address; nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_scheduler_fails_the_run_at_once() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let nakadi = live(&ws, None, &article_stream(200, 2, 3)).await;
    let bucket = s3().bucket("cluster-down");
    // An address reserved for documentation (TEST-NET-1): nothing answers.
    let address = "df://192.0.2.1:50050".to_string();
    let started = Instant::now();
    let output = run_binary(&ws, &nakadi.url, &bucket, "down", Some(&address));
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
    assert!(seconds < 30.0, "took {seconds:.1} s: {stderr}");
    assert!(nothing_committed(&bucket, "down").await);
}

/// The stream lines of run `n` of `runs` alone (offsets going on from the
/// runs before).
fn lines_of_run(runs: &[Vec<crate::model::Event>], n: usize) -> Vec<String> {
    let before = match n {
        0 => 0,
        n => crate::model::recording(runs, n - 1).len(),
    };
    crate::model::recording(runs, n).split_off(before)
}

/// Appends `lines` to the live server's event type.
fn publish(nakadi: &crate::nakadi::Live, lines: &[String]) {
    nakadi
        .bus
        .append_recording(
            crate::nakadi::EVENT_TYPE,
            (lines.join("\n") + "\n").as_bytes(),
        )
        .unwrap();
}

/// A compacting topic whose keys' versions arrive on any partition (and a
/// partition `10`, which sorts after `2`, among empty ones), over three
/// runs on the cluster: every run's MAIN, CORRECTION, OLDER and KEYS rows
/// are what the model of the rules computes from the events, and what a
/// local run of the same events writes; the key state goes from run to run
/// on the cluster. The executors decide in many passes per bucket and keep
/// the classes on disk (test settings), the local runs do neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacting_topic_decides_every_key_across_partitions_on_the_cluster() {
    let ws = Workspace::new();
    let runs = crate::model::generate(3, 40, 29);
    let nakadi = live_with_partitions(&ws, None, &lines_of_run(&runs, 0), 11).await;
    let bucket = s3().bucket("cluster-compacting");
    // The executors decide each bucket in passes of a few keys and keep
    // the classes on disk, as they would for a run of many events.
    let cluster = Cluster::start_with(&ws, 2, |_| {
        "MATERIALIZER_PASS_ROWS=4 MATERIALIZER_CLASS_BYTES=1".to_string()
    });
    let mut committed_versions = HashMap::new();
    for n in 0..runs.len() {
        if n > 0 {
            publish(&nakadi, &lines_of_run(&runs, n));
        }
        let expected = crate::model::model(&runs[n], &mut committed_versions);
        assert!(!expected.correction.is_empty() && !expected.older.is_empty());
        let on_cluster = run_binary(
            &ws,
            &nakadi.url,
            &bucket,
            "cluster",
            Some(&cluster.address()),
        );
        assert_ok(&on_cluster, "the cluster run", Some(&cluster));
        let local = run_binary(&ws, &nakadi.url, &bucket, "local", None);
        assert_ok(&local, "the local run", None);

        let files = run_files(&location(&bucket, "cluster"), TOPIC).await;
        assert_eq!(files.len(), n + 1, "run {n}");
        let got = crate::model::written(&files[n].files);
        assert_eq!(got, expected, "run {n} on the cluster");
        let local = run_files(&location(&bucket, "local"), TOPIC).await;
        assert_eq!(
            crate::model::written(&local[n].files),
            got,
            "run {n}: local"
        );
    }
    // The key state the cluster left: each article's newest version, as
    // the model has it, and the local run's state.
    let newest = |rows: Vec<(i64, i64)>| {
        let mut newest: HashMap<i64, i64> = HashMap::new();
        for (article, version) in rows {
            let top = newest.entry(article).or_insert(version);
            *top = (*top).max(version);
        }
        newest
    };
    let cluster_state = crate::state::state_rows(&location(&bucket, "cluster")).await;
    let local_state = crate::state::state_rows(&location(&bucket, "local")).await;
    assert_eq!(newest(cluster_state.clone()), committed_versions);
    assert_eq!(cluster_state, local_state);
}

/// A compacting topic with deletes and with events that do not decode (one
/// partition holds nothing else), over two runs: the cluster writes what a
/// local run writes, every kind of file and the rejected events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_rejected_events_on_the_cluster_are_a_local_runs() {
    let ws = Workspace::new();
    let path = ws.sql().join(TOPIC).join("topic.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let toml = toml.replacen(
        "ordering_key = \"version\"",
        "ordering_key = \"version\"\ndelete_when = \"available_qty < 150\"",
        1,
    );
    std::fs::write(&path, toml).unwrap();
    let runs = crate::model::generate(2, 30, 7);
    // Partition 5 holds only events that do not decode.
    let bad = |offset: u64, eid: u64| {
        format!(
            r#"{{"cursor":{{"partition":"5","offset":"001-0001-{offset:018}"}},"events":[{{"metadata":{{"eid":"00000000-0000-4000-8000-{eid:012x}","occurred_at":"2024-06-03T08:00:00.000Z","event_type":"article.stock-changed","partition":"5"}},"article_id":1001,"brand":"Nike","model":"M","version":"seven","available_qty":3}}]}}"#
        )
    };
    let mut first = lines_of_run(&runs, 0);
    first.push(bad(0, 900_001));
    let nakadi = live_with_partitions(&ws, None, &first, 11).await;
    let bucket = s3().bucket("cluster-deletes");
    let cluster = Cluster::start(&ws, 2);
    for n in 0..runs.len() {
        if n > 0 {
            let mut lines = lines_of_run(&runs, n);
            lines.push(bad(n as u64, 900_001 + n as u64));
            publish(&nakadi, &lines);
        }
        let on_cluster = run_binary(
            &ws,
            &nakadi.url,
            &bucket,
            "cluster",
            Some(&cluster.address()),
        );
        assert_ok(&on_cluster, "the cluster run", Some(&cluster));
        let local = run_binary(&ws, &nakadi.url, &bucket, "local", None);
        assert_ok(&local, "the local run", None);
    }
    let on_cluster = committed(&location(&bucket, "cluster"), TOPIC).await;
    let local = committed(&location(&bucket, "local"), TOPIC).await;
    assert_eq!(on_cluster.sequences, vec![1, 2]);
    assert_eq!(on_cluster.rejected.len(), 2, "{:?}", on_cluster.rejected);
    // Some keys end: KEYS rows with deleted = true.
    assert!(
        on_cluster
            .keys
            .iter()
            .any(|row| row.iter().any(|f| f.as_deref() == Some("true"))),
        "no delete in {:?}",
        on_cluster.keys
    );
    assert_eq!(
        on_cluster, local,
        "the cluster's files are not the local run's"
    );
}

/// What a cluster does not run is refused with exit 2 and a reason, before
/// the cluster is asked (its address answers nothing here) and without a
/// commit: a Nakadi subscription, a recording, and a key state that is
/// still the single file of an earlier release, which a local run then
/// splits into buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_cluster_does_not_run_is_refused() {
    let nowhere = "df://127.0.0.1:9";
    let ws = Workspace::new();
    let first = article_stream(300, 2, 5);
    let nakadi = live(&ws, None, &first).await;
    let bucket = s3().bucket("cluster-refused");
    assert_ok(
        &run_binary(&ws, &nakadi.url, &bucket, "single", None),
        "the local run",
        None,
    );
    crate::state::as_single_file_state(&location(&bucket, "single")).await;
    publish(&nakadi, &article_stream(300, 2, 6));
    let refused = run_binary(&ws, &nakadi.url, &bucket, "single", Some(nowhere));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("one file") && stderr.contains("without --cluster"),
        "{stderr}"
    );
    let single = location(&bucket, "single");
    assert_eq!(committed(&single, TOPIC).await.sequences, vec![1]);
    assert_ok(
        &run_binary(&ws, &nakadi.url, &bucket, "single", None),
        "the local run after the refusal",
        None,
    );
    assert_eq!(committed(&single, TOPIC).await.sequences, vec![1, 2]);

    // A recording.
    let recording = ws.path("recorded.ndjson");
    std::fs::write(&recording, first.join("\n") + "\n").unwrap();
    let recorded = ws
        .command()
        .envs(s3().env())
        .env_remove("MATERIALIZER_OUTPUT")
        .env_remove("NAKADI_URL")
        .args(["run", "--topic", TOPIC, "--output"])
        .arg(format!("s3://{bucket}/recorded"))
        .arg("--source")
        .arg(&recording)
        .args(["--cluster", nowhere])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&recorded.stderr);
    assert_eq!(recorded.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("recorded batches"), "{stderr}");
    assert!(nothing_committed(&bucket, "recorded").await);

    crate::nakadi::read_through_subscription(&ws);
    let subscribed = run_binary(&ws, &nakadi.url, &bucket, "subscribed", Some(nowhere));
    let stderr = String::from_utf8_lossy(&subscribed.stderr);
    assert_eq!(subscribed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("subscription"), "{stderr}");
    assert!(nothing_committed(&bucket, "subscribed").await);
}

/// A mapping that fails on the events fails the cluster run as it fails a
/// local one: exit 6, the engine's message, nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_failing_on_an_executor_fails_the_run_with_its_message() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let mapping = ws.sql().join(TOPIC).join("mapping.sql");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        text.replacen("    brand,", "    cast(brand AS INT) AS brand,", 1),
    )
    .unwrap();
    let nakadi = live(&ws, None, &article_stream(300, 2, 5)).await;
    let bucket = s3().bucket("cluster-query");
    let cluster = Cluster::start(&ws, 2);
    let output = run_binary(
        &ws,
        &nakadi.url,
        &bucket,
        "cluster",
        Some(&cluster.address()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(6),
        "{stderr}\n{}",
        cluster.logs_text()
    );
    let local = run_binary(&ws, &nakadi.url, &bucket, "local", None);
    assert_eq!(local.status.code(), Some(6));
    // The engine's own explanation, as a local run gives it: the file, line
    // and column of the expression, the view, and the event it fails on
    // (which brand fails first depends on the partition).
    let local = String::from_utf8_lossy(&local.stderr);
    let explanation = |text: &str| text.split(" string '").next().unwrap_or("").to_string();
    assert_eq!(explanation(&stderr), explanation(&local), "{stderr}");
    for needle in [
        "error: topic article-stock-changed: sql/article-stock-changed/mapping.sql:",
        "Cannot cast",
        "the first event it fails on: partition ",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("[materializer-failure:"),
        "the marker leaked:\n{stderr}"
    );
    assert!(nothing_committed(&bucket, "cluster").await);
}

/// Runs the topic to `s3://bucket/cluster` on a cluster of two executors
/// whose tasks wait at the hold point `point`; kills (SIGKILL) the first
/// executor to wait there and lets the other go on. A run that fails must
/// say so and commit nothing, and the next run must then succeed. Gives
/// the (first) run's stderr.
async fn run_killing_an_executor(
    ws: &Workspace,
    nakadi: &str,
    bucket: &str,
    point: &str,
) -> String {
    let gates: Vec<_> = (0..2).map(|n| ws.path(&format!("gate-{n}"))).collect();
    let mut cluster = Cluster::start_with(ws, 2, |n| {
        format!(
            "MATERIALIZER_FAILPOINT={point} MATERIALIZER_FAILPOINT_GATE={}",
            gates[n].display()
        )
    });
    let address = cluster.address();
    let run = spawn_run(ws, nakadi, bucket, &address);
    let victim = first_held(&cluster, &gates);
    assert!(
        kill_server(&mut cluster.executors[victim]),
        "executor {victim} was not found to kill"
    );
    // The other executor runs its tasks, and those of the dead one.
    std::fs::write(&gates[1 - victim], b"").unwrap();
    let finished = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&finished.stderr).to_string();
    let outcome = if finished.status.success() {
        "committed"
    } else {
        "failed"
    };
    eprintln!("the run with executor {victim} killed at {point}: {outcome}\n{stderr}");
    if !finished.status.success() {
        // Failed: clearly, and without a trace in the committed runs.
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(nothing_committed(bucket, "cluster").await, "{stderr}");
        let again = run_binary(ws, nakadi, bucket, "cluster", Some(&address));
        assert_ok(&again, "the run after the failed one", Some(&cluster));
    }
    stderr
}

/// An executor killed (SIGKILL) while it holds a task: the run completes
/// on the other executor with every row once, or fails and commits
/// nothing, and the next run is then exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_run_loses_and_duplicates_nothing() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let lines = article_stream(3_000, 4, 21);
    let nakadi = live(&ws, None, &lines).await;
    let bucket = s3().bucket("cluster-kill");
    let stderr = run_killing_an_executor(&ws, &nakadi.url, &bucket, "partition-task").await;
    let on_cluster = location(&bucket, "cluster");
    let result = committed(&on_cluster, TOPIC).await;
    assert_eq!(result.sequences, vec![1], "{stderr}");
    assert_eq!(main_events(&result), events_of(&lines), "{stderr}");
}

/// A compacting topic's executor killed (SIGKILL) while it decides a key
/// bucket, after both executors have read partitions (the shuffle files of
/// the dead one are lost with it): the run completes with the rows the
/// model of the rules computes, or fails and commits nothing, and the next
/// run is then exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_while_it_decides_a_bucket_loses_nothing() {
    let ws = Workspace::new();
    let runs = crate::model::generate(1, 60, 41);
    let expected = crate::model::model(&runs[0], &mut HashMap::new());
    let nakadi = live_with_partitions(&ws, None, &lines_of_run(&runs, 0), 11).await;
    let bucket = s3().bucket("cluster-kill-decide");
    let stderr = run_killing_an_executor(&ws, &nakadi.url, &bucket, "bucket-task").await;
    let on_cluster = location(&bucket, "cluster");
    let files = run_files(&on_cluster, TOPIC).await;
    assert_eq!(files.len(), 1, "{stderr}");
    assert_eq!(crate::model::written(&files[0].files), expected, "{stderr}");
}

/// The driver killed (SIGKILL) while the executors hold its tasks: nothing
/// is committed, and the next run, whose tasks write the same files again,
/// holds every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_killed_mid_run_commits_nothing_and_the_rerun_is_exact() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let lines = article_stream(2_000, 4, 31);
    let nakadi = live(&ws, None, &lines).await;
    let bucket = s3().bucket("cluster-driver");
    let gate = ws.path("gate");
    let cluster = Cluster::start_with(&ws, 2, holding_tasks(|_| gate.clone()));
    let address = cluster.address();
    let mut driver = spawn_run(&ws, &nakadi.url, &bucket, &address);
    first_held(&cluster, std::slice::from_ref(&gate));
    driver.kill().unwrap();
    driver.wait().unwrap();
    // The orphaned tasks go on and write their files: none is committed.
    std::fs::write(&gate, b"").unwrap();
    let on_cluster = location(&bucket, "cluster");
    let orphans = main_files_when_all_written(&on_cluster, 4, &cluster).await;
    assert!(committed(&on_cluster, TOPIC).await.sequences.is_empty());

    let again = run_binary(&ws, &nakadi.url, &bucket, "cluster", Some(&address));
    assert_ok(&again, "the run after the killed driver", Some(&cluster));
    let result = committed(&on_cluster, TOPIC).await;
    assert_eq!(result.sequences, vec![1]);
    assert_eq!(main_events(&result), events_of(&lines));
    // The rerun's tasks wrote the orphans' files again, byte for byte.
    let committed_files = main_files_when_all_written(&on_cluster, 4, &cluster).await;
    assert_eq!(committed_files, orphans);
}

/// The MAIN data files under the output location, path and SHA-256 of
/// their bytes, once there are `count` of them (within two minutes).
async fn main_files_when_all_written(
    output: &OutputLocation,
    count: usize,
    cluster: &Cluster,
) -> std::collections::BTreeMap<String, String> {
    use object_store::ObjectStoreExt;
    use sha2::Digest;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let main: Vec<_> = listed(output)
            .await
            .into_iter()
            .filter(|meta| {
                meta.location
                    .filename()
                    .is_some_and(|name| name.starts_with("main-") && name.ends_with(".csv"))
            })
            .collect();
        if main.len() >= count {
            let mut files = std::collections::BTreeMap::new();
            for meta in main {
                let bytes = output
                    .store
                    .get(&meta.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let digest = hex::encode(sha2::Sha256::digest(&bytes));
                files.insert(meta.location.to_string(), digest);
            }
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} MAIN files written:\n{}",
            main.len(),
            cluster.logs_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Local runs and cluster runs take turns on one topic and one output:
/// each goes on where the other committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_cluster_runs_take_turns_on_one_topic() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let batches: Vec<Vec<String>> = (0..3).map(|n| article_stream(800, 3, 40 + n)).collect();
    let nakadi = live(&ws, None, &batches[0]).await;
    let bucket = s3().bucket("cluster-turns");
    let cluster = Cluster::start(&ws, 2);
    let address = cluster.address();
    let turns = [Some(address.as_str()), None, Some(address.as_str())];
    for (n, on) in turns.into_iter().enumerate() {
        if n > 0 {
            let text = batches[n].join("\n") + "\n";
            nakadi
                .bus
                .append_recording(crate::nakadi::EVENT_TYPE, text.as_bytes())
                .unwrap();
        }
        let run = run_binary(&ws, &nakadi.url, &bucket, "turns", on);
        assert_ok(&run, &format!("run {} ({on:?})", n + 1), Some(&cluster));
    }
    let result = committed(&location(&bucket, "turns"), TOPIC).await;
    assert_eq!(result.sequences, vec![1, 2, 3]);
    let all: Vec<String> = batches.concat();
    assert_eq!(main_events(&result), events_of(&all));
}

/// Each executor reads Nakadi with a token of its own: executors without
/// one are refused although the driver has one (the plan carries none),
/// executors with one read; no log of any process shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_read_nakadi_with_their_own_token() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let token = "cluster-token-5e1f0c";
    let lines = article_stream(400, 2, 9);
    let nakadi = live(&ws, Some(token), &lines).await;
    let bucket = s3().bucket("cluster-token");
    let driver_env = [("NAKADI_TOKEN", token), ("RUST_LOG", "debug")];

    let without = Cluster::start(&ws, 1);
    let refused = run_binary_with(
        &ws,
        &nakadi.url,
        &bucket,
        "cluster",
        Some(&without.address()),
        &driver_env,
    );
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(nothing_committed(&bucket, "cluster").await);
    drop(without);

    let with = Cluster::start_with(&ws, 2, |_| format!("NAKADI_TOKEN={token}"));
    let run = run_binary_with(
        &ws,
        &nakadi.url,
        &bucket,
        "cluster",
        Some(&with.address()),
        &driver_env,
    );
    assert_ok(&run, "the run with tokens on the executors", Some(&with));
    let result = committed(&location(&bucket, "cluster"), TOPIC).await;
    assert_eq!(main_events(&result), events_of(&lines));
    let logs = format!(
        "{stderr}{}{}{}",
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&run.stdout),
        with.logs_text()
    );
    assert!(!logs.contains(token), "the token is in a log:\n{logs}");
}

/// `serve --cluster` runs the topics it is asked to run on the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_topics_on_its_cluster() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let lines = article_stream(600, 3, 13);
    let nakadi = live(&ws, None, &lines).await;
    let bucket = s3().bucket("cluster-serve");
    let cluster = Cluster::start(&ws, 2);
    output_to(&ws, &bucket, "serve");
    let server = serve_on(&ws, &nakadi.url, &cluster).await;
    run_through(&server, &cluster).await;
    assert!(
        server.logged().contains("partitions handed to the workers"),
        "{}",
        server.logged()
    );
    let result = committed(&location(&bucket, "serve"), TOPIC).await;
    assert_eq!(main_events(&result), events_of(&lines));
}

/// Points the topic's output at `s3://bucket/prefix` (serve's own --output
/// is the harness's).
fn output_to(ws: &Workspace, bucket: &str, prefix: &str) {
    let settings = ws.sql().join(TOPIC).join("topic.toml");
    let toml = std::fs::read_to_string(&settings).unwrap();
    let toml = toml.replacen(
        "[output]",
        &format!("[output]\nlocation = \"s3://{bucket}/{prefix}\""),
        1,
    );
    std::fs::write(&settings, toml).unwrap();
}

/// `serve` of the topic from the live server at `nakadi`, its runs on
/// `cluster` (the API token is `t`).
async fn serve_on(ws: &Workspace, nakadi: &str, cluster: &Cluster) -> crate::support::Serve {
    let address = cluster.address();
    let env: Vec<(&str, String)> = s3().env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::support::Serve::start_with(
        ws,
        &["t"],
        &["--nakadi-url", nakadi, "--cluster", &address],
        &env,
    )
    .await
}

/// A run of the topic started on `server`, once it ended: it must have
/// succeeded. Gives its view.
async fn run_through(server: &crate::support::Serve, cluster: &Cluster) -> serde_json::Value {
    let id = crate::cli::start_run(server, TOPIC).await;
    let mut views = crate::cli::poll_runs(server, &[&id], "the run on the cluster", |views| {
        !views[0]["finished_at"].is_null()
    })
    .await;
    assert_eq!(
        views[0]["state"],
        "succeeded",
        "{views:?}\n{}",
        cluster.logs_text()
    );
    views.remove(0)
}

/// Every object under `output`.
async fn listed(output: &OutputLocation) -> Vec<object_store::ObjectMeta> {
    use futures::TryStreamExt;
    output
        .store
        .list(Some(&output.prefix))
        .try_collect()
        .await
        .unwrap()
}

/// The objects under `output` whose path holds `part`.
async fn objects_named(output: &OutputLocation, part: &str) -> Vec<String> {
    listed(output)
        .await
        .into_iter()
        .map(|meta| meta.location.to_string())
        .filter(|path| path.contains(part))
        .collect()
}

/// Waits (two minutes at most) until `what` is in the scheduler's log.
fn scheduler_logs(cluster: &Cluster, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&cluster.logs[0])
        .unwrap_or_default()
        .contains(what)
    {
        assert!(
            Instant::now() < deadline,
            "the scheduler never logged {what:?}:\n{}",
            cluster.logs_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A compacting run on the cluster shows its progress while its job runs:
/// the cluster's job, and every event its keys step read while the
/// executors hold the decide tasks. Stopped then, the run ends stopped,
/// its job is cancelled on the cluster, nothing is committed and no
/// progress object is left; the next run is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_run_shows_its_progress_and_a_stop_cancels_its_job() {
    let ws = Workspace::new();
    let runs = crate::model::generate(1, 50, 53);
    let expected = crate::model::model(&runs[0], &mut HashMap::new());
    let lines = lines_of_run(&runs, 0);
    let batches: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let events: usize = batches
        .iter()
        .map(|batch| batch["events"].as_array().map_or(0, Vec::len))
        .sum();
    let partitions: std::collections::BTreeSet<&str> = batches
        .iter()
        .filter(|batch| batch["events"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|batch| batch["cursor"]["partition"].as_str().unwrap())
        .collect();
    let nakadi = live_with_partitions(&ws, None, &lines, 11).await;
    let bucket = s3().bucket("cluster-progress");
    output_to(&ws, &bucket, "serve");
    let gate = ws.path("gate");
    let cluster = Cluster::start_with(&ws, 2, |_| {
        format!(
            "MATERIALIZER_FAILPOINT=bucket-task MATERIALIZER_FAILPOINT_GATE={}",
            gate.display()
        )
    });
    let server = serve_on(&ws, &nakadi.url, &cluster).await;
    let id = crate::cli::start_run(&server, TOPIC).await;
    let views = crate::cli::poll_runs(&server, &[&id], "the keys step's progress", |views| {
        views[0]["progress"]["events_read"] == events
            && views[0]["progress"]["workers_job"].is_string()
    })
    .await;
    let progress = &views[0]["progress"];
    assert_eq!(views[0]["state"], "running", "{views:?}");
    assert_eq!(progress["partitions_total"], partitions.len(), "{progress}");
    assert_eq!(progress["files_written"], 0, "{progress}");
    let job = progress["workers_job"].as_str().unwrap().to_string();
    // The job is the scheduler's; every keys task has ended once a decide
    // task waits.
    scheduler_logs(&cluster, &job);
    first_held(&cluster, std::slice::from_ref(&gate));

    let (status, view) = server
        .call(reqwest::Method::POST, &format!("/runs/{id}/stop"), "t")
        .await;
    assert_eq!(status, 202, "{view}");
    let views = crate::cli::poll_runs(&server, &[&id], "the stop", |views| {
        !views[0]["finished_at"].is_null()
    })
    .await;
    assert_eq!(views[0]["state"], "stopped", "{views:?}");
    scheduler_logs(&cluster, &format!("Job cancelled: [{job}]"));
    let output = location(&bucket, "serve");
    assert!(nothing_committed(&bucket, "serve").await);
    assert_eq!(
        objects_named(&output, "/_progress/").await,
        Vec::<String>::new()
    );

    std::fs::write(&gate, b"").unwrap();
    let view = run_through(&server, &cluster).await;
    assert_eq!(view["progress"]["events_read"], events);
    let files = run_files(&output, TOPIC).await;
    assert_eq!(files.len(), 1);
    assert_eq!(crate::model::written(&files[0].files), expected);
    assert_eq!(
        objects_named(&output, "/_progress/").await,
        Vec::<String>::new()
    );
}

/// `materializer run --cluster` interrupted (SIGINT, as Ctrl-C) while the
/// executors hold its decide tasks: it cancels its job on the cluster and
/// exits stopped (130), with nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_cluster_run_cancels_its_job() {
    let ws = Workspace::new();
    let runs = crate::model::generate(1, 20, 59);
    let nakadi = live_with_partitions(&ws, None, &lines_of_run(&runs, 0), 11).await;
    let bucket = s3().bucket("cluster-interrupted");
    let gate = ws.path("gate");
    let cluster = Cluster::start_with(&ws, 1, |_| {
        format!(
            "MATERIALIZER_FAILPOINT=bucket-task MATERIALIZER_FAILPOINT_GATE={}",
            gate.display()
        )
    });
    let driver = spawn_run(&ws, &nakadi.url, &bucket, &cluster.address());
    first_held(&cluster, std::slice::from_ref(&gate));
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &driver.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let ended = driver.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(130), "{stderr}");
    scheduler_logs(&cluster, "Job cancelled: [");
    assert!(nothing_committed(&bucket, "cluster").await, "{stderr}");
}

/// Nakadi refusing three reads with 503 during a compacting run on the
/// cluster: the executors retry, the rows are the model's, and the run's
/// summary counts the executors' retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_summary_counts_its_executors_retries() {
    use nakadi_testkit::faults::{FaultPlan, Refusal, Request};
    let ws = Workspace::new();
    let runs = crate::model::generate(1, 30, 61);
    let expected = crate::model::model(&runs[0], &mut HashMap::new());
    let nakadi = live_with_partitions(&ws, None, &lines_of_run(&runs, 0), 11).await;
    nakadi.bus.set_faults(FaultPlan {
        refuse: Some(Refusal {
            status: 503,
            times: 3,
            retry_after: None,
            only: Some(Request::Events),
        }),
        ..Default::default()
    });
    let bucket = s3().bucket("cluster-retries");
    let cluster = Cluster::start(&ws, 2);
    let output = format!("s3://{bucket}/cluster");
    let ran = ws
        .command()
        .envs(s3().env())
        .env_remove("MATERIALIZER_OUTPUT")
        .args([
            "run",
            "--json",
            "--topic",
            TOPIC,
            "--nakadi-url",
            &nakadi.url,
        ])
        .args(["--output", &output, "--cluster", &cluster.address()])
        .output()
        .unwrap();
    assert_ok(&ran, "the run with Nakadi refusing", Some(&cluster));
    let summary: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(summary["retries"], 3, "{summary}");
    let files = run_files(&location(&bucket, "cluster"), TOPIC).await;
    assert_eq!(crate::model::written(&files[0].files), expected);
}

/// A `cluster` in serve's config file that is not an address stops serve
/// at once with exit 2, naming the setting.
#[test]
fn a_bad_cluster_in_serves_config_is_refused() {
    let ws = Workspace::new();
    std::fs::write(ws.path("serve.toml"), "cluster = \"http://sched:50050\"\n").unwrap();
    let output = ws.materializer(&["serve", "--config", "serve.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cluster: \"http://sched:50050\" is not a cluster address"),
        "{stderr}"
    );
}

/// Workers that report a file this process cannot see (they wrote to a
/// folder of their own machine): the run fails, nothing is committed.
struct ElsewhereWorkers;

#[async_trait::async_trait]
impl materializer_core::run::remote::PartitionWorkers for ElsewhereWorkers {
    fn describe(&self) -> String {
        "workers on another machine".into()
    }

    async fn run(
        &self,
        job: materializer_core::run::remote::PartitionJob,
        _driving: materializer_core::run::remote::Driving<'_>,
    ) -> Result<
        materializer_core::run::remote::WorkersDone,
        materializer_core::run::remote::RemoteFailure,
    > {
        use materializer_core::run::remote::{PartitionReport, ReportedFile, WorkersDone};
        let reports = job
            .partitions
            .iter()
            .map(|p| PartitionReport {
                partition: p.partition.clone(),
                files: vec![ReportedFile {
                    kind: materializer_core::sink::FileKind::Main,
                    path: format!(
                        "{}/main-{}-p{}.csv",
                        job.topic.name, job.sequence, p.partition
                    ),
                    rows: 1,
                    bytes: 10,
                    sha256: "0".repeat(64),
                    output_partition: Vec::new(),
                }],
                counts: Default::default(),
                decided_by: Vec::new(),
            })
            .collect();
        Ok(WorkersDone {
            reports,
            buckets: Vec::new(),
            job: None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_driver_cannot_see_are_never_committed() {
    let ws = Workspace::new();
    keep_every_event(&ws);
    let nakadi = live(&ws, None, &article_stream(100, 2, 1)).await;
    let output = ws.local_output();
    let source = crate::nakadi::source_of(
        crate::nakadi::settings(&nakadi.url, materializer_core::source::TokenSource::None),
        crate::nakadi::EVENT_TYPE,
        false,
    );
    let mut request = ws.request_from(TOPIC, output.clone(), source).await;
    request.workers = Some(std::sync::Arc::new(ElsewhereWorkers));
    let error = materializer_core::run::execute(&Workspace::engine(), request)
        .await
        .expect_err("the run must fail");
    let message = materializer_core::report(&error);
    assert_eq!(
        error.class(),
        materializer_core::ErrorClass::Config,
        "{message}"
    );
    assert!(message.contains("is not there"), "{message}");
    assert!(
        message.contains("must share the output location"),
        "{message}"
    );
    assert!(committed(&output, TOPIC).await.sequences.is_empty());
}
