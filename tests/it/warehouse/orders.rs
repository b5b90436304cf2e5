//! The example topic order-placed, loaded run after run into PostgreSQL: the
//! ODS holds exactly the latest version of every order; tricky values survive
//! CSV -> COPY -> SELECT, with the default and a custom CSV dialect; Parquet
//! holds the same rows.

use std::collections::BTreeMap;

use super::{Rng, Row, TOPIC, json_rows, load_recorded_runs, micros, number};
use crate::servers::postgres;
use crate::support::{Workspace, parse_csv};

/// Gift notes that make CSV, COPY and JSON work: `None` is an absent field.
const NOTES: [Option<&str>; 14] = [
    None,
    Some(""),
    Some("plain"),
    Some("comma, inside"),
    Some("\"quoted\" and \"\""),
    Some("two\nlines"),
    Some("carriage\r\nreturn"),
    Some("tab\there"),
    Some("\\N"),
    Some("back\\slash"),
    Some("  padded  "),
    Some("Größe+ Édition ✓ 🎁"),
    Some("|pipe|"),
    Some("NULL"),
];

const STATUSES: [&str; 4] = ["placed", "paid", "shipped", "cancelled"];
const COUNTRIES: [&str; 3] = ["DE", "AT", "CH"];

/// One version of one order.
#[derive(Clone)]
struct Version {
    order: String,
    partition: u32,
    json: String,
    value: serde_json::Value,
}

/// Orders with several versions each, delivered with duplicates, out-of-order
/// arrivals, versions that arrive only in a later run, new orders in every run,
/// empty and null arrays and tricky strings. Returns the arrivals of each run.
fn order_runs(orders: usize, runs: usize, seed: u64) -> Vec<Vec<Version>> {
    let mut rng = Rng(seed);
    let mut per_run: Vec<Vec<Version>> = vec![Vec::new(); runs];
    let mut eid = 0u64;
    for o in 0..orders {
        let order = format!("ORD-{o:05}");
        let partition = (o % 3) as u32;
        let first_run = o * runs / orders; // new orders keep arriving
        let versions = 1 + rng.next(5) as usize;
        let mut made: Vec<Version> = Vec::new();
        for v in 0..versions {
            eid += 1;
            let items = match rng.next(8) {
                0 => serde_json::Value::Null,
                1 => serde_json::json!([]),
                _ => serde_json::Value::Array(
                    (0..1 + rng.next(3))
                        .map(|i| {
                            let discounts = match rng.next(4) {
                                0 => serde_json::Value::Null,
                                1 => serde_json::json!([]),
                                _ => serde_json::Value::Array(
                                    (0..1 + rng.next(2))
                                        .map(|d| serde_json::json!({"code": format!("D{d}-{}", rng.next(9)), "amount": (rng.next(500) as f64) / 100.0}))
                                        .collect(),
                                ),
                            };
                            serde_json::json!({
                                "sku": format!("SKU-{i}-{}", rng.next(20)),
                                "quantity": 1 + rng.next(4),
                                "unit_price": {"amount": (100 + rng.next(9900)) as f64 / 100.0, "currency": "EUR"},
                                "discounts": discounts,
                            })
                        })
                        .collect(),
                ),
            };
            let mut event = serde_json::json!({
                "metadata": {
                    "eid": format!("00000000-0000-4000-8000-{eid:012x}"),
                    "occurred_at": format!("2024-06-03T{:02}:{:02}:{:02}.{:03}Z", 8 + v, rng.next(60), rng.next(60), rng.next(1000)),
                    "event_type": "shop.order-placed",
                },
                "order_number": order,
                "status": STATUSES[v.min(3)],
                "placed_at": "2024-06-03T07:59:00.000Z",
                "customer": if rng.next(5) == 0 { serde_json::json!({"id": format!("C-{o}")}) } else {
                    serde_json::json!({"id": format!("C-{o}"), "address": {"city": "Berlin", "country_code": COUNTRIES[rng.next(3) as usize]}})
                },
                "items": items,
            });
            if let Some(note) = NOTES[rng.next(NOTES.len() as u64) as usize] {
                event["gift_note"] = serde_json::Value::String(note.to_string());
            } else if rng.next(2) == 0 {
                event["gift_note"] = serde_json::Value::Null;
            }
            made.push(Version {
                order: order.clone(),
                partition,
                json: event.to_string(),
                value: event,
            });
        }
        let mut arrivals: Vec<(usize, Version)> =
            made.iter().cloned().map(|v| (first_run, v)).collect();
        match rng.next(6) {
            0 if arrivals.len() > 1 => arrivals.swap(0, 1), // out of order within a run
            1 if arrivals.len() > 1 && first_run + 1 < runs => arrivals[0].0 = runs - 1, // late across runs
            2 => {
                // Redelivered with another payload (the same version and
                // eid): the copy that arrives last wins.
                let mut again = arrivals[rng.next(arrivals.len() as u64) as usize].1.clone();
                again.value["gift_note"] =
                    serde_json::Value::String(format!("again {}", again.order));
                again.json = again.value.to_string();
                arrivals.push((first_run, again));
            }
            3 if first_run + 1 < runs => {
                let last = arrivals.len() - 1;
                arrivals[last].0 = first_run + 1; // the newest version comes a run later
            }
            _ => {}
        }
        for (run, version) in arrivals {
            per_run[run].push(version);
        }
    }
    per_run
}

