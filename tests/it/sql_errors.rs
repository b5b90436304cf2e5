//! Mistakes in a mapping as the analyst reads them: the place of the
//! expression, the fields of a struct, the name that was probably meant,
//! and for a query that fails on an event, the view, the line and the event.

use std::process::Output;

use crate::support::{Workspace, copy_dir, repo};

fn materializer(ws: &Workspace, args: &[&str]) -> Output {
    ws.materializer(args)
}

/// What `preview` says of `topic`'s sample events under the draft `sql`.
fn draft_error(topic: &str, sql: &str) -> String {
    let ws = Workspace::new();
    copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    std::fs::write(ws.path("draft.sql"), sql).unwrap();
    let samples = format!("fixtures/samples/{topic}.jsonl");
    let out = materializer(
        &ws,
        &[
            "preview",
            topic,
            "--events",
            &samples,
            "--mapping",
            "draft.sql",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_struct_field_is_pointed_at_with_the_structs_fields() {
    let sql = "CREATE VIEW lines AS\nSELECT order_number, unnest(items) AS item\nFROM events;\n\n\
               CREATE VIEW output AS\nSELECT order_number,\n       item.sku AS sku,\n       \
               item.qty AS qty\nFROM lines;\n";
    assert_eq!(
        draft_error("order-placed", sql),
        "error: draft.sql:8:8: in view output: item has no field qty; its fields are sku, \
         quantity, unit_price, discounts\n"
    );
    let sql = "CREATE VIEW output AS\nSELECT order_number,\n  customer.adress.country_code AS cc\n\
               FROM events;\n";
    assert_eq!(
        draft_error("order-placed", sql),
        "error: draft.sql:3:3: in view output: customer has no field adress; its fields are id, \
         address; did you mean 'address'?\n"
    );
}

#[test]
fn a_near_miss_name_gets_a_did_you_mean() {
    let sql = "CREATE VIEW output AS\nSELECT article_id,\n       verison\nFROM events;\n";
    assert_eq!(
        draft_error("article-stock-changed", sql),
        "error: draft.sql:3:8: in view output: column 'verison' not found; did you mean \
         'version'?\n"
    );
    // A table the view does not read.
    let sql = "CREATE VIEW output AS\nSELECT order_number,\n       customers.id\nFROM events;\n";
    assert_eq!(
        draft_error("order-placed", sql),
        "error: draft.sql:3:8: in view output: column 'id' not found in 'customers'; there is no \
         table or view customers here (the view reads events), and a column's nested field is \
         written column.field; did you mean 'customer'?\n"
    );
}

/// An article event with `brand`, as the article topic takes it.
fn article(id: u64, brand: &str) -> String {
    format!(
        r#"{{"metadata":{{"eid":"5a1e0000-0000-4000-8000-{id:012}","occurred_at":"2024-06-03T08:00:00Z"}},"article_id":{id},"brand":"{brand}","model":"m","version":1,"available_qty":1}}"#
    ) + "\n"
}

const CASTING: &str = "CREATE VIEW typed AS\nSELECT article_id,\n       cast(brand AS INT) AS b\n\
                       FROM events;\n\nCREATE VIEW output AS\nSELECT article_id, b FROM typed;\n";

#[test]
fn a_query_failing_on_an_event_names_the_view_the_line_and_the_event() {
    let ws = Workspace::new();
    let events = article(1, "7") + &article(2, "8") + &article(3, "paid");
    std::fs::write(ws.path("own.jsonl"), &events).unwrap();
    std::fs::write(ws.path("draft.sql"), CASTING).unwrap();
    let preview = materializer(
        &ws,
        &[
            "preview",
            "article-stock-changed",
            "--events",
            "own.jsonl",
            "--mapping",
            "draft.sql",
        ],
    );
    assert_eq!(preview.status.code(), Some(6));
    assert_eq!(
        String::from_utf8_lossy(&preview.stderr),
        "error: draft.sql:3:13: in view typed: Cast error: Cannot cast string 'paid' to value of \
         Int32 type (the first event it fails on: partition preview, offset 2)\n"
    );

    // A run says the same, naming the event by its partition and offset.
    copy_dir(&ws.path("sql/article-stock-changed"), &ws.path("sql/typed"));
    std::fs::write(ws.path("sql/typed/mapping.sql"), CASTING).unwrap();
    let run = materializer(&ws, &["run", "--topic", "typed", "--source", "own.jsonl"]);
    assert_eq!(run.status.code(), Some(6));
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "error: topic typed: sql/typed/mapping.sql:3:13: in view typed: Cast error: Cannot cast \
         string 'paid' to value of Int32 type (the first event it fails on: partition \
         own.jsonl, offset 2)\n"
    );
}

#[test]
fn a_topic_mapped_while_read_names_the_event_its_query_fails_on() {
    let ws = Workspace::new();
    let events = article(1, "7") + &article(2, "paid") + &article(3, "9");
    std::fs::write(ws.path("own.jsonl"), &events).unwrap();
    copy_dir(&ws.path("sql/article-stock-changed"), &ws.path("sql/typed"));
    std::fs::write(ws.path("sql/typed/mapping.sql"), CASTING).unwrap();
    // `compact` is a top-level key: it goes before the first table.
    let toml = std::fs::read_to_string(ws.path("sql/typed/topic.toml")).unwrap();
    let toml = toml.replacen("[output]", "compact = false\n\n[output]", 1);
    std::fs::write(ws.path("sql/typed/topic.toml"), toml).unwrap();
    let run = materializer(&ws, &["run", "--topic", "typed", "--source", "own.jsonl"]);
    assert_eq!(run.status.code(), Some(6), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "error: topic typed: sql/typed/mapping.sql:3:13: in view typed: Cast error: Cannot cast \
         string 'paid' to value of Int32 type (the first event it fails on: partition \
         own.jsonl, event 1 of this run (from 0))\n"
    );
}
