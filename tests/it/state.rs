//! The key state across runs: crashes and kills while it is written and
//! compacted, and topics committed with the single-file state of earlier
//! releases.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use materializer_core::commit::{Ledger, Manifest};
use materializer_core::sink::OutputLocation;
use materializer_core::state::StateFile;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sha2::Digest;

use crate::commit::{
    Store, TOPIC, Target, kills_aimed_at, materializer_command, only_committed_files_remain,
    run_process, target, text,
};
use crate::support::{Committed, Workspace, article_stream, committed, copy_dir, object};

/// A workspace recording the first half of a generated stream; `all` is the
/// whole stream, recorded before the second run.
struct TwoRuns {
    ws: Workspace,
    all: Vec<String>,
}

impl TwoRuns {
    fn new(events: usize, seed: u64) -> TwoRuns {
        let ws = Workspace::new();
        let all = article_stream(events, 4, seed);
        ws.record(TOPIC, &all[..all.len() / 2]);
        TwoRuns { ws, all }
    }

    fn record_all(&self) {
        self.ws.record(TOPIC, &self.all);
    }
}

/// The key state files under the topic's `_state` folder.
async fn state_objects(location: &OutputLocation) -> Vec<Path> {
    let ledger = Ledger::new(location.clone(), TOPIC);
    let dir = ledger.layout().root().clone().join("_state");
    let mut paths: Vec<Path> = location
        .store
        .list(Some(&dir))
        .map_ok(|o| o.location)
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

/// The key state files the newest manifest names.
async fn state_in_force(location: &OutputLocation) -> Vec<Path> {
    let ledger = Ledger::new(location.clone(), TOPIC);
    let manifest = ledger.latest().await.unwrap().unwrap();
    let mut paths: Vec<Path> = manifest
        .key_state
        .iter()
        .flat_map(|index| &index.segments)
        .map(|s| ledger.layout().resolve(&s.path))
        .chain(
            manifest
                .state
                .iter()
                .map(|s| ledger.layout().resolve(&s.path)),
        )
        .collect();
    paths.sort();
    paths
}

/// What two clean runs commit.
async fn two_clean_runs(setup: &TwoRuns) -> Committed {
    let reference = target(&setup.ws, Store::Local, "reference");
    setup.record_all();
    setup
        .ws
        .run_with(TOPIC, reference.location.clone())
        .await
        .unwrap();
    let expected = committed(&reference.location, TOPIC).await;
    assert_eq!(expected.sequences, vec![1, 2]);
    expected
}

fn first_run(setup: &TwoRuns, t: &Target) {
    let first = run_process(&setup.ws, t, None);
    assert!(first.status.success(), "{}", text(&first.stderr));
}

#[tokio::test]
async fn a_crash_while_the_key_state_is_written_or_compacted_changes_nothing() {
    let setup = TwoRuns::new(4000, 11);
    let reference = target(&setup.ws, Store::Local, "reference");
    let points = ["state-compacting", "files-written", "committed"];
    let mut targets = Vec::new();
    for store in [Store::Local, Store::S3] {
        for point in points {
            let t = target(&setup.ws, store, &format!("state-{point}"));
            first_run(&setup, &t);
            targets.push((store, point, t));
        }
    }
    first_run(&setup, &reference);
    let expected = two_clean_runs(&setup).await;
    for (store, point, t) in targets {
        let state_before = state_in_force(&t.location).await;
        let crashed = run_process(&setup.ws, &t, Some(point));
        assert!(
            text(&crashed.stderr).contains(&format!("failpoint {point}")),
            "{store:?} {point}: {}",
            text(&crashed.stderr)
        );
        let visible = committed(&t.location, TOPIC).await;
        if point == "committed" {
            assert_eq!(visible, expected, "{store:?} {point}");
        } else {
            assert_eq!(visible.sequences, vec![1], "{store:?} {point}");
            // The committed state is whole: every file the manifest names is there.
            let stored = state_objects(&t.location).await;
            for path in &state_before {
                assert!(stored.contains(path), "{store:?} {point}: {path} is gone");
            }
        }
        let retry = run_process(&setup.ws, &t, None);
        assert!(
            retry.status.success(),
            "{store:?} {point}: {}",
            text(&retry.stderr)
        );
        assert_eq!(
            committed(&t.location, TOPIC).await,
            expected,
            "{store:?} {point}"
        );
        only_committed_files_remain(&t).await;
        assert_eq!(
            state_objects(&t.location).await,
            state_in_force(&t.location).await,
            "{store:?} {point}: only the state in force remains"
        );
    }
}

/// SIGKILL aimed at each stage of a second run (over a committed key
/// state), each on a copy of the first run's output: the kills land
/// mid-read, while the state is written, mid-write and mid-commit, as the
/// output shows afterwards; nothing partial is visible, and a retry commits
/// what two clean runs commit, with only the state in force left.
#[tokio::test]
async fn kill_9_while_the_second_run_writes_its_state_never_loses_a_version() {
    let setup = TwoRuns::new(20_000, 5);
    let reference = target(&setup.ws, Store::Local, "reference");
    let first = target(&setup.ws, Store::Local, "kill-9");
    for t in [&reference, &first] {
        first_run(&setup, t);
    }
    let expected = two_clean_runs(&setup).await;
    let copy = |dir: &str| copy_dir(&setup.ws.path("kill-9"), &setup.ws.path(dir));
    for t in kills_aimed_at(&setup.ws, Store::Local, 2, &expected, copy).await {
        assert_eq!(
            state_objects(&t.location).await,
            state_in_force(&t.location).await
        );
    }
}

/// Rewrites the newest manifest as releases before the bucketed state wrote
/// it: the whole state in one Parquet file.
pub(crate) async fn as_single_file_state(location: &OutputLocation) {
    let ledger = Ledger::new(location.clone(), TOPIC);
    let mut manifest: Manifest = ledger.latest().await.unwrap().unwrap();
    let index = manifest.key_state.take().expect("a bucketed state");
    let mut batches: Vec<RecordBatch> = Vec::new();
    for segment in index.segments.iter().rev() {
        let bytes = object(location, &ledger.layout().resolve(&segment.path)).await;
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024).unwrap();
        batches.extend(reader.map(Result::unwrap));
        location
            .store
            .delete(&ledger.layout().resolve(&segment.path))
            .await
            .unwrap();
    }
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), batches[0].schema(), None).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    let bytes = writer.into_inner().unwrap();
    let relative = format!("_state/keys-{:010}-earlier.parquet", manifest.sequence);
    location
        .store
        .put(&ledger.layout().resolve(&relative), bytes.clone().into())
        .await
        .unwrap();
    manifest.state = Some(StateFile {
        path: relative,
        keys: batches.iter().map(|b| b.num_rows() as u64).sum(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
    });
    manifest.format_version = 1;
    let body = serde_json::to_vec_pretty(&manifest).unwrap();
    location
        .store
        .put(&ledger.layout().manifest(manifest.sequence), body.into())
        .await
        .unwrap();
}

