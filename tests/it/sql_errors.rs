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
