//! What a run decodes of the recordings: only the metadata fields the
//! mapping reads; and a recorded line cut short fails the run, naming the
//! file and line.

use crate::support::Workspace;

#[tokio::test]
async fn a_run_decodes_only_the_metadata_fields_the_mapping_reads() {
    let ws = Workspace::new();
    let catalog = ws.catalog().await;
    let topic = catalog.topic("article-stock-changed").unwrap();
    let fields = |schema: &arrow::datatypes::Schema| -> Vec<String> {
        match schema.field_with_name("metadata").unwrap().data_type() {
            arrow::datatypes::DataType::Struct(children) => {
                children.iter().map(|c| c.name().clone()).collect()
            }
            other => panic!("metadata is {other}"),
        }
    };
    // The mapping reads metadata.occurred_at and metadata.eid (both required anyway).
    assert_eq!(fields(&topic.schema().read_payload), ["eid", "occurred_at"]);
    // The declared table keeps all of Nakadi's metadata (previews, GET /topics).
    assert_eq!(fields(&topic.schema().payload).len(), 10);
    // A mapping that selects metadata whole decodes it whole.
    let to = ws.sql().join("article-stock-meta");
    crate::support::copy_dir(&ws.sql().join("article-stock-changed"), &to);
    std::fs::write(
        to.join("mapping.sql"),
        "CREATE VIEW output AS SELECT article_id, version, metadata.flow_id AS flow, metadata.received_at AS received FROM events;\n",
    )
    .unwrap();
    let catalog = ws.catalog().await;
    let topic = catalog.topic("article-stock-meta").unwrap();
    assert_eq!(
        fields(&topic.schema().read_payload),
        ["eid", "occurred_at", "received_at", "flow_id"]
    );
}

/// A recorded line cut short in its events fails the run, naming the file and
/// line; nothing is committed.
#[tokio::test]
async fn a_recording_with_a_cut_line_fails_naming_the_file_and_line() {
    let ws = Workspace::new();
    let mut lines = crate::support::article_stream(400, 1, 5);
    assert!(lines.len() >= 4);
    let cut = lines[1].len() / 2;
    lines[1].truncate(cut);
    ws.record("article-stock-changed", &lines);
    let err = ws.run("article-stock-changed").await.unwrap_err();
    let err = materializer_core::report(&err);
    assert!(
        err.contains("article-stock-changed") && err.contains("stream.jsonl:2: "),
        "{err}"
    );
    assert!(
        !ws.out_files().iter().any(|f| f.contains("_manifests/")),
        "{:?}",
        ws.out_files()
    );
}