/// Recorded stream lines of one run, continuing the offsets of earlier runs.
fn record_lines(versions: &[Version], offsets: &mut BTreeMap<u32, u64>) -> Vec<String> {
    let mut by_partition: BTreeMap<u32, Vec<&Version>> = BTreeMap::new();
    for v in versions {
        by_partition.entry(v.partition).or_default().push(v);
    }
    let mut lines = Vec::new();
    for (partition, events) in by_partition {
        for chunk in events.chunks(7) {
            let next = offsets.entry(partition).or_insert(0);
            *next += chunk.len() as u64;
            let body: Vec<&str> = chunk.iter().map(|v| v.json.as_str()).collect();
            lines.push(format!(
                r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{:018}"}},"events":[{}]}}"#,
                *next - 1,
                body.join(",")
            ));
        }
    }
    lines
}

fn text(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(String::from)
}

/// Ground truth from the raw events: the latest version of every order,
/// flattened as the mapping does (unnest_outer on items and discounts).
fn truth(runs: &[Vec<Version>]) -> Vec<Row> {
    let mut latest: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for v in runs.iter().flatten() {
        let at = v.value["metadata"]["occurred_at"].as_str().unwrap();
        let keep = latest
            .get(&v.order)
            .is_none_or(|l| l["metadata"]["occurred_at"].as_str().unwrap() <= at);
        if keep {
            latest.insert(v.order.clone(), &v.value);
        }
    }
    let mut rows = Vec::new();
    for e in latest.values() {
        let head = vec![
            text(&e["order_number"]),
            text(&e["status"]),
            Some(micros(e["placed_at"].as_str().unwrap())),
            Some(micros(e["metadata"]["occurred_at"].as_str().unwrap())),
            text(&e["customer"]["id"]),
            text(&e["customer"]["address"]["country_code"]),
            text(&e["gift_note"]),
        ];
        let items: Vec<&serde_json::Value> = e["items"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if items.is_empty() {
            rows.push([head.clone(), vec![None; 6]].concat());
        }
        for item in items {
            let line = vec![
                text(&item["sku"]),
                number(&item["quantity"]),
                number(&item["unit_price"]["amount"]),
                text(&item["unit_price"]["currency"]),
            ];
            let discounts: Vec<&serde_json::Value> = item["discounts"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if discounts.is_empty() {
                rows.push([head.clone(), line.clone(), vec![None, None]].concat());
            }
            for d in discounts {
                rows.push(
                    [
                        head.clone(),
                        line.clone(),
                        vec![text(&d["code"]), number(&d["amount"])],
                    ]
                    .concat(),
                );
            }
        }
    }
    rows.sort();
    rows
}

/// The ODS table, in the same comparable form.
fn ods_rows(database: &str, table: &str) -> Vec<Row> {
    let json = postgres()
        .psql(
            database,
            &format!(
                "SELECT coalesce(json_agg(json_build_array(order_number, status, \
                 (extract(epoch FROM placed_at) * 1000000)::bigint::text, \
                 (extract(epoch FROM occurred_at) * 1000000)::bigint::text, \
                 customer_id, country_code, gift_note, sku, quantity, unit_price, currency, \
                 discount_code, discount_amount)), '[]') FROM {table};"
            ),
        )
        .unwrap();
    json_rows(&json)
}

/// Materializes the runs one by one and loads each into PostgreSQL with the
/// shipped import; returns the database and each run's counts.
async fn materialize_and_load(
    ws: &Workspace,
    runs: &[Vec<Version>],
    label: &str,
) -> (String, Vec<materializer_core::commit::RunCounts>) {
    let mut offsets = BTreeMap::new();
    let recorded: Vec<Vec<String>> = runs
        .iter()
        .map(|run| record_lines(run, &mut offsets))
        .collect();
    load_recorded_runs(ws, TOPIC, &recorded, label).await
}

#[tokio::test]
async fn loading_every_run_gives_the_latest_version_of_every_key() {
    let ws = Workspace::new();
    let runs = order_runs(240, 4, 77);
    let (database, counts) = materialize_and_load(&ws, &runs, "ods").await;
    let expected = truth(&runs);
    // The stream exercised what it claims to: a version that arrives a run
    // after a newer version of its order (late across runs), and copies of
    // a version with another payload, the one that arrived last winning.
    let newest_before = |order: &str, run: usize| {
        runs[..run]
            .iter()
            .flatten()
            .filter(|v| v.order == order)
            .filter_map(|v| v.value["metadata"]["occurred_at"].as_str())
            .max()
    };
    let late_across_runs = runs.iter().enumerate().any(|(run, versions)| {
        versions.iter().any(|v| {
            newest_before(&v.order, run)
                .is_some_and(|newest| v.value["metadata"]["occurred_at"].as_str() < Some(newest))
        })
    });
    assert!(late_across_runs, "no version late across runs");
    assert!(
        counts.iter().skip(1).any(|c| c.correction_events > 0),
        "no late events across runs: {counts:?}"
    );
    assert!(
        expected.iter().any(|r| r[6]
            .as_deref()
            .is_some_and(|note| note.starts_with("again "))),
        "no redelivered copy with another payload won"
    );
    assert!(counts.iter().map(|c| c.superseded).sum::<u64>() > 0);
    assert!(
        expected.iter().any(|r| r[7].is_none()),
        "an order without lines"
    );
    assert!(
        expected
            .iter()
            .any(|r| r[6].as_deref() == Some("two\nlines"))
    );
    assert_eq!(ods_rows(&database, "order_placed_ods"), expected);
    // A run is loaded once, in order.
    let again = postgres()
        .psql(&database, "SELECT order_placed_merge(2);")
        .unwrap_err();
    assert!(
        again.contains(
            "run 2 of topic order-placed cannot be loaded now: run 5 is the next to load"
        ),
        "{again}"
    );
}

#[tokio::test]
async fn a_custom_csv_dialect_loads_the_same_rows() {
    let ws = Workspace::new();
    let toml = ws.sql().join(TOPIC).join("topic.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(
            "format = \"csv\"",
            "format = \"csv\"\n\n[output.csv]\ndelimiter = \"|\"\nescape = \"\\\\\"\nnull = \"\\\\N\"\ncompression = \"gzip\"",
        ),
    )
    .unwrap();
    let runs = order_runs(90, 3, 5);
    let (database, _) = materialize_and_load(&ws, &runs, "dialect").await;
    assert_eq!(ods_rows(&database, "order_placed_ods"), truth(&runs));
    let files: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.ends_with(".csv.gz"))
        .collect();
    assert!(!files.is_empty());
}

