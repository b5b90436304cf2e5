//! Whole runs over the bundled recordings: exact rows of every file.

use materializer_core::run::{Manifest, Outcome, RunCounts};
use sha2::{Digest, Sha256};

use crate::support::{Workspace, csv_rows, parse_csv, row, sorted};

const ARTICLE_HEADER: [&str; 7] = [
    "article_id",
    "brand",
    "model",
    "version",
    "available_qty",
    "occurred_at",
    "eid",
];

fn eid(n: u32) -> String {
    format!("5a1e0000-0000-4000-8000-{n:012x}")
}

fn manifest(ws: &Workspace, topic: &str, seq: u64) -> Manifest {
    serde_json::from_str(&ws.read_out(&format!("{topic}/_manifests/{seq:010}.json"))).unwrap()
}

#[tokio::test]
async fn article_run_compacts_splits_corrections_and_rejects() {
    let ws = Workspace::new();
    let summary = ws.run("article-stock-changed").await.unwrap();
    assert_eq!(summary.outcome, Outcome::Committed);
    assert_eq!(summary.sequence, Some(1));

    let (header, rows) =
        csv_rows(&ws.read_out("article-stock-changed/main/run=0000000001/main-0000000001-p0.csv"));
    assert_eq!(header, row(&ARTICLE_HEADER));
    assert_eq!(
        rows,
        sorted(vec![
            row(&[
                "100000002",
                "Nike",
                "Air Runner",
                "3",
                "0",
                "2024-06-03T08:02:00Z",
                &eid(4)
            ]),
            row(&[
                "100000004",
                "Jack & Jones",
                "Slim Fit, \"Limited\"",
                "3",
                "10",
                "2024-06-03T08:03:00Z",
                &eid(5)
            ]),
            row(&[
                "100000006",
                "Fjällräven",
                "Kånken\nNo. 2",
                "1",
                "7",
                "2024-06-03T08:05:00Z",
                &eid(9)
            ]),
        ])
    );
    let (_, rows) =
        csv_rows(&ws.read_out(
            "article-stock-changed/correction/run=0000000001/correction-0000000001-p0.csv",
        ));
    assert_eq!(
        rows,
        sorted(vec![
            // version 2 arrived after version 3 of its article
            row(&[
                "100000004",
                "Jack & Jones",
                "Slim Fit, \"Limited\"",
                "2",
                "11",
                "2024-06-03T08:02:30Z",
                &eid(6)
            ]),
            // a late redelivery of version 2, after version 3
            row(&[
                "100000002",
                "Nike",
                "Air Runner",
                "2",
                "3",
                "2024-06-03T08:01:00Z",
                &eid(7)
            ]),
        ])
    );
    let (_, rows) =
        csv_rows(&ws.read_out("article-stock-changed/main/run=0000000001/main-0000000001-p1.csv"));
    assert_eq!(
        rows,
        sorted(vec![
            row(&[
                "100000001",
                "adidas",
                "Court Classic",
                "2",
                "6",
                "2024-06-03T08:04:00Z",
                &eid(24)
            ]),
            // empty brand stays an empty string, missing model is NULL
            row(&[
                "100000003",
                "\"\"",
                "",
                "5",
                "0",
                "2024-06-03T08:03:00Z",
                &eid(23)
            ]),
        ])
    );
    // A partition without out-of-order events still has its (empty) correction file.
    assert_eq!(
        ws.read_out("article-stock-changed/correction/run=0000000001/correction-0000000001-p1.csv"),
        "article_id,brand,model,version,available_qty,occurred_at,eid\n"
    );

    // Rejected events: raw, with offset, origin and reason.
    let rejected: Vec<serde_json::Value> = ws
        .read_out("article-stock-changed/rejected/run=0000000001/rejected-0000000001-p0.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let brief: Vec<(&str, &str, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["offset"].as_str().unwrap(),
                r["origin"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            (
                "001-0001-000000000000000007",
                "stream.jsonl:5",
                "field 'article_id': expected BIGINT, found the string \"abc\""
            ),
            (
                "001-0001-000000000000000009",
                "stream.jsonl:7",
                "required field 'version' is missing or null"
            ),
            (
                "001-0001-000000000000000010",
                "stream.jsonl:7",
                "not valid JSON: key must be a string at line 1 column 255"
            ),
        ]
    );
    let raw = rejected[0]["event"].as_str().unwrap();
    assert!(
        raw.starts_with("{\"metadata\":{\"eid\":\"5a1e0000-0000-4000-8000-000000000008\""),
        "{raw}"
    );
    assert!(
        raw.ends_with(
            "\"article_id\":\"abc\",\"brand\":\"Puma\",\"version\":1,\"available_qty\":1}"
        ),
        "{raw}"
    );

    // Every event is in exactly one place.
    let expected = RunCounts {
        events_read: 15,
        events_rejected: 3,
        main_input: 5,
        superseded: 5,
        correction_events: 2,
        main_rows: 5,
        correction_rows: 2,
        deletes: 0,
        // The first versions of three articles, kept for history.
        older_rows: 3,
    };
    assert_eq!(summary.counts, expected);
    let c = &summary.counts;
    assert_eq!(
        c.events_read,
        c.main_input + c.superseded + c.correction_events + c.events_rejected
    );

    let m = manifest(&ws, "article-stock-changed", 1);
    assert_eq!(m.counts, expected);
    let cursors: Vec<(&str, &str, &str, Option<u64>)> = m
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition.as_str(),
                p.start.as_str(),
                p.end.as_str(),
                p.events,
            )
        })
        .collect();
    assert_eq!(
        cursors,
        vec![
            ("0", "BEGIN", "001-0001-000000000000000010", Some(11)),
            ("1", "BEGIN", "001-0001-000000000000000003", Some(4)),
        ]
    );
}

