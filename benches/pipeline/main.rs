//! The pipeline benchmark: materializer against an equivalent DuckDB script on
//! the same generated events, in one run, alternating.
//!
//! ```text
//! cargo bench --bench pipeline -- [--events N | --scales N,N,..] [--runs R]
//!     [--cases flatten_csv,compact_csv,compact_parquet,compact_csv_no_history] [--no-nakadi] [--no-duckdb]
//!     [--nakadi-up-to N] [--memory-mb M] [--data DIR] [--report DIR] [--random-partitions]
//! cargo bench --bench pipeline -- --history RUNS [--history-events N] [--memory-mb M]
//! cargo bench --bench pipeline -- --large-state KEYS [--history-events N] [--memory-mb M]
//! cargo bench --bench pipeline -- --floor [--scales N,N,..] [--runs R]
//! ```
//!
//! For each scale it generates the events once (NDJSON for DuckDB, Nakadi
//! stream lines for materializer), then for each repetition and case runs, in
//! turn: `materializer run` on the recorded stream (file source), the DuckDB
//! script (when `python3 -c 'import duckdb'` works), and `materializer run`
//! against the Nakadi-compatible server (live path). Every measurement is a
//! whole process: wall time and peak RSS (the process's own high-water mark). The output rows of
//! every run are checked: their count on every repetition, their content (a
//! fingerprint of every row) on the first, against DuckDB's output and, at
//! small scales or without DuckDB, against a reference computed here with
//! serde_json. A run whose rows differ fails the benchmark.
//!
//! It also measures the fixed overhead of a run on the bundled example topic
//! and writes `report.md` (the table) and `chart.png` (time against events)
//! to the report folder.
//!
//! `--history RUNS` measures a topic's life instead ([`history`]): RUNS runs
//! of the compacting topic one after the other, each reading the next
//! `--history-events` events (default 500k, 90 % of them articles never seen
//! before), so that the key state grows run by run.
//!
//! `--large-state KEYS` measures one run of `--history-events` events against
//! a key state of KEYS keys, written directly, and against an empty state
//! ([`large_state`]).
//!
//! `--floor` measures the physical floor of each scale instead ([`floor`]):
//! the recording's bytes read, its JSON parsed alone, DuckDB's read alone.
//!
//! Run by `cargo test` (without `--bench`) it does a small smoke run instead,
//! three history runs of 2,000 events, a run of 2,000 events against a
//! state of 20,000 keys, and the floor of 3,000 events.
//!
//! The parts: [`options`] (the command line), [`dataset`] (the generated input
//! and the bench topics), [`engines`] (a measured run of each engine),
//! [`nakadi`] (the Nakadi-compatible server's process), [`scales`] (the
//! benchmark over scales) and [`report`], besides [`history`] and
//! [`large_state`]. This file holds what they share and `main`.

mod chart;
mod dataset;
mod engines;
mod floor;
mod generator;
mod history;
mod large_state;
mod measure;
mod nakadi;
mod options;
mod report;
mod rows;
mod scales;

use std::path::PathBuf;

use dataset::write_topics;
use engines::duckdb_installed;
use measure::Measurement;
use nakadi::{SERVE_NAKADI, serve_nakadi};
use options::{Options, parse_options};
// The history and large state benchmarks publish their reports as the
// scale benchmark does.
use report::{median, publish};
use scales::run_all;

const BIN: &str = env!("CARGO_BIN_EXE_materializer");
const SEED: u64 = 42;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    FlattenCsv,
    CompactCsv,
    CompactParquet,
    /// `compact_csv` with the warehouse history switched off, to show what
    /// the history (on by default) costs.
    CompactCsvNoHistory,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::FlattenCsv,
        Case::CompactCsv,
        Case::CompactParquet,
        Case::CompactCsvNoHistory,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::FlattenCsv => "flatten_csv",
            Case::CompactCsv => "compact_csv",
            Case::CompactParquet => "compact_parquet",
            Case::CompactCsvNoHistory => "compact_csv_no_history",
        }
    }

    fn topic(self) -> String {
        format!("bench-{}", self.name().replace('_', "-"))
    }

    fn compact(self) -> bool {
        self != Case::FlattenCsv
    }

    fn parquet(self) -> bool {
        self == Case::CompactParquet
    }

    /// Whether the topic keeps its warehouse history (OLDER files), as a
    /// topic does unless it says otherwise.
    fn history(self) -> bool {
        self != Case::CompactCsvNoHistory
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    File,
    Nakadi,
    DuckDb,
}

impl Engine {
    fn label(self) -> &'static str {
        match self {
            Engine::File => "materializer (file)",
            Engine::Nakadi => "materializer (nakadi)",
            Engine::DuckDb => "duckdb",
        }
    }
}

/// What one measured process did.
struct Sample {
    measurement: Measurement,
    rows: u64,
    /// Stage timings from the run summary (materializer only).
    timings: Option<serde_json::Value>,
}

struct Bench {
    options: Options,
    work: PathBuf,
    sql_dir: PathBuf,
    duckdb: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SERVE_NAKADI) {
        if let Err(message) = serve_nakadi(&args[2..]) {
            eprintln!("pipeline bench, Nakadi-compatible server: {message}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(message) = real_main() {
        eprintln!("pipeline bench: {message}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let options = parse_options()?;
    if options.smoke {
        options::remove_ended_smoke_reports();
    }
    let work = options.data.join(format!("work-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let sql_dir = work.join("sql");
    write_topics(&sql_dir)?;
    let duckdb = options.duckdb && duckdb_installed();
    if options.duckdb && !duckdb {
        // The smoke run under CI checks the rows against DuckDB's: a missing
        // DuckDB there is a failure, not a quieter run.
        if options.smoke && in_ci() {
            return Err("duckdb is not installed (pip install duckdb): CI=true requires the rows checked against DuckDB's".into());
        }
        eprintln!("duckdb is not installed (pip install duckdb): measuring materializer alone");
    }
    let bench = Bench {
        options,
        work,
        sql_dir,
        duckdb,
    };
    let result = match (bench.options.history_runs, bench.options.large_state) {
        _ if bench.options.floor => floor::run(&bench),
        (Some(runs), _) => history::run(&bench, runs),
        (None, Some(keys)) => large_state::run(&bench, keys),
        (None, None) if bench.options.smoke => run_all(&bench)
            .and_then(|()| history::run(&bench, 3))
            .and_then(|()| large_state::run(&bench, 20_000))
            .and_then(|()| floor::run(&bench)),
        (None, None) => run_all(&bench),
    };
    let _ = std::fs::remove_dir_all(&bench.work);
    result
}

/// Whether this runs in CI (`CI` set, and not `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}