/// The newest version of every article in recorded stream lines, computed
/// from the events themselves.
fn newest_versions(lines: &[String]) -> BTreeMap<i64, i64> {
    let mut newest = BTreeMap::new();
    for line in lines {
        let batch: serde_json::Value = serde_json::from_str(line).unwrap();
        for event in batch["events"].as_array().unwrap() {
            let article = event["article_id"].as_i64().unwrap();
            let version = event["version"].as_i64().unwrap();
            let top = newest.entry(article).or_insert(version);
            *top = (*top).max(version);
        }
    }
    newest
}

/// The rows of the key state the newest manifest names, (article, version),
/// sorted: a key found in several segments once per segment.
pub(crate) async fn state_rows(location: &OutputLocation) -> Vec<(i64, i64)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type};
    let mut rows = Vec::new();
    for path in state_in_force(location).await {
        let bytes = object(location, &path).await;
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024).unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            assert_eq!(batch.num_columns(), 2, "{path}: {:?}", batch.schema());
            let column =
                |i: usize| arrow::compute::cast(batch.column(i), &DataType::Int64).unwrap();
            let (articles, versions) = (column(0), column(1));
            let (articles, versions) = (
                articles.as_primitive::<Int64Type>(),
                versions.as_primitive::<Int64Type>(),
            );
            rows.extend(
                articles
                    .values()
                    .iter()
                    .copied()
                    .zip(versions.values().iter().copied()),
            );
        }
    }
    rows.sort_unstable();
    rows
}

