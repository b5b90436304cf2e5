//! Runs that follow a committed run: they start from its cursors, write
//! nothing when nothing is new, redo an uncommitted attempt under the same
//! names, and turn late events into corrections against the key state.

use materializer_core::commit::{Manifest, RunCounts};
use materializer_core::run::Outcome;

use super::{article_line, eid, manifest, state_files, state_paths};
use crate::support::{Workspace, csv_rows, row, sorted};

const SECOND_RUN_LINE: &str = concat!(
    r#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000012"},"events":["#,
    r#"{"metadata":{"eid":"5a1e0000-0000-4000-8000-000000000031","occurred_at":"2024-06-03T09:00:00.000Z","event_type":"article.stock-changed","partition":"0"},"article_id":100000002,"brand":"Nike","model":"Air Runner","version":4,"available_qty":9},"#,
    r#"{"metadata":{"eid":"5a1e0000-0000-4000-8000-000000000032","occurred_at":"2024-06-03T09:01:00.000Z","event_type":"article.stock-changed","partition":"0"},"article_id":100000012,"brand":"Mango","model":"Essential Tee","version":1,"available_qty":40}"#,
    "]}\n"
);

#[tokio::test]
async fn a_second_run_starts_from_the_committed_cursors() {
    let ws = Workspace::new();
    ws.run("article-stock-changed").await.unwrap();
    ws.append(
        "recorded/article-stock-changed/stream.jsonl",
        SECOND_RUN_LINE,
    );
    let summary = ws.run("article-stock-changed").await.unwrap();
    assert_eq!(summary.sequence, Some(2));
    assert_eq!(summary.counts.events_read, 2);
    let (_, rows) =
        csv_rows(&ws.read_out("article-stock-changed/main/run=0000000002/main-0000000002-p0.csv"));
    assert_eq!(
        rows,
        sorted(vec![
            row(&[
                "100000002",
                "Nike",
                "Air Runner",
                "4",
                "9",
                "2024-06-03T09:00:00Z",
                &eid(0x31)
            ]),
            row(&[
                "100000012",
                "Mango",
                "Essential Tee",
                "1",
                "40",
                "2024-06-03T09:01:00Z",
                &eid(0x32)
            ]),
        ])
    );
    let m2 = manifest(&ws, "article-stock-changed", 2);
    let m1 = manifest(&ws, "article-stock-changed", 1);
    for (p1, p2) in m1.partitions.iter().zip(&m2.partitions) {
        assert_eq!(p1.partition, p2.partition);
        assert_eq!(p1.end, p2.start, "run 2 starts where run 1 ended");
    }
    assert_eq!(m2.partitions[0].end.as_str(), "001-0001-000000000000000012");
    assert_eq!(m2.partitions[1].start, m2.partitions[1].end);
    // Partition 1 had nothing new: run 2 wrote no file for it.
    let run2: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.contains("run=0000000002"))
        .collect();
    assert_eq!(
        run2,
        vec![
            "article-stock-changed/correction/run=0000000002/_SUCCESS",
            "article-stock-changed/correction/run=0000000002/correction-0000000002-p0.csv",
            "article-stock-changed/keys/run=0000000002/_SUCCESS",
            "article-stock-changed/keys/run=0000000002/keys-0000000002-p0.csv",
            "article-stock-changed/main/run=0000000002/_SUCCESS",
            "article-stock-changed/main/run=0000000002/main-0000000002-p0.csv",
            "article-stock-changed/older/run=0000000002/_SUCCESS",
            "article-stock-changed/older/run=0000000002/older-0000000002-p0.csv",
        ]
    );
}

#[tokio::test]
async fn a_run_with_nothing_new_writes_nothing() {
    let ws = Workspace::new();
    ws.run("article-stock-changed").await.unwrap();
    let before = ws.out_files();
    let summary = ws.run("article-stock-changed").await.unwrap();
    assert_eq!(summary.outcome, Outcome::NothingNew);
    assert_eq!(summary.sequence, Some(1));
    assert_eq!(summary.counts, RunCounts::default());
    assert_eq!(ws.out_files(), before);
    // A recording that grew by a keep-alive line only: read, nothing new,
    // and no plan left behind for the next run to follow.
    let m1 = manifest(&ws, "article-stock-changed", 1);
    let p0 = &m1.partitions[0];
    ws.append(
        "recorded/article-stock-changed/stream.jsonl",
        &format!(
            "{{\"cursor\":{{\"partition\":\"{}\",\"offset\":\"{}\"}}}}\n",
            p0.partition,
            p0.end.as_str()
        ),
    );
    let summary = ws.run("article-stock-changed").await.unwrap();
    assert_eq!(summary.outcome, Outcome::NothingNew);
    assert_eq!(ws.out_files(), before);
}