#[tokio::test]
async fn parquet_output_holds_the_same_rows_as_csv() {
    let ws = Workspace::new();
    let runs = order_runs(120, 1, 9);
    let mut offsets = BTreeMap::new();
    ws.record(TOPIC, &record_lines(&runs[0], &mut offsets));
    ws.run(TOPIC).await.unwrap();
    let toml = ws.sql().join(TOPIC).join("topic.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("format = \"csv\"", "format = \"parquet\""),
    )
    .unwrap();
    let parquet_out = ws.path("parquet-out");
    let location = materializer_core::sink::OutputLocation::parse(
        &parquet_out.display().to_string(),
        &Default::default(),
    )
    .unwrap();
    ws.run_with(TOPIC, location).await.unwrap();

    // KEYS: order_number, occurred_at, deleted, kind.
    for (kind, timestamps, numbers) in [
        ("main", &[2, 3][..], &[8, 9, 12][..]),
        ("correction", &[2, 3], &[8, 9, 12]),
        ("older", &[2, 3], &[8, 9, 12]),
        ("keys", &[1], &[]),
    ] {
        let csv_files: Vec<String> = ws
            .out_files()
            .into_iter()
            .filter(|f| f.contains(&format!("/{kind}/")) && f.ends_with(".csv"))
            .collect();
        let mut csv_rows: Vec<Row> = Vec::new();
        for f in &csv_files {
            let mut rows = parse_csv(&ws.read_out(f));
            rows.remove(0);
            csv_rows.extend(
                rows.into_iter()
                    .map(|row| normalize_csv_row(row, timestamps, numbers)),
            );
        }
        csv_rows.sort();

        let mut parquet_rows: Vec<Row> = Vec::new();
        let mut datafusion_rows: Vec<Row> = Vec::new();
        let ctx = datafusion::prelude::SessionContext::new();
        for f in &csv_files {
            let path = parquet_out.join(f.replace(".csv", ".parquet"));
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                parquet_rows.extend(arrow_rows(&batch.unwrap()));
            }
            let frame = ctx
                .read_parquet(path.display().to_string(), Default::default())
                .await
                .unwrap();
            for batch in frame.collect().await.unwrap() {
                datafusion_rows.extend(arrow_rows(&batch));
            }
        }
        parquet_rows.sort();
        datafusion_rows.sort();
        assert!(!csv_rows.is_empty(), "{kind}: no rows to compare");
        assert_eq!(parquet_rows, csv_rows, "{kind}: parquet reader");
        assert_eq!(datafusion_rows, csv_rows, "{kind}: DataFusion");
    }
    // Types are kept: timestamps with their time zone, numbers as numbers.
    let file = std::fs::File::open(
        parquet_out.join("order-placed/main/run=0000000001/main-0000000001-p0.parquet"),
    )
    .unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema();
    assert_eq!(
        schema.field_with_name("occurred_at").unwrap().data_type(),
        &arrow::datatypes::DataType::Timestamp(
            arrow::datatypes::TimeUnit::Microsecond,
            Some("UTC".into())
        )
    );
    assert_eq!(
        schema.field_with_name("quantity").unwrap().data_type(),
        &arrow::datatypes::DataType::Int64
    );
    let compression = builder.metadata().row_group(0).column(0).compression();
    assert!(
        matches!(compression, parquet::basic::Compression::ZSTD(_)),
        "{compression:?}"
    );
}