/// Per article, the highest version of `rows`.
fn highest(rows: &[(i64, i64)]) -> BTreeMap<i64, i64> {
    let mut newest = BTreeMap::new();
    for &(article, version) in rows {
        let top = newest.entry(article).or_insert(version);
        *top = (*top).max(version);
    }
    newest
}

/// A topic committed with the single-file state of earlier releases: the
/// next run moves it to buckets, and the state it leaves is exactly the
/// newest version of every article of the events so far (computed from the
/// events), one row per article; a third run, reading the migrated state,
/// commits what a third run of a topic that never had the single file
/// commits.
#[tokio::test]
async fn a_topic_with_the_single_file_state_keeps_working_and_moves_to_buckets() {
    let ws = Workspace::new();
    let all = article_stream(4000, 4, 13);
    let thirds = [&all[..all.len() / 3], &all[..2 * all.len() / 3], &all[..]];
    let reference = target(&ws, Store::Local, "reference");
    let earlier = target(&ws, Store::Local, "earlier");
    let run_both = |t: &[&Target]| {
        for t in t {
            let run = run_process(&ws, t, None);
            assert!(run.status.success(), "{}", text(&run.stderr));
        }
    };
    ws.record(TOPIC, thirds[0]);
    run_both(&[&reference, &earlier]);
    as_single_file_state(&earlier.location).await;
    let single = state_in_force(&earlier.location).await;
    assert_eq!(single.len(), 1);
    assert!(single[0].as_ref().contains("/_state/keys-"), "{single:?}");
    assert_eq!(
        highest(&state_rows(&earlier.location).await),
        newest_versions(thirds[0])
    );

    ws.record(TOPIC, thirds[1]);
    run_both(&[&reference, &earlier]);
    let after = committed(&earlier.location, TOPIC).await;
    assert!(!after.correction.is_empty());
    assert_eq!(
        after,
        committed(&reference.location, TOPIC).await,
        "the same classification from either form"
    );
    let ledger = Ledger::new(earlier.location.clone(), TOPIC);
    let manifest = ledger.manifest(2).await.unwrap().unwrap();
    assert!(manifest.state.is_none());
    assert_eq!(manifest.format_version, 2);
    let index = manifest.key_state.expect("the state is bucketed now");
    // Every bucket holds one segment with all its keys, as a compaction
    // leaves it: one row per article, its newest version.
    let mut buckets: Vec<u32> = index.segments.iter().map(|s| s.bucket).collect();
    buckets.sort_unstable();
    buckets.dedup();
    assert_eq!(buckets.len(), index.segments.len(), "one segment a bucket");
    let migrated = state_rows(&earlier.location).await;
    let newest = newest_versions(thirds[1]);
    assert_eq!(migrated, newest.clone().into_iter().collect::<Vec<_>>());
    assert_eq!(index.rows(), newest.len() as u64);
    assert_eq!(highest(&state_rows(&reference.location).await), newest);
    assert_eq!(
        state_objects(&earlier.location).await,
        state_in_force(&earlier.location).await,
        "the single file is removed once the segments are committed"
    );

    // A third run reads the migrated state.
    ws.record(TOPIC, thirds[2]);
    run_both(&[&reference, &earlier]);
    let third = committed(&earlier.location, TOPIC).await;
    assert_eq!(third.sequences, vec![1, 2, 3]);
    assert_eq!(third, committed(&reference.location, TOPIC).await);
    let newest = newest_versions(thirds[2]);
    assert_eq!(highest(&state_rows(&earlier.location).await), newest);
    assert_eq!(highest(&state_rows(&reference.location).await), newest);
    only_committed_files_remain(&earlier).await;
}

