//! A memory budget too small for the decoded events: partitions spill to
//! temp files, or are spooled instead of streamed, and the files written
//! are the very same.

use super::history_workspace;
use crate::support::Workspace;

/// Runs `topic` twice: as usual, and with a memory budget of 256 KB into
/// `out-tight`. Checks that both wrote the same counts and the very same data
/// files (CSV), and returns both summaries.
async fn roomy_and_tight(
    ws: &Workspace,
    topic: &str,
    data_files_expected: usize,
) -> (
    materializer_core::run::RunSummary,
    materializer_core::run::RunSummary,
) {
    use materializer_core::sink::{OutputLocation, S3Settings};
    use materializer_core::{Engine, EngineSettings};

    let roomy = ws.run(topic).await.unwrap();
    let tight_out = ws.path("out-tight");
    let output =
        OutputLocation::parse(&tight_out.display().to_string(), &S3Settings::default()).unwrap();
    let engine = Engine::new(EngineSettings {
        memory_limit: 256 << 10,
        ..EngineSettings::default()
    })
    .unwrap();
    let request = ws.request(topic, output).await;
    let tight = materializer_core::run::execute(&engine, request)
        .await
        .unwrap();
    assert_eq!(tight.counts, roomy.counts);

    let data_files: Vec<&str> = roomy
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| p.ends_with(".csv"))
        .collect();
    assert_eq!(data_files.len(), data_files_expected, "{data_files:?}");
    for path in data_files {
        let roomy_bytes = std::fs::read(ws.out().join(topic).join(path)).unwrap();
        let tight_bytes = std::fs::read(tight_out.join(topic).join(path)).unwrap();
        if path.contains("/main/") {
            assert!(roomy_bytes.len() > 100, "{path}");
        }
        assert!(roomy_bytes == tight_bytes, "{path} differs");
    }
    (roomy, tight)
}

/// With a memory budget too small for the decoded events, every partition
/// spills them to a temp file, and the run writes the very same files.
#[tokio::test]
async fn a_run_that_spills_decoded_events_writes_the_same_files() {
    let ws = Workspace::new();
    ws.record(
        "article-stock-changed",
        &crate::support::article_stream(6000, 3, 11),
    );
    // MAIN, CORRECTION, OLDER and KEYS of three partitions.
    let (roomy, tight) = roomy_and_tight(&ws, "article-stock-changed", 12).await;
    assert_eq!(roomy.spilled_partitions, 0);
    assert_eq!(tight.spilled_partitions, 3);
    assert!(tight.counts.correction_events > 0 && tight.counts.superseded > 0);
}

/// A topic that does not compact is mapped while it is read when a file open
/// per partition fits the memory budget; in a budget too small for that, its
/// events go through the spool, and the files are the same.
#[tokio::test]
async fn a_topic_that_does_not_compact_writes_the_same_files_streamed_or_spooled() {
    let ws = history_workspace();
    ws.record(
        "article-stock-history",
        &crate::support::article_stream(6000, 3, 11),
    );
    let (streamed, spooled) = roomy_and_tight(&ws, "article-stock-history", 6).await; // MAIN and CORRECTION
    assert_eq!(streamed.spilled_partitions, 0);
    assert_eq!(spooled.spilled_partitions, 3);
    assert_eq!(
        streamed.counts.main_rows,
        6000 - streamed.counts.events_rejected
    );
}
