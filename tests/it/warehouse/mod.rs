//! The warehouse contract: the shipped PostgreSQL import loads every committed
//! run, in order, into an ODS that holds exactly the latest version of every
//! key; tricky values survive CSV -> COPY -> SELECT; Parquet holds the same rows.
//!
//! Here: the shipped import SQL checked against the generator, and what the
//! tests of the example topic ([`orders`]), of deletes and history
//! ([`lines`]), of keys spread over partitions ([`spread`]), of the guards
//! on loads ([`guards`]), of the SQL of committed runs ([`run_sql`]) and of
//! every dialect's SQL parsed as its own ([`dialects`]) share.

mod dialects;
mod guards;
mod lines;
mod orders;
mod run_sql;
mod spread;

use std::path::Path;

use materializer_core::commit::Ledger;
use materializer_core::warehouse::{self, FilePlace, load_run_sql, setup_sql};

use crate::servers::postgres;
use crate::support::Workspace;

const TOPIC: &str = "order-placed";

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

/// Sets up a fresh database for `topic`, then per run appends its recorded
/// batches, runs the topic and loads the committed run. Returns the database
/// and each run's counts.
async fn load_recorded_runs(
    ws: &Workspace,
    topic_name: &str,
    runs: &[Vec<String>],
    label: &str,
) -> (String, Vec<materializer_core::commit::RunCounts>) {
    let pg = postgres();
    let database = pg.database(label);
    let topic = ws.catalog().await.topic(topic_name).unwrap();
    let dialect = warehouse::dialect_named("postgres").unwrap();
    pg.psql(&database, &setup_sql(&topic, dialect, 1).unwrap())
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
            &manifest,
            None,
            dialect,
            FilePlace::Folder(Path::new(&folder)),
        )
        .unwrap();
        pg.psql(&database, &load)
            .unwrap_or_else(|e| panic!("loading run {}: {e}\n{load}", i + 1));
    }
    (database, counts)
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
                setup_sql(topic, *dialect, 1).unwrap(),
                "{} is out of date: materializer warehouse-sql {name} --dialect {} > {}",
                path.display(),
                dialect.name(),
                path.display()
            );
        }
    }
}