/// A run of a recording fixes the files' sizes in its plan instead of end
/// cursors (the read finds those, in its one pass): a retry reads what the
/// crashed attempt planned however the recording grew since, and the next
/// run reads the rest.
#[tokio::test]
async fn a_retry_reads_the_recording_as_planned_and_the_next_run_reads_the_rest() {
    let setup = TwoRuns::new(4000, 13);
    let reference = target(&setup.ws, Store::Local, "reference");
    first_run(&setup, &reference);
    let after_first = committed(&reference.location, TOPIC).await;
    let mut crashed = Vec::new();
    for point in ["planned", "reading"] {
        let t = target(&setup.ws, Store::Local, &format!("grown-{point}"));
        let run = run_process(&setup.ws, &t, Some(point));
        assert!(
            text(&run.stderr).contains(&format!("failpoint {point}")),
            "{point}: {}",
            text(&run.stderr)
        );
        crashed.push((point, t));
    }
    let expected = two_clean_runs(&setup).await;
    for (point, t) in crashed {
        let plan = std::fs::read_to_string(
            setup
                .ws
                .path(&format!("grown-{point}"))
                .join(TOPIC)
                .join("_plans/0000000001.json"),
        )
        .unwrap();
        assert!(plan.contains("\"recording\""), "{point}: {plan}");
        let retry = run_process(&setup.ws, &t, None);
        assert!(retry.status.success(), "{point}: {}", text(&retry.stderr));
        assert!(text(&retry.stdout).contains("run 1 committed"), "{point}");
        assert_eq!(committed(&t.location, TOPIC).await, after_first, "{point}");
        let next = run_process(&setup.ws, &t, None);
        assert!(next.status.success(), "{point}: {}", text(&next.stderr));
        assert_eq!(committed(&t.location, TOPIC).await, expected, "{point}");
        only_committed_files_remain(&t).await;
    }
}

/// What a crashed attempt planned to read must stay there: a recording cut
/// shorter is an error naming the file and both sizes, and commits nothing.
#[tokio::test]
async fn a_recording_cut_shorter_than_its_plan_is_refused() {
    let setup = TwoRuns::new(2000, 17);
    setup.record_all();
    let t = target(&setup.ws, Store::Local, "shrunk");
    let run = run_process(&setup.ws, &t, Some("planned"));
    assert!(!run.status.success());
    let planned = std::fs::metadata(setup.ws.path("recorded").join(TOPIC).join("stream.jsonl"))
        .unwrap()
        .len();
    setup.ws.record(TOPIC, &setup.all[..setup.all.len() / 2]);
    let now = std::fs::metadata(setup.ws.path("recorded").join(TOPIC).join("stream.jsonl"))
        .unwrap()
        .len();
    let retry = run_process(&setup.ws, &t, None);
    assert!(!retry.status.success());
    let stderr = text(&retry.stderr);
    assert!(
        stderr.contains("stream.jsonl")
            && stderr.contains(&format!("holds {now} bytes"))
            && stderr.contains(&format!("when it held {planned}")),
        "{stderr}"
    );
    assert!(committed(&t.location, TOPIC).await.sequences.is_empty());
    // Restored, the recording is read as planned.
    setup.record_all();
    let restored = run_process(&setup.ws, &t, None);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
}