#[tokio::test]
async fn manifest_lists_every_file_with_rows_bytes_and_checksum() {
    let ws = Workspace::new();
    ws.run("article-stock-changed").await.unwrap();
    let m = manifest(&ws, "article-stock-changed", 1);
    let listed: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        listed,
        vec![
            "main/run=0000000001/main-0000000001-p0.csv",
            "correction/run=0000000001/correction-0000000001-p0.csv",
            "older/run=0000000001/older-0000000001-p0.csv",
            "rejected/run=0000000001/rejected-0000000001-p0.ndjson",
            "keys/run=0000000001/keys-0000000001-p0.csv",
            "main/run=0000000001/main-0000000001-p1.csv",
            "correction/run=0000000001/correction-0000000001-p1.csv",
            "older/run=0000000001/older-0000000001-p1.csv",
            "keys/run=0000000001/keys-0000000001-p1.csv",
        ]
    );
    // The KEYS file names every version the run decided: the newest of each
    // key, each late one and each older one (for history), whether or not the
    // mapping made rows of it. Version 2 of 100000002 came twice; the copy
    // that arrived last is the one that counts, a late one.
    assert_eq!(
        ws.read_out_sorted("article-stock-changed/keys/run=0000000001/keys-0000000001-p0.csv"),
        "article_id,version,deleted,kind\n\
         100000002,1,false,older\n\
         100000002,2,false,correction\n\
         100000002,3,false,main\n\
         100000004,1,false,older\n\
         100000004,2,false,correction\n\
         100000004,3,false,main\n\
         100000006,1,false,main\n"
    );
    for file in &m.files {
        let bytes = std::fs::read(ws.out().join("article-stock-changed").join(&file.path)).unwrap();
        assert_eq!(file.bytes, bytes.len() as u64, "{}", file.path);
        assert_eq!(
            file.sha256,
            hex::encode(Sha256::digest(&bytes)),
            "{}",
            file.path
        );
        let rows = if file.path.ends_with(".csv") {
            parse_csv(std::str::from_utf8(&bytes).unwrap()).len() as u64 - 1
        } else {
            bytes.iter().filter(|&&b| b == b'\n').count() as u64
        };
        assert_eq!(file.rows, rows, "{}", file.path);
    }
    // Everything the output holds: the committed files, markers, the key state and the ledger.
    let state = m.key_state.as_ref().expect("the run changed the key state");
    assert_eq!(state.rows(), 5, "one entry per key of the MAIN input");
    assert_eq!(state_files(&ws, "article-stock-changed"), state_paths(&m));
    let listed: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| !f.contains("/_state/"))
        .collect();
    assert_eq!(
        listed,
        vec![
            "article-stock-changed/_manifests/0000000001.json",
            "article-stock-changed/_manifests/_latest",
            "article-stock-changed/_plans/0000000001.json",
            "article-stock-changed/_redshift/correction-0000000001.json",
            "article-stock-changed/_redshift/keys-0000000001.json",
            "article-stock-changed/_redshift/main-0000000001.json",
            "article-stock-changed/_redshift/older-0000000001.json",
            "article-stock-changed/correction/run=0000000001/_SUCCESS",
            "article-stock-changed/correction/run=0000000001/correction-0000000001-p0.csv",
            "article-stock-changed/correction/run=0000000001/correction-0000000001-p1.csv",
            "article-stock-changed/keys/run=0000000001/_SUCCESS",
            "article-stock-changed/keys/run=0000000001/keys-0000000001-p0.csv",
            "article-stock-changed/keys/run=0000000001/keys-0000000001-p1.csv",
            "article-stock-changed/main/run=0000000001/_SUCCESS",
            "article-stock-changed/main/run=0000000001/main-0000000001-p0.csv",
            "article-stock-changed/main/run=0000000001/main-0000000001-p1.csv",
            "article-stock-changed/older/run=0000000001/_SUCCESS",
            "article-stock-changed/older/run=0000000001/older-0000000001-p0.csv",
            "article-stock-changed/older/run=0000000001/older-0000000001-p1.csv",
            "article-stock-changed/rejected/run=0000000001/_SUCCESS",
            "article-stock-changed/rejected/run=0000000001/rejected-0000000001-p0.ndjson",
        ]
    );
    let redshift: serde_json::Value =
        serde_json::from_str(&ws.read_out("article-stock-changed/_redshift/main-0000000001.json"))
            .unwrap();
    let urls: Vec<&str> = redshift["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 2);
    assert!(
        urls[0].ends_with("/article-stock-changed/main/run=0000000001/main-0000000001-p0.csv"),
        "{urls:?}"
    );
}

