//! Exactly-once commits: S3 and local output, crashes at every stage, kills at
//! random moments, aborted tasks, racing processes and a flaky S3.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use materializer_core::commit::{Ledger, LedgerError};
use materializer_core::run::Outcome;
use materializer_core::sink::{ObjectWriter, OutputLocation, S3Settings};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::servers::{self, Fault, FaultyProxy};
use crate::stages::{Stage, aim_at, kill_when};
use crate::support::{Committed, Workspace, article_stream, committed, object};

pub(crate) const TOPIC: &str = "article-stock-changed";

/// Where a test writes: a local folder or a fresh bucket on the S3 server.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Store {
    Local,
    S3,
}

pub(crate) struct Target {
    url: String,
    pub(crate) location: OutputLocation,
    env: Vec<(&'static str, String)>,
}

pub(crate) fn target(ws: &Workspace, store: Store, name: &str) -> Target {
    match store {
        Store::Local => {
            let dir = ws.path(name);
            let url = dir.display().to_string();
            Target {
                location: OutputLocation::parse(&url, &S3Settings::default()).unwrap(),
                url,
                env: Vec::new(),
            }
        }
        Store::S3 => {
            let s3 = servers::s3();
            let url = format!("s3://{}/exports", s3.bucket(name));
            Target {
                location: OutputLocation::parse(&url, &s3.settings()).unwrap(),
                url,
                env: s3.env(),
            }
        }
    }
}

/// A workspace whose article recording is a generated stream.
fn generated_workspace(events: usize) -> Workspace {
    let ws = Workspace::new();
    ws.record(TOPIC, &article_stream(events, 4, 7));
    ws
}

async fn reference(ws: &Workspace) -> Committed {
    let t = target(ws, Store::Local, "reference");
    ws.run_with(TOPIC, t.location.clone()).await.unwrap();
    let reference = committed(&t.location, TOPIC).await;
    assert_eq!(reference.sequences, vec![1]);
    for (kind, rows) in [
        ("main", &reference.main),
        ("correction", &reference.correction),
        ("older", &reference.older),
        ("keys", &reference.keys),
    ] {
        assert!(!rows.is_empty(), "no {kind} rows");
    }
    reference
}

pub(crate) fn materializer_command(ws: &Workspace, t: &Target) -> Command {
    let mut command = ws.command();
    command
        .args(["run", "--topic", TOPIC, "--source"])
        .arg(format!("recorded/{TOPIC}"))
        .args(["--output", &t.url, "--no-progress"])
        .envs(t.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub(crate) fn run_process(ws: &Workspace, t: &Target, failpoint: Option<&str>) -> Output {
    let mut command = materializer_command(ws, t);
    if let Some(point) = failpoint {
        command.env("MATERIALIZER_FAILPOINT", point);
    }
    command.output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every object under the topic's data folders (every kind of file) is a
/// committed file or a marker.
pub(crate) async fn only_committed_files_remain(t: &Target) {
    use futures::TryStreamExt;
    let ledger = Ledger::new(t.location.clone(), TOPIC);
    let mut listed = std::collections::BTreeSet::new();
    for seq in ledger.committed_sequences().await.unwrap() {
        for file in ledger.manifest(seq).await.unwrap().unwrap().files {
            listed.insert(ledger.layout().resolve(&file.path));
        }
    }
    use materializer_core::sink::FileKind;
    let kinds = [
        FileKind::Main,
        FileKind::Correction,
        FileKind::Rejected,
        FileKind::Older,
        FileKind::Keys,
    ];
    let mut checked = 0;
    for kind in kinds {
        let prefix = ledger.layout().root().clone().join(kind.as_str());
        let objects: Vec<_> = t
            .location
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        for object in objects {
            assert!(
                listed.contains(&object.location) || object.location.filename() == Some("_SUCCESS"),
                "{} is not part of a committed run",
                object.location
            );
            checked += usize::from(listed.contains(&object.location));
        }
    }
    // Every committed file was under one of the folders looked at.
    assert_eq!(
        checked,
        listed.len(),
        "committed files outside the data folders"
    );
}

#[tokio::test]
async fn s3_and_local_output_hold_the_same_committed_files() {
    let ws = Workspace::new();
    let s3 = target(&ws, Store::S3, "same-files");
    let local = target(&ws, Store::Local, "same-files");
    let on_s3 = ws.run_with(TOPIC, s3.location.clone()).await.unwrap();
    let on_disk = ws.run_with(TOPIC, local.location.clone()).await.unwrap();
    assert_eq!(on_s3.counts, on_disk.counts);
    assert_eq!(
        committed(&s3.location, TOPIC).await,
        committed(&local.location, TOPIC).await
    );

    let m_s3 = Ledger::new(s3.location.clone(), TOPIC)
        .manifest(1)
        .await
        .unwrap()
        .unwrap();
    let m_disk = Ledger::new(local.location.clone(), TOPIC)
        .manifest(1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m_s3.files, m_disk.files,
        "same names, rows, bytes and checksums"
    );
    assert_eq!(m_s3.partitions, m_disk.partitions);

    // Post-commit artifacts on S3.
    let layout = Ledger::new(s3.location.clone(), TOPIC).layout().clone();
    for marker in [
        "main/run=0000000001/_SUCCESS",
        "correction/run=0000000001/_SUCCESS",
        "_redshift/main-0000000001.json",
        "_manifests/_latest",
    ] {
        s3.location
            .store
            .head(&layout.resolve(marker))
            .await
            .unwrap();
    }
    let redshift = object(
        &s3.location,
        &layout.resolve("_redshift/main-0000000001.json"),
    )
    .await;
    let redshift: serde_json::Value = serde_json::from_slice(&redshift).unwrap();
    let first = redshift["entries"][0]["url"].as_str().unwrap();
    assert!(
        first.starts_with(&format!("{}/{TOPIC}/main/run=0000000001/", s3.url)),
        "{first}"
    );
}

#[tokio::test]
async fn large_files_are_uploaded_in_parts_and_checksummed() {
    let s3 = servers::s3();
    let location = OutputLocation::parse(
        &format!("s3://{}/big", s3.bucket("multipart")),
        &s3.settings(),
    )
    .unwrap();
    let path = Path::from("big/file.bin");
    let mut writer = ObjectWriter::new(location.store.clone(), path.clone());
    let chunk: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..20 {
        writer.write(&chunk).await.unwrap();
    }
    let (bytes, sha256) = writer.finish().await.unwrap();
    assert_eq!(bytes, 20_000_000);
    let meta = location.store.head(&path).await.unwrap();
    assert_eq!(meta.size, 20_000_000);
    // S3 gives multipart objects an ETag of the form "<md5>-<parts>".
    assert!(
        meta.e_tag.as_deref().unwrap_or_default().contains('-'),
        "{:?}",
        meta.e_tag
    );
    let stored = object(&location, &path).await;
    use sha2::Digest;
    assert_eq!(sha256, hex::encode(sha2::Sha256::digest(&stored)));
}

#[tokio::test]
async fn a_manifest_is_written_once_per_sequence_number() {
    let ws = Workspace::new();
    for store in [Store::Local, Store::S3] {
        let t = target(&ws, store, "once");
        ws.run_with(TOPIC, t.location.clone()).await.unwrap();
        let ledger = Ledger::new(t.location.clone(), TOPIC);
        let mine = ledger.manifest(1).await.unwrap().unwrap();
        // A retried request of the same attempt finds its own manifest: success.
        ledger.commit(&mine).await.unwrap();
        // Another attempt at the same sequence number loses.
        let mut other = mine.clone();
        other.attempt = "someone-else".into();
        match ledger.commit(&other).await {
            Err(LedgerError::LostRace { seq: 1 }) => {}
            other => panic!("{store:?}: expected a lost race, got {other:?}"),
        }
        assert_eq!(ledger.manifest(1).await.unwrap().unwrap(), mine);
    }
}

#[tokio::test]
async fn a_crash_at_any_stage_then_a_retry_commits_the_same_rows() {
    let ws = generated_workspace(3000);
    let expected = reference(&ws).await;
    let points = [
        "planned",
        "reading",
        "first-file-written",
        "files-written",
        "committed",
        "post-committed",
    ];
    for store in [Store::Local, Store::S3] {
        for point in points {
            let t = target(&ws, store, &format!("crash-{point}"));
            let crashed = run_process(&ws, &t, Some(point));
            assert!(
                !crashed.status.success(),
                "{store:?} {point}: the run did not stop"
            );
            assert!(
                text(&crashed.stderr).contains(&format!("failpoint {point}")),
                "{}",
                text(&crashed.stderr)
            );
            let visible = committed(&t.location, TOPIC).await;
            if matches!(point, "committed" | "post-committed") {
                assert_eq!(visible, expected, "{store:?} {point}: the commit is whole");
            } else {
                assert!(
                    visible.sequences.is_empty(),
                    "{store:?} {point}: nothing visible before the commit"
                );
            }
            let retry = run_process(&ws, &t, None);
            assert!(
                retry.status.success(),
                "{store:?} {point}: {}",
                text(&retry.stderr)
            );
            let stdout = text(&retry.stdout);
            if matches!(point, "committed" | "post-committed") {
                assert!(stdout.contains("nothing new since run 1"), "{stdout}");
            } else {
                assert!(stdout.contains("run 1 committed"), "{stdout}");
            }
            assert_eq!(
                committed(&t.location, TOPIC).await,
                expected,
                "{store:?} {point}"
            );
            only_committed_files_remain(&t).await;
            // The post-commit steps are complete after the retry.
            let layout = Ledger::new(t.location.clone(), TOPIC).layout().clone();
            t.location
                .store
                .head(&layout.resolve("main/run=0000000001/_SUCCESS"))
                .await
                .unwrap();
            let hint = object(&t.location, &layout.latest_hint()).await;
            assert_eq!(&hint[..], b"0000000001");
        }
    }
}

/// Runs the binary on `t` and sends it SIGKILL as soon as its run
/// `sequence` reaches `aim`; returns the stage the output shows once it is
/// dead.
async fn kill_at(ws: &Workspace, t: &Target, sequence: u64, aim: Stage) -> Stage {
    let mut command = tokio::process::Command::from(materializer_command(ws, t));
    aim_at(&mut command, aim, &ws.path("never-opened"));
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    kill_when(&mut child, &t.location, TOPIC, sequence, aim).await
}

/// At each stage of a run, kills run `sequence` on an output of its own in
/// `store` (`prepare` readies a local one, by folder name) as soon as the
/// run reaches that stage, and checks what the stage it landed in may show:
/// the runs before it alone, or `expected` once the manifest is written;
/// then a retry commits `expected`, leaving only committed files. A kill
/// that lands later than aimed (the run went on before the signal) still
/// counts for those checks, and the stage is aimed at again, a few times at
/// most: kills must land mid-read, mid-state, mid-write and mid-commit (the
/// last with the run held after its manifest, see [`aim_at`]). Returns the
/// outputs.
pub(crate) async fn kills_aimed_at(
    ws: &Workspace,
    store: Store,
    sequence: u64,
    expected: &Committed,
    prepare: impl Fn(&str),
) -> Vec<Target> {
    let mut landed = Vec::new();
    let mut targets = Vec::new();
    for aim in [
        Stage::Reading,
        Stage::Deciding,
        Stage::Writing,
        Stage::Committing,
    ] {
        for _ in 0..6 {
            let dir = format!("kill-9-{}", targets.len());
            prepare(&dir);
            let t = target(ws, store, &dir);
            let stage = kill_at(ws, &t, sequence, aim).await;
            assert!(
                stage >= aim,
                "{store:?}: aimed at {aim:?}, landed in {stage:?}"
            );
            landed.push(stage);
            let visible = committed(&t.location, TOPIC).await;
            if stage >= Stage::Committing {
                assert_eq!(&visible, expected, "{store:?} {stage:?}");
            } else {
                assert_eq!(
                    visible.sequences,
                    (1..sequence).collect::<Vec<_>>(),
                    "{store:?} {stage:?}: a partial commit is visible"
                );
            }
            let retry = run_process(ws, &t, None);
            assert!(
                retry.status.success(),
                "{store:?} {stage:?}: {}",
                text(&retry.stderr)
            );
            assert_eq!(
                &committed(&t.location, TOPIC).await,
                expected,
                "{store:?} {stage:?}"
            );
            only_committed_files_remain(&t).await;
            targets.push(t);
            if stage == aim {
                break;
            }
        }
        assert!(
            landed.contains(&aim),
            "{store:?}: no kill landed in {aim:?}: {landed:?}"
        );
    }
    eprintln!("{store:?}: kills landed in {landed:?}");
    targets
}

/// SIGKILL aimed at each stage of a run, each on an output of its own, local
/// and on S3: the stage each kill landed in is what the output shows
/// afterwards (see [`kills_aimed_at`]): nothing partial is ever visible, and
/// a retry commits exactly the clean run's rows.
#[tokio::test]
async fn kill_9_at_each_stage_never_duplicates_or_loses_a_row() {
    let ws = generated_workspace(20_000);
    let expected = reference(&ws).await;
    kills_aimed_at(&ws, Store::Local, 1, &expected, |_| {}).await;
    kills_aimed_at(&ws, Store::S3, 1, &expected, |_| {}).await;
}

#[tokio::test]
async fn aborted_run_tasks_leave_nothing_visible() {
    let ws = generated_workspace(5000);
    let expected = reference(&ws).await;
    let t = target(&ws, Store::Local, "abort");
    let engine = Workspace::engine();
    let started = Instant::now();
    ws.run_with(TOPIC, target(&ws, Store::Local, "abort-probe").location)
        .await
        .unwrap();
    let span = started.elapsed().as_micros() as u64;
    for i in 0..15u64 {
        let request = ws.request(TOPIC, t.location.clone()).await;
        let engine = engine.clone();
        let task =
            tokio::spawn(async move { materializer_core::run::execute(&engine, request).await });
        tokio::time::sleep(Duration::from_micros(span * i / 15)).await;
        task.abort();
        let _ = task.await;
        let visible = committed(&t.location, TOPIC).await;
        assert!(
            visible.sequences.is_empty() || visible == expected,
            "iteration {i}"
        );
    }
    let summary = ws.run_with(TOPIC, t.location.clone()).await.unwrap();
    assert!(matches!(
        summary.outcome,
        Outcome::Committed | Outcome::NothingNew
    ));
    assert_eq!(committed(&t.location, TOPIC).await, expected);
    only_committed_files_remain(&t).await;
}

#[tokio::test]
async fn racing_processes_commit_exactly_once() {
    let ws = generated_workspace(5000);
    let expected = reference(&ws).await;
    for store in [Store::Local, Store::S3] {
        let t = target(&ws, store, "race");
        let children: Vec<_> = (0..4)
            .map(|_| materializer_command(&ws, &t).spawn().unwrap())
            .collect();
        let mut committed_runs = 0;
        for child in children {
            let out = child.wait_with_output().unwrap();
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            if out.status.success() {
                if stdout.contains("run 1 committed") {
                    committed_runs += 1;
                } else {
                    assert!(stdout.contains("nothing new since run 1"), "{stdout}");
                }
            } else {
                assert!(
                    stderr.contains("run 1 of this topic was committed by another process first"),
                    "{store:?}: {stderr}"
                );
                assert_eq!(
                    out.status.code(),
                    Some(5),
                    "{store:?}: a conflict: {stderr}"
                );
            }
        }
        assert_eq!(committed_runs, 1, "{store:?}: exactly one process commits");
        let ledger = Ledger::new(t.location.clone(), TOPIC);
        assert_eq!(ledger.committed_sequences().await.unwrap(), vec![1]);
        assert_eq!(
            committed(&t.location, TOPIC).await,
            expected,
            "{store:?}: no mixed files"
        );
        only_committed_files_remain(&t).await;
    }
}

#[tokio::test]
async fn a_second_run_of_a_topic_in_one_process_is_refused() {
    let ws = generated_workspace(2000);
    let t = target(&ws, Store::Local, "twice");
    let engine = Workspace::engine();
    let (a, b) = tokio::join!(
        materializer_core::run::execute(&engine, ws.request(TOPIC, t.location.clone()).await),
        materializer_core::run::execute(&engine, ws.request(TOPIC, t.location.clone()).await),
    );
    let errors: Vec<String> = [&a, &b]
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| materializer_core::report(e))
        .collect();
    assert_eq!(
        errors,
        vec![format!("topic {TOPIC}: already running in this process")]
    );
}

#[tokio::test]
async fn s3_throttling_and_resets_are_retried_with_the_same_result() {
    let ws = generated_workspace(3000);
    let expected = reference(&ws).await;
    let s3 = servers::s3();
    let proxy = FaultyProxy::start(&s3.endpoint).await;
    let bucket = s3.bucket("flaky");
    let url = format!("s3://{bucket}/exports");
    let location = OutputLocation::parse(&url, &s3.settings_for(&proxy.endpoint)).unwrap();
    let faults = [
        Fault::SlowDown,
        Fault::Reset,
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Reset,
    ];
    proxy.inject_spaced(faults.iter().copied().cycle().take(10), 1);
    let summary = ws.run_with(TOPIC, location.clone()).await.unwrap();
    assert_eq!(summary.outcome, Outcome::Committed);
    assert_eq!(
        proxy.injected.load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    let direct = OutputLocation::parse(&url, &s3.settings()).unwrap();
    assert_eq!(committed(&direct, TOPIC).await, expected);
}

#[tokio::test]
async fn output_partitions_become_folders_with_their_own_markers() {
    let ws = Workspace::new();
    let dir = ws.sql().join(TOPIC);
    let toml = std::fs::read_to_string(dir.join("topic.toml")).unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        toml.replace(
            "format = \"csv\"",
            "format = \"csv\"\npartition_by = [\"brand\"]",
        ),
    )
    .unwrap();
    ws.run(TOPIC).await.unwrap();
    let files: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.contains("/main/"))
        .collect();
    assert_eq!(
        files,
        vec![
            "article-stock-changed/main/run=0000000001/brand=/_SUCCESS",
            "article-stock-changed/main/run=0000000001/brand=/main-0000000001-p1.csv",
            "article-stock-changed/main/run=0000000001/brand=Fjällräven/_SUCCESS",
            "article-stock-changed/main/run=0000000001/brand=Fjällräven/main-0000000001-p0.csv",
            "article-stock-changed/main/run=0000000001/brand=Jack & Jones/_SUCCESS",
            "article-stock-changed/main/run=0000000001/brand=Jack & Jones/main-0000000001-p0.csv",
            "article-stock-changed/main/run=0000000001/brand=Nike/_SUCCESS",
            "article-stock-changed/main/run=0000000001/brand=Nike/main-0000000001-p0.csv",
            "article-stock-changed/main/run=0000000001/brand=adidas/_SUCCESS",
            "article-stock-changed/main/run=0000000001/brand=adidas/main-0000000001-p1.csv",
        ]
    );
    assert_eq!(
        ws.read_out("article-stock-changed/main/run=0000000001/brand=Nike/main-0000000001-p0.csv"),
        "article_id,brand,model,version,available_qty,occurred_at,eid\n\
         100000002,Nike,Air Runner,3,0,2024-06-03T08:02:00Z,5a1e0000-0000-4000-8000-000000000004\n"
    );
    let manifest: materializer_core::commit::Manifest =
        serde_json::from_str(&ws.read_out("article-stock-changed/_manifests/0000000001.json"))
            .unwrap();
    let nike = manifest
        .files
        .iter()
        .find(|f| f.path.contains("brand=Nike"))
        .unwrap();
    assert_eq!(
        nike.output_partition,
        vec![("brand".to_string(), "Nike".to_string())]
    );
}
