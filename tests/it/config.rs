//! Broken configuration is refused at load with the file, line and column.

use crate::support::Workspace;

/// Loads the workspace's topics after `edit` and returns why `topic` does not load.
async fn load_error(edit: impl FnOnce(&std::path::Path)) -> String {
    let ws = Workspace::new();
    let topic_dir = ws.sql().join("article-stock-changed");
    edit(&topic_dir);
    let catalog = ws.catalog().await;
    let broken = catalog
        .broken
        .get("article-stock-changed")
        .cloned()
        .unwrap_or_else(|| panic!("topic still loads"));
    // The place kept with the error is the one its message starts with.
    let at = broken.at.as_ref().expect("a place");
    let prefix = match (at.line, at.column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}: ", at.file.display()),
        _ => format!("{}", at.file.display()),
    };
    assert!(
        broken.reason.starts_with(&prefix),
        "{prefix} / {}",
        broken.reason
    );
    // Paths in messages are the workspace's; make them relative for comparing.
    broken
        .reason
        .replace(&format!("{}/", ws.sql().display()), "")
}

fn replace_in(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[tokio::test]
async fn a_column_the_schema_does_not_have_points_at_its_line_and_column() {
    let err = load_error(|d| {
        replace_in(
            &d.join("mapping.sql"),
            "    available_qty,",
            "    available_quantity,",
        )
    })
    .await;
    assert_eq!(
        err,
        "article-stock-changed/mapping.sql:9:5: in view output: column 'available_quantity' not \
         found; did you mean 'available_qty'?"
    );
}

#[tokio::test]
async fn sql_that_does_not_parse_points_at_the_token() {
    let err = load_error(|d| replace_in(&d.join("mapping.sql"), "    brand,", "    brand,,")).await;
    assert_eq!(
        err,
        "article-stock-changed/mapping.sql:6:11: SQL syntax: Expected: an expression, found: ,"
    );
}

#[tokio::test]
async fn a_wrong_key_in_topic_toml_names_the_line() {
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "partitioning_key =",
            "partition_key =",
        )
    })
    .await;
    assert!(
        err.starts_with("article-stock-changed/topic.toml:7:1: unknown field `partition_key`"),
        "{err}"
    );
    assert!(
        err.contains(
            "unknown field `partition_key`, expected one of `event_type`, `partitioning_key`"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_file_is_named() {
    let err = load_error(|d| std::fs::remove_file(d.join("schema.json")).unwrap()).await;
    assert_eq!(
        err,
        "article-stock-changed/schema.json: No such file or directory (os error 2)"
    );
}

#[tokio::test]
async fn keys_must_be_columns_of_the_events() {
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "ordering_key = \"version\"",
            "ordering_key = \"revision\"",
        )
    })
    .await;
    assert_eq!(
        err,
        "article-stock-changed/topic.toml:9:16: ordering_key \"revision\" is not a column of the events \
         (columns: metadata, article_id, brand, model, version, available_qty; nested fields as parent.child)"
    );
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "ordering_key = \"version\"",
            "ordering_key = \"metadata\"",
        )
    })
    .await;
    assert!(err.contains("ordering_key \"metadata\" is Struct"), "{err}");
}

#[tokio::test]
async fn statements_other_than_views_are_refused() {
    let err = load_error(|d| {
        std::fs::write(
            d.join("mapping.sql"),
            "CREATE VIEW output AS SELECT article_id FROM events;\nCREATE TABLE copy AS SELECT * FROM output;\n",
        )
        .unwrap()
    })
    .await;
    assert_eq!(
        err,
        "article-stock-changed/mapping.sql:2:1: only CREATE VIEW statements are allowed in a mapping, found `CREATE TABLE ...`"
    );
    let err = load_error(|d| {
        std::fs::write(
            d.join("mapping.sql"),
            "CREATE VIEW output AS SELECT * FROM '/etc/passwd';\n",
        )
        .unwrap()
    })
    .await;
    assert!(
        err.starts_with("article-stock-changed/mapping.sql:1:"),
        "{err}"
    );
}

#[tokio::test]
async fn nested_output_columns_are_refused_for_csv() {
    let err = load_error(|d| {
        std::fs::write(
            d.join("mapping.sql"),
            "CREATE VIEW output AS\nSELECT article_id, metadata FROM events;\n",
        )
        .unwrap()
    })
    .await;
    assert!(
        err.starts_with(
            "article-stock-changed/mapping.sql:1:1: output column \"metadata\" is STRUCT<"
        ),
        "{err}"
    );
    assert!(err.contains("CSV holds flat columns only"), "{err}");
}

#[tokio::test]
async fn a_schema_that_is_not_json_is_named() {
    let err = load_error(|d| std::fs::write(d.join("schema.json"), "{\"name\": ").unwrap()).await;
    assert_eq!(
        err,
        "article-stock-changed/schema.json: not valid JSON: EOF while parsing a value at line 1 column 9"
    );
}

#[tokio::test]
async fn settings_that_name_columns_point_at_their_line_and_column() {
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "partitioning_key = \"article_id\"",
            "partitioning_key = [\"article_id\", \"shop\"]",
        )
    })
    .await;
    assert!(
        err.starts_with(
            "article-stock-changed/topic.toml:7:35: partitioning_key \"shop\" is not a column"
        ),
        "{err}"
    );
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "format = \"csv\"",
            "format = \"csv\"\npartition_by = [\"brand\", \"color\"]",
        )
    })
    .await;
    assert!(
        err.starts_with(
            "article-stock-changed/topic.toml:13:26: output.partition_by names \"color\", which is not an output column"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_subscription_section_needs_the_subscription_mode_and_back() {
    let err = load_error(|d| {
        let path = d.join("topic.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}\n[source]\nmode = \"subscription\"\n"),
        )
        .unwrap();
    })
    .await;
    assert!(
        err.starts_with("article-stock-changed/topic.toml:14:1: source.mode = \"subscription\" needs a [source.subscription] section"),
        "{err}"
    );
    let err = load_error(|d| {
        let path = d.join("topic.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}\n[source.subscription]\nowning_application = \"dwh\"\n"),
        )
        .unwrap();
    })
    .await;
    assert!(
        err.contains("[source.subscription] is set but source.mode is \"cursors\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_delete_predicate_that_is_not_a_condition_points_at_its_line() {
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "ordering_key = \"version\"",
            "ordering_key = \"version\"\ndelete_when = \"available_qty + 1\"",
        )
    })
    .await;
    assert_eq!(
        err,
        "article-stock-changed/topic.toml:10:15: delete_when \"available_qty + 1\": the predicate \
         is Int64, not a boolean (true for an event that deletes its key)"
    );
}

#[tokio::test]
async fn a_delete_predicate_over_an_unknown_column_names_it() {
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "ordering_key = \"version\"",
            "ordering_key = \"version\"\ndelete_when = \"state = 'gone'\"",
        )
    })
    .await;
    assert!(
        err.starts_with("article-stock-changed/topic.toml:10:15: delete_when \"state = 'gone'\": "),
        "{err}"
    );
    assert!(err.contains("state"), "{err}");
}

#[tokio::test]
async fn a_delete_predicate_without_compaction_is_refused() {
    let err = load_error(|d| {
        replace_in(
            &d.join("topic.toml"),
            "ordering_key = \"version\"",
            "ordering_key = \"version\"\ncompact = false\ndelete_when = \"available_qty = 0\"",
        )
    })
    .await;
    assert_eq!(
        err,
        "article-stock-changed/topic.toml:11:15: delete_when needs compaction: with compact = false \
         every event is kept (select the delete flag in the mapping instead)"
    );
}