#[tokio::test]
async fn orders_are_flattened_with_unnest_and_dotted_access() {
    let ws = Workspace::new();
    let summary = ws.run("order-placed").await.unwrap();
    let header = row(&[
        "order_number",
        "status",
        "placed_at",
        "occurred_at",
        "customer_id",
        "country_code",
        "gift_note",
        "sku",
        "quantity",
        "unit_price",
        "currency",
        "discount_code",
        "discount_amount",
    ]);
    let note = "Happy birthday, \"Anna\"!\nLove, Tom";
    let (h, rows) =
        csv_rows(&ws.read_out("order-placed/main/run=0000000001/main-0000000001-p0.csv"));
    assert_eq!(h, header);
    let paid = [
        "ORD-1",
        "paid",
        "2024-06-03T09:00:00Z",
        "2024-06-03T09:30:00Z",
        "C-1001",
        "DE",
        note,
    ];
    let line = |rest: &[&str]| row(&[&paid[..], rest].concat());
    assert_eq!(
        rows,
        sorted(vec![
            // one row per item and discount of the latest version ("paid")
            line(&["SKU-A", "2", "19.99", "EUR", "SUMMER10", "2.0"]),
            line(&["SKU-A", "2", "19.99", "EUR", "VIP", "1.5"]),
            // discounts: null -> unnest_outer keeps the line with NULL discount
            line(&["SKU-B", "1", "5.0", "EUR", "", ""]),
            // items: [] -> unnest_outer keeps the order as one row with NULL line columns
            row(&[
                "ORD-2",
                "placed",
                "2024-06-03T09:05:00Z",
                "2024-06-03T09:05:00Z",
                "C-2002",
                "AT",
                "",
                "",
                "",
                "",
                "",
                "",
                ""
            ]),
        ])
    );
    let (_, rows) = csv_rows(
        &ws.read_out("order-placed/correction/run=0000000001/correction-0000000001-p0.csv"),
    );
    assert_eq!(
        rows,
        // "placed" occurred before "paid" but arrived after it
        vec![row(&[
            "ORD-1",
            "placed",
            "2024-06-03T09:00:00Z",
            "2024-06-03T09:10:00Z",
            "C-1001",
            "DE",
            "\"\"",
            "SKU-A",
            "1",
            "19.99",
            "EUR",
            "",
            ""
        ])]
    );
    let (_, rows) =
        csv_rows(&ws.read_out("order-placed/main/run=0000000001/main-0000000001-p1.csv"));
    assert_eq!(
        rows,
        sorted(vec![
            // items: null, and a customer without address
            row(&[
                "ORD-3",
                "placed",
                "2024-06-03T09:01:00Z",
                "2024-06-03T09:01:00Z",
                "C-3003",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                ""
            ]),
            // ORD-4 keeps its newest status
            row(&[
                "ORD-4",
                "shipped",
                "2024-06-03T09:02:00Z",
                "2024-06-03T09:20:00Z",
                "C-2002",
                "AT",
                "",
                "SKU-C",
                "3",
                "7.5",
                "EUR",
                "BULK",
                "0.75"
            ]),
        ])
    );
    assert_eq!(
        summary.counts,
        RunCounts {
            events_read: 7,
            events_rejected: 0,
            main_input: 4,
            superseded: 2,
            correction_events: 1,
            main_rows: 6,
            correction_rows: 1,
            deletes: 0,
            older_rows: 4,
        }
    );
}

