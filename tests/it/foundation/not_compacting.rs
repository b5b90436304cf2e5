//! A topic that does not compact: every event goes to MAIN, mapped while
//! the partition is read, as a stream read once; what a mapping that reads
//! twice or stops early sees, and a MAIN file that cannot be written.

use materializer_core::commit::RunCounts;

use super::{history_workspace, manifest};
use crate::support::csv_rows;

#[tokio::test]
async fn a_topic_that_does_not_compact_keeps_every_event_in_main() {
    let ws = history_workspace();
    let summary = ws.run("article-stock-history").await.unwrap();
    assert_eq!(
        summary.counts,
        RunCounts {
            events_read: 3,
            main_input: 3,
            main_rows: 3,
            ..Default::default()
        }
    );
    let (_, main) =
        csv_rows(&ws.read_out("article-stock-history/main/run=0000000001/main-0000000001-p0.csv"));
    assert_eq!(
        main.iter()
            .map(|r| (r[3].clone().unwrap(), r[4].clone().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            ("1".to_string(), "11".to_string()),
            ("2".to_string(), "10".to_string()),
            ("2".to_string(), "12".to_string())
        ]
    );
    // An empty correction file and no key state: every version is history.
    let (_, correction) =
        csv_rows(&ws.read_out(
            "article-stock-history/correction/run=0000000001/correction-0000000001-p0.csv",
        ));
    assert!(correction.is_empty());
    let files = ws.out_files();
    assert!(files.iter().all(|f| !f.contains("/_state/")), "{files:?}");
    let m = manifest(&ws, "article-stock-history", 1);
    assert!(m.state.is_none() && m.key_state.is_none());
}

/// Such a topic is mapped while it is read, as a stream read once; a mapping
/// that reads the events twice gets them from the spool instead.
#[tokio::test]
async fn a_mapping_that_reads_the_events_twice_sees_every_event_twice() {
    let ws = history_workspace();
    let mapping = ws.sql().join("article-stock-history/mapping.sql");
    let sql = std::fs::read_to_string(&mapping).unwrap();
    // The analyst's output, then the same rows again from a second scan.
    let twice = sql.replace("CREATE VIEW output AS", "CREATE VIEW once AS")
        + "\nCREATE VIEW output AS SELECT * FROM once UNION ALL SELECT * FROM once;\n";
    std::fs::write(&mapping, twice).unwrap();
    let summary = ws.run("article-stock-history").await.unwrap();
    assert_eq!(
        (summary.counts.main_input, summary.counts.main_rows),
        (3, 6)
    );
    let (_, main) =
        csv_rows(&ws.read_out("article-stock-history/main/run=0000000001/main-0000000001-p0.csv"));
    let mut versions: Vec<String> = main.iter().map(|r| r[4].clone().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, ["10", "10", "11", "11", "12", "12"]);
}

/// A mapping that stops reading early still sees every event counted.
#[tokio::test]
async fn a_mapping_with_a_limit_reads_what_it_wants_and_every_event_is_counted() {
    let ws = history_workspace();
    let mapping = ws.sql().join("article-stock-history/mapping.sql");
    let sql = std::fs::read_to_string(&mapping).unwrap();
    let limited = sql.trim_end().trim_end_matches(';').to_string() + "\nLIMIT 1;\n";
    std::fs::write(&mapping, limited).unwrap();
    let summary = ws.run("article-stock-history").await.unwrap();
    assert_eq!(
        (
            summary.counts.events_read,
            summary.counts.main_input,
            summary.counts.main_rows
        ),
        (3, 3, 1)
    );
}

/// A MAIN file that cannot be written while the partition is read ends the
/// run with the writer's error, and commits nothing.
#[tokio::test]
async fn a_main_file_that_cannot_be_written_fails_the_run_naming_it() {
    let ws = history_workspace();
    // A file where the run's MAIN folder should be.
    let blocked = ws.out().join("article-stock-history/main/run=0000000001");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "not a folder").unwrap();
    let err = ws.run("article-stock-history").await.unwrap_err();
    let err = materializer_core::report(&err);
    assert!(
        err.contains("main-0000000001-p0.csv") && !err.contains("stopped reading"),
        "{err}"
    );
    let files = ws.out_files();
    assert!(files.iter().all(|f| !f.contains("_manifest")), "{files:?}");
}
