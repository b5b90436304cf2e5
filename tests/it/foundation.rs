//! Whole runs over the bundled recordings: exact rows of every file.
//!
//! This file holds the fixtures the parts share and the runs of the bundled
//! topics as they are (and one edited). The parts: [`successive_runs`]
//! (runs that follow a committed one), [`not_compacting`] (a topic that
//! keeps every event), [`memory`] (the same files in a tight memory budget)
//! and [`decoding`] (what is decoded, and a recording cut short).

use materializer_core::commit::{Manifest, RunCounts};
use materializer_core::run::Outcome;
use sha2::{Digest, Sha256};

use crate::support::{Workspace, csv_rows, parse_csv, row, sorted};

mod decoding;
mod memory;
mod not_compacting;
mod successive_runs;

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

/// `compression = "zstd"` writes every CSV file zstd-compressed, named
/// `.csv.zst`, holding the rows of the same run uncompressed.
#[tokio::test]
async fn zstd_csv_files_hold_what_plain_files_hold() {
    let ws = Workspace::new();
    let topic = "article-stock-changed";
    ws.record(topic, &crate::support::article_stream(2000, 4, 3));
    ws.run(topic).await.unwrap();
    let toml = ws.sql().join(topic).join("topic.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!("{text}\n[output.csv]\ncompression = \"zstd\"\n"),
    )
    .unwrap();
    let packed = ws.path("zstd-out");
    ws.run_with(topic, ws.output_at("zstd-out")).await.unwrap();
    let plain: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.ends_with(".csv"))
        .collect();
    assert!(
        plain.iter().any(|f| f.contains("/correction/")),
        "{plain:?}"
    );
    for file in &plain {
        let bytes = std::fs::read(packed.join(format!("{file}.zst")))
            .unwrap_or_else(|e| panic!("{file}.zst: {e}"));
        let unpacked = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
        assert_eq!(csv_rows(&unpacked), csv_rows(&ws.read_out(file)), "{file}");
    }
    let packed_files: Vec<String> = crate::support::files_under(&packed)
        .into_iter()
        .filter(|f| f.contains(".csv"))
        .collect();
    let expected: Vec<String> = plain.iter().map(|f| format!("{f}.zst")).collect();
    assert_eq!(packed_files, expected);
}

/// `[output.parquet]`: every column chunk of every Parquet file uses the
/// codec asked for (`zstd` by default, `snappy`, `none`), and no row group
/// holds more than `row_group_rows` rows (a file with more rows has several);
/// the MAIN files hold one row per article of the events.
#[tokio::test]
async fn parquet_files_use_the_codec_and_row_groups_asked_for() {
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let topic = "article-stock-changed";
    let stream = crate::support::article_stream(3000, 2, 41);
    let mut articles = std::collections::BTreeSet::new();
    for line in &stream {
        let batch: serde_json::Value = serde_json::from_str(line).unwrap();
        for event in batch["events"].as_array().into_iter().flatten() {
            articles.insert(event["article_id"].as_i64().unwrap());
        }
    }
    let cases: [(&str, Option<usize>, fn(Compression) -> bool); 4] = [
        ("", None, |c| matches!(c, Compression::ZSTD(_))),
        ("compression = \"zstd\"\n", None, |c| {
            matches!(c, Compression::ZSTD(_))
        }),
        (
            "compression = \"snappy\"\nrow_group_rows = 100\n",
            Some(100),
            |c| c == Compression::SNAPPY,
        ),
        (
            "compression = \"none\"\nrow_group_rows = 7\n",
            Some(7),
            |c| c == Compression::UNCOMPRESSED,
        ),
    ];
    for (settings, row_group_rows, codec_asked) in cases {
        let ws = Workspace::new();
        ws.record(topic, &stream);
        let toml = ws.sql().join(topic).join("topic.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        assert!(text.contains("format = \"csv\""), "{text}");
        let mut text = text.replace("format = \"csv\"", "format = \"parquet\"");
        if !settings.is_empty() {
            text.push_str(&format!("\n[output.parquet]\n{settings}"));
        }
        std::fs::write(&toml, text).unwrap();
        ws.run(topic).await.unwrap();
        let files: Vec<String> = ws
            .out_files()
            .into_iter()
            .filter(|f| f.ends_with(".parquet") && !f.starts_with(&format!("{topic}/_state")))
            .collect();
        assert!(
            files.iter().any(|f| f.contains("/correction/")),
            "{settings}: {files:?}"
        );
        let limit = row_group_rows.unwrap_or(1 << 20);
        let (mut main_rows, mut split) = (0, false);
        for file in &files {
            let reader =
                SerializedFileReader::new(std::fs::File::open(ws.out().join(file)).unwrap())
                    .unwrap();
            let metadata = reader.metadata();
            split |= metadata.num_row_groups() > 1;
            for group in metadata.row_groups() {
                assert!(
                    group.num_rows() as usize <= limit,
                    "{settings}: {file}: a row group of {} rows",
                    group.num_rows()
                );
                for column in group.columns() {
                    assert!(
                        codec_asked(column.compression()),
                        "{settings}: {file}: {} is {:?}",
                        column.column_path(),
                        column.compression()
                    );
                }
            }
            if file.contains("/main/") {
                main_rows += metadata.file_metadata().num_rows() as usize;
            }
        }
        assert_eq!(main_rows, articles.len(), "{settings}");
        // Files with more rows than a row group holds are split.
        assert_eq!(split, row_group_rows.is_some(), "{settings}");
    }
}