#[tokio::test]
async fn plain_unnest_drops_events_with_empty_or_null_arrays() {
    let ws = Workspace::new();
    let mapping = ws.sql().join("order-placed/mapping.sql");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        text.replace("unnest_outer(items)", "unnest(items)"),
    )
    .unwrap();
    ws.run("order-placed").await.unwrap();
    let orders = |file: &str| -> Vec<String> {
        csv_rows(&ws.read_out(file))
            .1
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect()
    };
    // ORD-2 (items: []) and ORD-3 (items: null) have no rows at all.
    assert_eq!(
        orders("order-placed/main/run=0000000001/main-0000000001-p0.csv"),
        vec!["ORD-1", "ORD-1", "ORD-1"]
    );
    assert_eq!(
        orders("order-placed/main/run=0000000001/main-0000000001-p1.csv"),
        vec!["ORD-4"]
    );
}

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
async fn a_copied_topic_with_an_edited_mapping_shows_the_edit() {
    let ws = Workspace::new();
    let from = ws.sql().join("article-stock-changed");
    let to = ws.sql().join("article-stock-brief");
    crate::support::copy_dir(&from, &to);
    crate::support::copy_dir(
        &ws.path("recorded/article-stock-changed"),
        &ws.path("recorded/article-stock-brief"),
    );
    std::fs::write(
        to.join("mapping.sql"),
        "CREATE VIEW output AS\nSELECT article_id, upper(brand) AS brand, available_qty > 0 AS in_stock FROM events;\n",
    )
    .unwrap();
    ws.run("article-stock-brief").await.unwrap();
    let (header, rows) =
        csv_rows(&ws.read_out("article-stock-brief/main/run=0000000001/main-0000000001-p1.csv"));
    assert_eq!(header, row(&["article_id", "brand", "in_stock"]));
    assert_eq!(
        rows,
        sorted(vec![
            row(&["100000001", "ADIDAS", "true"]),
            row(&["100000003", "\"\"", "false"])
        ])
    );
}

fn article_line(partition: u32, offset: u64, events: &[(u32, u64, i64, i64)]) -> String {
    let events: Vec<String> = events
        .iter()
        .map(|(n, article, version, qty)| {
            format!(
                r#"{{"metadata":{{"eid":"{}","occurred_at":"2024-06-04T10:00:00.000Z","partition":"{partition}"}},"article_id":{article},"brand":"Nike","model":"Air Runner","version":{version},"available_qty":{qty}}}"#,
                eid(*n)
            )
        })
        .collect();
    format!(
        r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{offset:018}"}},"events":[{}]}}"#,
        events.join(",")
    ) + "\n"
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

/// The key state files in the output folder of `topic`.
fn state_files(ws: &Workspace, topic: &str) -> Vec<String> {
    ws.out_files()
        .into_iter()
        .filter(|f| f.contains("/_state/"))
        .map(|f| f.trim_start_matches(&format!("{topic}/")).to_string())
        .collect()
}

/// The key state files a manifest names, sorted.
fn state_paths(m: &Manifest) -> Vec<String> {
    let mut paths: Vec<String> = m
        .key_state
        .iter()
        .flat_map(|index| &index.segments)
        .map(|s| s.path.clone())
        .collect();
    paths.sort();
    paths
}

/// A workspace with the topic `article-stock-history`: the example topic
/// with `compact = false`, and three versions of one article recorded.
fn history_workspace() -> Workspace {
    let ws = Workspace::new();
    let from = ws.sql().join("article-stock-changed");
    let to = ws.sql().join("article-stock-history");
    crate::support::copy_dir(&from, &to);
    std::fs::create_dir_all(ws.path("recorded/article-stock-history")).unwrap();
    std::fs::write(
        ws.path("recorded/article-stock-history/stream.jsonl"),
        article_line(
            0,
            2,
            &[
                (1, 100000002, 2, 10),
                (2, 100000002, 1, 11),
                (3, 100000002, 2, 12),
            ],
        ),
    )
    .unwrap();
    let toml = std::fs::read_to_string(to.join("topic.toml")).unwrap();
    std::fs::write(
        to.join("topic.toml"),
        toml.replace(
            "ordering_key = \"version\"",
            "ordering_key = \"version\"\ncompact = false",
        ),
    )
    .unwrap();
    ws
}

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