/// CSV rows with the timestamps at `timestamps` as microseconds, the
/// numbers at `numbers` in one form.
fn normalize_csv_row(row: Vec<Option<String>>, timestamps: &[usize], numbers: &[usize]) -> Row {
    row.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(ts) if timestamps.contains(&i) => Some(micros(&ts)),
            Some(n) if numbers.contains(&i) => Some(format!("{}", n.parse::<f64>().unwrap())),
            v => v,
        })
        .collect()
}

/// Rows of an Arrow batch of the order output, in the same form.
fn arrow_rows(batch: &arrow::record_batch::RecordBatch) -> Vec<Row> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(r) {
                        return None;
                    }
                    Some(match c.data_type() {
                        arrow::datatypes::DataType::Timestamp(_, _) => c
                            .as_primitive::<TimestampMicrosecondType>()
                            .value(r)
                            .to_string(),
                        arrow::datatypes::DataType::Int64 => {
                            format!("{}", c.as_primitive::<Int64Type>().value(r) as f64)
                        }
                        arrow::datatypes::DataType::Float64 => {
                            format!("{}", c.as_primitive::<Float64Type>().value(r))
                        }
                        arrow::datatypes::DataType::Boolean => c.as_boolean().value(r).to_string(),
                        arrow::datatypes::DataType::Utf8View => {
                            c.as_string_view().value(r).to_string()
                        }
                        _ => c.as_string::<i32>().value(r).to_string(),
                    })
                })
                .collect()
        })
        .collect()
}