#[tokio::test]
async fn an_uncommitted_attempt_is_redone_under_the_same_names() {
    let ws = Workspace::new();
    ws.run("article-stock-changed").await.unwrap();
    let committed: Vec<(String, Vec<u8>)> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.contains("/run=") && f.ends_with(".csv"))
        .map(|f| {
            let bytes = std::fs::read(ws.out().join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    // Forget the commit but keep the plan and the files: what a crash just
    // before the manifest leaves behind.
    for f in ["_manifests/0000000001.json", "_manifests/_latest"] {
        std::fs::remove_file(ws.out().join("article-stock-changed").join(f)).unwrap();
    }
    let summary = ws.run("article-stock-changed").await.unwrap();
    assert!(summary.resumed);
    assert_eq!(summary.sequence, Some(1));
    for (file, bytes) in committed {
        assert_eq!(
            std::fs::read(ws.out().join(&file)).unwrap(),
            bytes,
            "{file} changed on retry"
        );
    }
}

#[tokio::test]
async fn late_events_are_corrections_across_runs() {
    let ws = Workspace::new();
    ws.run("article-stock-changed").await.unwrap();
    // Run 1 committed version 3 of 100000002 and version 1 of 100000006.
    let before = state_versions(&ws, &manifest(&ws, "article-stock-changed", 1));
    ws.append(
        "recorded/article-stock-changed/stream.jsonl",
        &article_line(
            0,
            15,
            &[
                (0x41, 100000002, 1, 50), // older than the committed version 3
                (0x42, 100000002, 3, 51), // the committed version again
                (0x43, 100000006, 2, 52), // newer: MAIN
                (0x44, 100000006, 1, 53), // older than version 2 of this run
                (0x45, 100000020, 1, 54), // a new key
            ],
        ),
    );
    let summary = ws.run("article-stock-changed").await.unwrap();
    assert_eq!(summary.counts.correction_events, 3);
    assert_eq!(summary.counts.main_input, 2);
    let (_, main) =
        csv_rows(&ws.read_out("article-stock-changed/main/run=0000000002/main-0000000002-p0.csv"));
    assert_eq!(
        main.iter()
            .map(|r| (r[0].clone().unwrap(), r[3].clone().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            ("100000006".to_string(), "2".to_string()),
            ("100000020".to_string(), "1".to_string())
        ]
    );
    let (_, correction) =
        csv_rows(&ws.read_out(
            "article-stock-changed/correction/run=0000000002/correction-0000000002-p0.csv",
        ));
    assert_eq!(
        correction
            .iter()
            .map(|r| r[6].clone().unwrap())
            .collect::<std::collections::BTreeSet<_>>(),
        [eid(0x41), eid(0x42), eid(0x44)].into_iter().collect()
    );
    // The key state now holds version 2 of 100000006 and the new key.
    let m2 = manifest(&ws, "article-stock-changed", 2);
    let after = state_versions(&ws, &m2);
    assert_eq!(after.len(), 6);
    assert_eq!(after[&100000006], 2);
    assert_eq!(after[&100000020], 1);
    assert_eq!(before.len(), 5);
    assert_eq!(before[&100000006], 1);
    assert_eq!(before[&100000002], 3);
    // Only the files the newest manifest names are kept.
    assert_eq!(state_files(&ws, "article-stock-changed"), state_paths(&m2));
}

/// Per article, the highest version the key state of a manifest holds.
fn state_versions(ws: &Workspace, m: &Manifest) -> std::collections::BTreeMap<i64, i64> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let mut versions = std::collections::BTreeMap::new();
    for path in state_paths(m) {
        let bytes = std::fs::read(ws.out().join(&m.topic).join(path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(bytes),
            1024,
        )
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let ordering = batch.column(1).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let best = versions.entry(ids.value(i)).or_insert(i64::MIN);
                *best = (*best).max(ordering.value(i));
            }
        }
    }
    versions
}
