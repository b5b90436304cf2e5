//! The warehouse contract: the shipped PostgreSQL import loads every committed
//! run, in order, into an ODS that holds exactly the latest version of every
//! key; tricky values survive CSV -> COPY -> SELECT; Parquet holds the same rows.

use std::collections::BTreeMap;
use std::path::Path;

use materializer_core::run::Ledger;
use materializer_core::warehouse::{self, FilePlace, load_run_sql, setup_sql};

use crate::servers::postgres;
use crate::support::{Workspace, parse_csv};

const TOPIC: &str = "order-placed";

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

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

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
                let again = arrivals[rng.next(arrivals.len() as u64) as usize].1.clone();
                arrivals.push((first_run, again)); // redelivered
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

/// A comparable form of a row: every value as text, timestamps as microseconds.
type Row = Vec<Option<String>>;

fn micros(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("{ts}: {e}"))
        .timestamp_micros()
        .to_string()
}

fn number(v: &serde_json::Value) -> Option<String> {
    v.as_f64().map(|f| format!("{f}"))
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
            .is_none_or(|l| l["metadata"]["occurred_at"].as_str().unwrap() < at);
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

/// The rows of a `json_agg` of arrays, sorted; numbers in one form.
fn json_rows(json: &str) -> Vec<Row> {
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let mut rows: Vec<Row> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    n => number(n),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// Materializes the runs one by one and loads each into PostgreSQL with the
/// shipped import; returns the database and each run's counts.
async fn materialize_and_load(
    ws: &Workspace,
    runs: &[Vec<Version>],
    label: &str,
) -> (String, Vec<materializer_core::run::RunCounts>) {
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
    // The stream exercised what it claims to.
    assert!(
        counts.iter().skip(1).any(|c| c.correction_events > 0),
        "no late events across runs: {counts:?}"
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
        again.contains("run 2 of topic order-placed is not after the last loaded run"),
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
async fn the_shipped_import_sql_is_what_the_generator_writes() {
    let ws = Workspace::new();
    let catalog = ws.catalog().await;
    for (name, topic) in &catalog.topics {
        for dialect in warehouse::dialects() {
            let path = crate::support::repo()
                .join("sql/warehouse")
                .join(dialect.name())
                .join(format!("{name}.sql"));
            let shipped = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                shipped,
                setup_sql(topic, *dialect).unwrap(),
                "{} is out of date: materializer warehouse-sql {name} --dialect {} > {}",
                path.display(),
                dialect.name(),
                path.display()
            );
        }
    }
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
        assert!(
            !csv_rows.is_empty() || ["correction", "older"].contains(&kind),
            "{kind}"
        );
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

/// A topic of this test's own: one row per order line with plain `unnest`
/// (an order whose newest version has no lines has no row), test orders
/// filtered out, and `status = 'deleted'` deleting the order.
const LINES_TOPIC: &str = "order-lines";

fn write_lines_topic(ws: &Workspace, partition_by: bool, history: bool) {
    let dir = ws.sql().join(LINES_TOPIC);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        ws.sql().join(TOPIC).join("schema.json"),
        dir.join("schema.json"),
    )
    .unwrap();
    let partitions = if partition_by {
        "partition_by = [\"status\"]\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("topic.toml"),
        format!(
            "event_type = \"shop.order-placed\"\npartitioning_key = \"order_number\"\n\
             ordering_key = \"metadata.occurred_at\"\ndelete_when = \"status = 'deleted'\"\n\n\
             [output]\nformat = \"csv\"\n{partitions}\n[warehouse]\nhistory = {history}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("mapping.sql"),
        "CREATE VIEW lines AS\n\
         SELECT order_number, status, metadata.occurred_at AS occurred_at, unnest(items) AS item\n\
         FROM events WHERE status <> 'test';\n\n\
         CREATE VIEW output AS\n\
         SELECT order_number, status, occurred_at, item.sku AS sku, item.quantity AS quantity\n\
         FROM lines;\n",
    )
    .unwrap();
}

/// One arrival of one version of one order.
#[derive(Clone)]
struct Arrival {
    order: String,
    partition: u32,
    /// Milliseconds into the day: the ordering key.
    at: u64,
    status: &'static str,
    /// `None`: `items` is null.
    items: Option<Vec<(String, u64)>>,
}

impl Arrival {
    fn occurred_at(&self) -> String {
        let (h, m, s, ms) = (
            self.at / 3_600_000,
            self.at / 60_000 % 60,
            self.at / 1000 % 60,
            self.at % 1000,
        );
        format!("2024-06-03T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }

    fn json(&self, eid: u64) -> String {
        let items = match &self.items {
            None => serde_json::Value::Null,
            Some(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q, "unit_price": {"amount": 1.5, "currency": "EUR"}, "discounts": []}))
                    .collect(),
            ),
        };
        serde_json::json!({
            "metadata": {"eid": format!("00000000-0000-4000-8000-{eid:012x}"), "occurred_at": self.occurred_at(), "event_type": "shop.order-placed"},
            "order_number": self.order,
            "status": self.status,
            "placed_at": "2024-06-03T07:59:00.000Z",
            "customer": {"id": "C-1"},
            "items": items,
        })
        .to_string()
    }
}

/// Versions of orders over `runs` runs: empty and null arrays, test orders,
/// deletes, late deletes, redeliveries, late versions across run boundaries.
fn line_runs(orders: usize, runs: usize, seed: u64) -> Vec<Vec<Arrival>> {
    let mut rng = Rng(seed);
    let mut per_run: Vec<Vec<Arrival>> = vec![Vec::new(); runs];
    for o in 0..orders {
        let order = format!("ORD-{o:05}");
        let partition = (o % 2) as u32;
        let first_run = o * runs / orders;
        let count = 1 + rng.next(5) as usize;
        let mut at = 8 * 3_600_000 + rng.next(1000);
        let mut versions = Vec::new();
        for _ in 0..count {
            at += 1 + rng.next(5000);
            let status = ["placed", "paid", "shipped", "test", "deleted"][rng.next(5) as usize];
            let items = match rng.next(6) {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(
                    (0..1 + rng.next(3))
                        .map(|i| (format!("SKU-{i}-{}", rng.next(30)), 1 + rng.next(4)))
                        .collect(),
                ),
            };
            versions.push(Arrival {
                order: order.clone(),
                partition,
                at,
                status,
                items,
            });
        }
        let mut arrivals: Vec<(usize, Arrival)> =
            versions.iter().cloned().map(|v| (first_run, v)).collect();
        match rng.next(6) {
            0 if arrivals.len() > 1 => arrivals.swap(0, 1),
            1 if arrivals.len() > 1 && first_run + 1 < runs => {
                // An older version (perhaps a delete) arrives a run or more later.
                arrivals[0].0 = first_run + 1 + rng.next((runs - first_run - 1) as u64) as usize;
            }
            2 => {
                let again = arrivals[rng.next(arrivals.len() as u64) as usize].1.clone();
                let run = first_run + rng.next((runs - first_run) as u64) as usize;
                arrivals.push((run, again));
            }
            3 if first_run + 1 < runs => {
                let last = arrivals.len() - 1;
                arrivals[last].0 = first_run + 1;
            }
            _ => {}
        }
        for (run, arrival) in arrivals {
            per_run[run].push(arrival);
        }
    }
    per_run
}

fn line_records(
    arrivals: &[Arrival],
    offsets: &mut BTreeMap<u32, u64>,
    eid: &mut u64,
) -> Vec<String> {
    let mut lines = Vec::new();
    for partition in [0u32, 1] {
        let events: Vec<String> = arrivals
            .iter()
            .filter(|a| a.partition == partition)
            .map(|a| {
                *eid += 1;
                a.json(*eid)
            })
            .collect();
        for chunk in events.chunks(5) {
            let next = offsets.entry(partition).or_insert(0);
            *next += chunk.len() as u64;
            lines.push(format!(
                r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{:018}"}},"events":[{}]}}"#,
                *next - 1,
                chunk.join(",")
            ));
        }
    }
    lines
}

/// (order, status, occurred_at µs, sku, quantity) rows of a version, as the
/// mapping makes them: one per line, none for a test order or no lines.
fn version_rows(a: &Arrival) -> Vec<Row> {
    if a.status == "test" {
        return Vec::new();
    }
    a.items
        .iter()
        .flatten()
        .map(|(sku, q)| {
            vec![
                Some(a.order.clone()),
                Some(a.status.to_string()),
                Some(micros(&a.occurred_at())),
                Some(sku.clone()),
                Some(q.to_string()),
            ]
        })
        .collect()
}

/// Per order, its distinct versions by ordering key, the last to arrive
/// among equal ones, in the order they arrived over all runs.
fn versions_by_order(runs: &[Vec<Arrival>]) -> BTreeMap<String, BTreeMap<u64, Arrival>> {
    let mut orders: BTreeMap<String, BTreeMap<u64, Arrival>> = BTreeMap::new();
    for run in runs {
        // Within a run, arrival order is per partition, as recorded.
        for partition in [0u32, 1] {
            for a in run.iter().filter(|a| a.partition == partition) {
                orders
                    .entry(a.order.clone())
                    .or_default()
                    .insert(a.at, a.clone());
            }
        }
    }
    orders
}

/// The ODS the raw events call for: every order's newest version's rows.
fn expected_ods(runs: &[Vec<Arrival>]) -> Vec<Row> {
    let mut rows: Vec<Row> = versions_by_order(runs)
        .values()
        .filter_map(|versions| versions.values().next_back())
        .filter(|newest| newest.status != "deleted")
        .flat_map(version_rows)
        .collect();
    rows.sort();
    rows
}

/// The history the raw events call for: every version that is not a delete,
/// valid until the next version of its order.
fn expected_history(runs: &[Vec<Arrival>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for versions in versions_by_order(runs).values() {
        let ats: Vec<u64> = versions.keys().copied().collect();
        for (i, version) in versions.values().enumerate() {
            if version.status == "deleted" {
                continue;
            }
            let valid_to = ats.get(i + 1).map(|next| {
                let to = Arrival {
                    at: *next,
                    ..version.clone()
                };
                micros(&to.occurred_at())
            });
            for mut row in version_rows(version) {
                row.push(Some(micros(&version.occurred_at())));
                row.push(valid_to.clone());
                rows.push(row);
            }
        }
    }
    rows.sort();
    rows
}

/// Asserts equal sorted rows, naming (at most ten of) those that differ.
fn same_rows(got: &[Row], want: &[Row], what: &str) {
    let missing: Vec<&Row> = want.iter().filter(|r| !got.contains(r)).take(10).collect();
    let extra: Vec<&Row> = got.iter().filter(|r| !want.contains(r)).take(10).collect();
    assert!(
        got == want,
        "{what}: {} rows, {} expected; missing {missing:?}; not expected {extra:?}",
        got.len(),
        want.len()
    );
}

fn table_rows(database: &str, table: &str, history: bool) -> Vec<Row> {
    let range = if history {
        ", (extract(epoch FROM valid_from) * 1000000)::bigint::text, \
         (extract(epoch FROM valid_to) * 1000000)::bigint::text"
    } else {
        ""
    };
    let json = postgres()
        .psql(
            database,
            &format!(
                "SELECT coalesce(json_agg(json_build_array(order_number, status, \
                 (extract(epoch FROM occurred_at) * 1000000)::bigint::text, sku, quantity::text{range})), '[]') FROM {table};"
            ),
        )
        .unwrap();
    json_rows(&json)
}

async fn load_line_runs(ws: &Workspace, runs: &[Vec<Arrival>], label: &str) -> String {
    let (mut offsets, mut eid) = (BTreeMap::new(), 0);
    let recorded: Vec<Vec<String>> = runs
        .iter()
        .map(|run| line_records(run, &mut offsets, &mut eid))
        .collect();
    load_recorded_runs(ws, LINES_TOPIC, &recorded, label)
        .await
        .0
}

/// Sets up a fresh database for `topic`, then per run appends its recorded
/// batches, runs the topic and loads the committed run. Returns the database
/// and each run's counts.
async fn load_recorded_runs(
    ws: &Workspace,
    topic_name: &str,
    runs: &[Vec<String>],
    label: &str,
) -> (String, Vec<materializer_core::run::RunCounts>) {
    let pg = postgres();
    let database = pg.database(label);
    let topic = ws.catalog().await.topic(topic_name).unwrap();
    let dialect = warehouse::dialect_named("postgres").unwrap();
    pg.psql(&database, &setup_sql(&topic, dialect).unwrap())
        .unwrap();
    let recording = ws.path("recorded").join(topic_name);
    std::fs::create_dir_all(&recording).unwrap();
    std::fs::write(recording.join("stream.jsonl"), "").unwrap();
    let mut counts = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        ws.append(
            &format!("recorded/{topic_name}/stream.jsonl"),
            &(run.join("\n") + "\n"),
        );
        let summary = ws.run(topic_name).await.unwrap();
        assert_eq!(summary.sequence, Some(i as u64 + 1));
        counts.push(summary.counts);
        let manifest = Ledger::new(ws.local_output(), topic_name)
            .manifest(i as u64 + 1)
            .await
            .unwrap()
            .unwrap();
        let folder = ws.out().join(topic_name);
        let load = load_run_sql(
            &topic,
            dialect,
            &manifest,
            FilePlace::Folder(Path::new(&folder)),
        )
        .unwrap();
        pg.psql(&database, &load)
            .unwrap_or_else(|e| panic!("loading run {}: {e}\n{load}", i + 1));
    }
    (database, counts)
}

#[tokio::test]
async fn the_ods_and_the_history_mirror_the_source_with_empty_versions_filters_and_deletes() {
    for (seed, partition_by) in [(3, false), (11, false), (29, true)] {
        let ws = Workspace::new();
        write_lines_topic(&ws, partition_by, true);
        let runs = line_runs(300, 5, seed);
        let database = load_line_runs(&ws, &runs, &format!("lines_{seed}")).await;
        let ods = table_rows(&database, "order_lines_ods", false);
        same_rows(&ods, &expected_ods(&runs), &format!("seed {seed}: ODS"));
        let history = table_rows(&database, "order_lines_history", true);
        same_rows(
            &history,
            &expected_history(&runs),
            &format!("seed {seed}: history"),
        );
        // The stream had what it claims: deletes, test orders, orders whose
        // newest version has no line, late versions across runs.
        let newest: Vec<Arrival> = versions_by_order(&runs)
            .values()
            .filter_map(|v| v.values().next_back().cloned())
            .collect();
        assert!(newest.iter().any(|a| a.status == "deleted"), "seed {seed}");
        assert!(newest.iter().any(|a| a.status == "test"), "seed {seed}");
        assert!(
            newest
                .iter()
                .any(|a| a.status != "deleted" && a.items.as_ref().is_none_or(Vec::is_empty)),
            "seed {seed}"
        );
        let versions_in_ods = postgres()
            .psql(&database, "SELECT count(*) FROM order_lines_ods_versions;")
            .unwrap();
        assert_eq!(
            versions_in_ods.trim().parse::<usize>().unwrap(),
            newest.len(),
            "seed {seed}: every order's version is known, rows or not"
        );
    }
}

/// Without history, runs write no OLDER files, the setup makes no history
/// tables, and the ODS is the same.
#[tokio::test]
async fn without_history_the_ods_is_the_same_and_no_history_is_kept() {
    let ws = Workspace::new();
    write_lines_topic(&ws, false, false);
    let runs = line_runs(200, 4, 5);
    let database = load_line_runs(&ws, &runs, "lines_no_history").await;
    let ods = table_rows(&database, "order_lines_ods", false);
    same_rows(&ods, &expected_ods(&runs), "ODS without history");
    let tables = postgres()
        .psql(
            &database,
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
             WHERE table_name LIKE 'order_lines%';",
        )
        .unwrap();
    assert_eq!(
        tables.trim(),
        "order_lines_correction,order_lines_keys,order_lines_loaded_runs,order_lines_main,\
         order_lines_ods,order_lines_ods_versions,order_lines_winners"
    );
    let older: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.contains("/older/"))
        .collect();
    assert!(older.is_empty(), "{older:?}");
}

/// A data change event type deletes on `data_op = 'D'` without any setting:
/// a delete ends its key, a late delete (an older version arriving after a
/// newer one) corrects the past and leaves the newer state in the ODS.
#[tokio::test]
async fn data_change_events_delete_on_data_op_d() {
    let ws = Workspace::new();
    let dir = ws.sql().join("catalog-items");
    std::fs::create_dir_all(&dir).unwrap();
    let payload = serde_json::json!({
        "type": "object",
        "required": ["sku"],
        "properties": {"sku": {"type": "string"}, "title": {"type": "string"}}
    });
    std::fs::write(
        dir.join("schema.json"),
        serde_json::json!({
            "name": "catalog.item-changed",
            "category": "data",
            "schema": {"type": "json_schema", "schema": payload.to_string()}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        "event_type = \"catalog.item-changed\"\npartitioning_key = \"data.sku\"\n\
         ordering_key = \"metadata.occurred_at\"\n\n[output]\nformat = \"csv\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("mapping.sql"),
        "CREATE VIEW output AS\n\
         SELECT data.sku AS sku, data.title AS title, metadata.occurred_at AS occurred_at\n\
         FROM events;\n",
    )
    .unwrap();
    let event = |n: u64, op: &str, sku: &str, title: &str, minute: u64| {
        serde_json::json!({
            "metadata": {
                "eid": format!("00000000-0000-4000-8000-{n:012x}"),
                "occurred_at": format!("2024-06-03T10:{minute:02}:00Z"),
                "event_type": "catalog.item-changed"
            },
            "data_op": op,
            "data_type": "catalog.item",
            "data": {"sku": sku, "title": title}
        })
        .to_string()
    };
    let batch = |offset: u64, events: &[String]| {
        format!(
            r#"{{"cursor":{{"partition":"0","offset":"001-0001-{offset:018}"}},"events":[{}]}}"#,
            events.join(",")
        )
    };
    let runs = vec![
        vec![batch(
            4,
            &[
                event(1, "C", "A", "apple", 1),
                event(2, "U", "A", "apple v2", 2),
                event(3, "C", "B", "banana", 1),
                event(4, "D", "B", "", 3),
                event(5, "C", "C", "cherry", 1),
            ],
        )],
        vec![batch(
            7,
            &[
                // C is deleted, then created again.
                event(6, "D", "C", "", 2),
                event(7, "C", "C", "cherry again", 4),
                // A late delete of A: older than A's newest version.
                event(8, "D", "A", "", 0),
            ],
        )],
    ];
    let (database, _) = load_recorded_runs(&ws, "catalog-items", &runs, "catalog_items").await;
    let ods = postgres()
        .psql(
            &database,
            "SELECT string_agg(sku || '=' || title, ',' ORDER BY sku) FROM catalog_items_ods;",
        )
        .unwrap();
    assert_eq!(ods.trim(), "A=apple v2,C=cherry again");
    let history = postgres()
        .psql(
            &database,
            "SELECT string_agg(sku || '=' || title || '@' || to_char(valid_from, 'MI') || '-' || \
             coalesce(to_char(valid_to, 'MI'), 'now'), ',' ORDER BY sku, valid_from) \
             FROM catalog_items_history;",
        )
        .unwrap();
    assert_eq!(
        history.trim(),
        "A=apple@01-02,A=apple v2@02-now,B=banana@01-03,C=cherry@01-02,C=cherry again@04-now"
    );
    let keys = ws.read_out_sorted("catalog-items/keys/run=0000000002/keys-0000000002-p0.csv");
    assert_eq!(
        keys,
        "sku,occurred_at,deleted,kind\n\
         A,2024-06-03T10:00:00Z,true,correction\n\
         C,2024-06-03T10:02:00Z,true,older\n\
         C,2024-06-03T10:04:00Z,false,main\n"
    );
}