/// Events missing after the committed cursor (a recording that goes on
/// with a later line) are an error naming file and line, never skipped.
#[tokio::test]
async fn a_recording_missing_events_after_the_committed_cursor_is_refused() {
    let setup = TwoRuns::new(2000, 19);
    let t = target(&setup.ws, Store::Local, "gap");
    first_run(&setup, &t);
    let half = setup.all.len() / 2;
    let mut lines = setup.all.clone();
    let missing = lines.remove(half);
    let partition = missing
        .split(r#""partition":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    // The line that now follows the committed cursor of that partition.
    let next_line = lines[half..]
        .iter()
        .position(|l| l.starts_with(&format!(r#"{{"cursor":{{"partition":"{partition}""#)))
        .unwrap()
        + half
        + 1;
    setup.ws.record(TOPIC, &lines);
    let run = run_process(&setup.ws, &t, None);
    assert!(!run.status.success());
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains(&format!("partition {partition}"))
            && stderr.contains(&format!("stream.jsonl:{next_line}"))
            && stderr.contains("not in the recording"),
        "{stderr}"
    );
    assert_eq!(committed(&t.location, TOPIC).await.sequences, vec![1]);
}

/// The sorted rows of every KEYS file of a local output, by file name.
fn keys_files(root: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let mut files = Vec::new();
    let keys = root.join(TOPIC).join("keys");
    for run in std::fs::read_dir(&keys).unwrap() {
        let run = run.unwrap().path();
        for file in std::fs::read_dir(&run).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "csv") {
                let mut rows: Vec<String> = std::fs::read_to_string(&file)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect();
                rows.sort();
                files.push((file.file_name().unwrap().to_string_lossy().into(), rows));
            }
        }
    }
    files.sort();
    files
}

/// A bucket with more key rows than a pass holds is decided in passes over
/// its spool, each taking a slice of the key hash; the events' classes of a
/// run larger than their share of the memory budget wait on disk as sorted
/// runs, merged back as the mapping reads the events. Either way: the same
/// rows, KEYS and key state as in one pass and in memory, on a first run and
/// on a run against committed state.
#[tokio::test]
async fn passes_and_classes_on_disk_give_what_one_pass_in_memory_gives() {
    let setup = TwoRuns::new(4000, 23);
    let reference = target(&setup.ws, Store::Local, "reference");
    let variants: [(&str, &[(&str, &str)]); 2] = [
        ("passes", &[("MATERIALIZER_PASS_ROWS", "7")]),
        (
            "on-disk",
            &[
                ("MATERIALIZER_PASS_ROWS", "50"),
                ("MATERIALIZER_CLASS_BYTES", "0"),
            ],
        ),
    ];
    let targets: Vec<(&str, Target)> = variants
        .iter()
        .map(|(name, _)| (*name, target(&setup.ws, Store::Local, name)))
        .collect();
    let run_all = |setup: &TwoRuns| {
        for ((name, env), (_, t)) in variants.iter().zip(&targets) {
            let run = materializer_command(&setup.ws, t)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            assert!(run.status.success(), "{name}: {}", text(&run.stderr));
        }
    };
    first_run(&setup, &reference);
    run_all(&setup);
    let expected = two_clean_runs(&setup).await;
    run_all(&setup);
    let state_rows = |t: &Target| {
        let location = t.location.clone();
        async move {
            Ledger::new(location, TOPIC)
                .manifest(2)
                .await
                .unwrap()
                .unwrap()
                .key_state
                .unwrap()
                .rows()
        }
    };
    for (name, t) in &targets {
        let after = committed(&t.location, TOPIC).await;
        assert!(!after.correction.is_empty());
        assert_eq!(after, expected, "{name}");
        assert_eq!(
            keys_files(&setup.ws.path(name)),
            keys_files(&setup.ws.path("reference")),
            "{name}"
        );
        assert_eq!(state_rows(t).await, state_rows(&reference).await, "{name}");
    }
}
