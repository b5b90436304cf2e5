//! The pipeline benchmark: materializer against an equivalent DuckDB script on
//! the same generated events, in one run, alternating.
//!
//! ```text
//! cargo bench --bench pipeline -- [--events N | --scales N,N,..] [--runs R]
//!     [--cases flatten_csv,compact_csv,compact_parquet] [--no-nakadi] [--no-duckdb]
//!     [--nakadi-up-to N] [--memory-mb M] [--data DIR] [--report DIR]
//! cargo bench --bench pipeline -- --history RUNS [--history-events N] [--memory-mb M]
//! cargo bench --bench pipeline -- --large-state KEYS [--history-events N] [--memory-mb M]
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
//! Run by `cargo test` (without `--bench`) it does a small smoke run instead,
//! three history runs of 2,000 events, and a run of 2,000 events against a
//! state of 20,000 keys.

mod chart;
mod generator;
mod history;
mod large_state;
mod measure;
mod rows;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use measure::{Measurement, measure};
use rows::Fingerprint;

const BIN: &str = env!("CARGO_BIN_EXE_materializer");
const SEED: u64 = 42;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    FlattenCsv,
    CompactCsv,
    CompactParquet,
}

impl Case {
    const ALL: [Case; 3] = [Case::FlattenCsv, Case::CompactCsv, Case::CompactParquet];

    fn name(self) -> &'static str {
        match self {
            Case::FlattenCsv => "flatten_csv",
            Case::CompactCsv => "compact_csv",
            Case::CompactParquet => "compact_parquet",
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

struct Options {
    scales: Vec<u64>,
    runs: usize,
    cases: Vec<Case>,
    nakadi: bool,
    /// Largest scale measured through the Nakadi-compatible server, which
    /// holds every recorded event in memory.
    nakadi_up_to: u64,
    duckdb: bool,
    memory_mb: Option<u64>,
    data: PathBuf,
    report: PathBuf,
    smoke: bool,
    /// Runs of the history benchmark (instead of the scales), if asked for.
    history_runs: Option<u64>,
    /// Events of each history run, and of the large state run.
    history_events: u64,
    /// Keys of the large state benchmark's state, if asked for.
    large_state: Option<u64>,
}

fn parse_options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let base = std::env::temp_dir().join("materializer-bench");
    let mut options = Options {
        scales: vec![if smoke { 3_000 } else { 1_000_000 }],
        runs: if smoke { 1 } else { 3 },
        cases: Case::ALL.to_vec(),
        nakadi: true,
        nakadi_up_to: u64::MAX,
        duckdb: true,
        memory_mb: None,
        data: base.join("data"),
        // A smoke run (the test suite) keeps its reports apart, so that it
        // never replaces those of a real benchmark.
        report: base.join(if smoke { "report-smoke" } else { "report" }),
        smoke,
        history_runs: None,
        history_events: if smoke { 2_000 } else { 500_000 },
        large_state: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--events" => options.scales = vec![parse_count(&value("--events")?)?],
            "--scales" => {
                options.scales = value("--scales")?
                    .split(',')
                    .map(parse_count)
                    .collect::<Result<_, _>>()?
            }
            "--runs" => {
                options.runs = value("--runs")?
                    .parse()
                    .map_err(|_| "--runs needs a number".to_string())?
            }
            "--cases" => {
                options.cases = value("--cases")?
                    .split(',')
                    .map(|c| {
                        Case::ALL
                            .into_iter()
                            .find(|k| k.name() == c)
                            .ok_or_else(|| format!("unknown case {c}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--no-nakadi" => options.nakadi = false,
            "--nakadi-up-to" => options.nakadi_up_to = parse_count(&value("--nakadi-up-to")?)?,
            "--no-duckdb" => options.duckdb = false,
            "--memory-mb" => {
                options.memory_mb = Some(
                    value("--memory-mb")?
                        .parse()
                        .map_err(|_| "--memory-mb needs a number".to_string())?,
                )
            }
            "--history" => {
                options.history_runs = Some(
                    value("--history")?
                        .parse()
                        .map_err(|_| "--history needs a number of runs".to_string())?,
                )
            }
            "--history-events" => {
                options.history_events = parse_count(&value("--history-events")?)?
            }
            "--large-state" => options.large_state = Some(parse_count(&value("--large-state")?)?),
            "--data" => options.data = PathBuf::from(value("--data")?),
            "--report" => options.report = PathBuf::from(value("--report")?),
            // `cargo test` passes test-harness flags; the smoke run ignores them.
            other if smoke => eprintln!("ignoring argument {other}"),
            other => {
                return Err(format!(
                    "unknown argument {other} (see benches/pipeline/main.rs)"
                ));
            }
        }
    }
    if options.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if options.history_runs.is_some() && options.large_state.is_some() {
        return Err("--history and --large-state are two benchmarks: one at a time".into());
    }
    Ok(options)
}

/// `1000000`, `1m`, `10M`, `500k`.
fn parse_count(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, factor) = match t.strip_suffix('m') {
        Some(d) => (d, 1_000_000.0),
        None => match t.strip_suffix('k') {
            Some(d) => (d, 1_000.0),
            None => (t.as_str(), 1.0),
        },
    };
    digits
        .parse::<f64>()
        .map(|n| (n * factor).round() as u64)
        .map_err(|_| format!("not an event count: {text}"))
}

/// One scale's generated input.
struct Dataset {
    bytes: u64,
    ndjson: PathBuf,
    recordings: PathBuf,
}

fn dataset(options: &Options, events: u64) -> Result<Dataset, String> {
    let dir = options.data.join(format!("{events}-seed{SEED}"));
    let ndjson = dir.join("events.ndjson");
    let stream = dir.join("stream").join("events.jsonl");
    let done = dir.join("complete");
    if !done.exists() {
        eprintln!("generating {events} events into {}", dir.display());
        std::fs::create_dir_all(stream.parent().unwrap_or(&dir)).map_err(|e| e.to_string())?;
        let stats = generator::write_files(events, SEED, &ndjson, &stream, 500)
            .map_err(|e| format!("generating events: {e}"))?;
        eprintln!(
            "generated {} events, {:.1} MB, {} articles, {} late, {} size rows",
            stats.events,
            stats.bytes as f64 / 1e6,
            stats.articles,
            stats.out_of_order,
            stats.size_rows
        );
        std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    }
    let bytes = std::fs::metadata(&ndjson).map_err(|e| e.to_string())?.len();
    // The Nakadi-compatible server finds a topic's recordings in a folder
    // named for the topic: one link per bench topic.
    let recordings = dir.join("recordings");
    std::fs::create_dir_all(&recordings).map_err(|e| e.to_string())?;
    for case in Case::ALL {
        let link = recordings.join(case.topic());
        if !link.exists() {
            std::os::unix::fs::symlink(dir.join("stream"), &link).map_err(|e| e.to_string())?;
        }
    }
    Ok(Dataset {
        bytes,

        ndjson,
        recordings,
    })
}

/// The bench topics: the same mapping as the DuckDB script. History (OLDER
/// files, on by default) is off, as the script keeps no older versions; KEYS
/// files and the key state are written as in every run.
fn write_topics(sql_dir: &Path) -> Result<(), String> {
    let schema = include_str!("schema.json");
    for case in Case::ALL {
        let dir = sql_dir.join(case.topic());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let format = if case.parquet() { "parquet" } else { "csv" };
        let toml = format!(
            "event_type = \"bench.{}\"\npartitioning_key = \"article_id\"\nordering_key = \"version\"\n\
             compact = {}\n\n[output]\nformat = \"{format}\"\n\n[warehouse]\nhistory = false\n",
            case.name(),
            case.compact(),
        );
        std::fs::write(dir.join("topic.toml"), toml).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("schema.json"),
            schema.replace("bench.event", &format!("bench.{}", case.name())),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("mapping.sql"), include_str!("mapping.sql"))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
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

impl Bench {
    /// `materializer run` of a case's topic into `out`, its summary as JSON;
    /// the caller adds the source.
    fn run_command(&self, case: Case, out: &Path) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--sql-dir")
            .arg(&self.sql_dir)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn")
            .env_remove("NAKADI_URL")
            .env_remove("MATERIALIZER_OUTPUT");
        command.args(["run", "--topic", &case.topic(), "--json", "--no-progress"]);
        // An option of `run`, not of the program.
        if let Some(mb) = self.options.memory_mb {
            command.args(["--memory-mb", &mb.to_string()]);
        }
        command.arg("--output").arg(out);
        command
    }

    fn materializer(
        &self,
        case: Case,
        data: &Dataset,
        nakadi: Option<&str>,
    ) -> Result<(Sample, Vec<PathBuf>), String> {
        let out = self.work.join("out-materializer");
        let _ = std::fs::remove_dir_all(&out);
        let mut command = self.run_command(case, &out);
        match nakadi {
            Some(url) => command.args(["--nakadi-url", url]),
            None => command
                .arg("--source")
                .arg(data.recordings.join(case.topic())),
        };
        let measurement = measure(&mut command)?;
        if !measurement.success {
            return Err(format!(
                "materializer failed on {} ({}): {}",
                case.name(),
                if nakadi.is_some() { "nakadi" } else { "file" },
                measurement.stderr
            ));
        }
        let summary: serde_json::Value = serde_json::from_str(&measurement.stdout)
            .map_err(|e| format!("run summary is not JSON ({e}): {}", measurement.stdout))?;
        let rows = summary["counts"]["main_rows"].as_u64().unwrap_or(0);
        let timings = Some(summary["timings"].clone());
        let topic_dir = out.join(case.topic());
        let files = summary["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter(|f| f["kind"] == "main")
                    .filter_map(|f| f["path"].as_str().map(|p| topic_dir.join(p)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok((
            Sample {
                measurement,
                rows,
                timings,
            },
            files,
        ))
    }

    fn duckdb(&self, case: Case, data: &Dataset) -> Result<(Sample, Vec<PathBuf>), String> {
        let out = self.work.join("out-duckdb");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        let target = out.join(if case.parquet() {
            "out.parquet"
        } else {
            "out.csv"
        });
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let script = duckdb_script(case, &data.ndjson, &target, threads);
        let measurement = measure(Command::new("python3").arg("-c").arg(script))?;
        if !measurement.success {
            return Err(format!(
                "duckdb failed on {}: {}",
                case.name(),
                measurement.stderr
            ));
        }
        let rows = measurement
            .stdout
            .trim()
            .parse()
            .map_err(|_| format!("duckdb printed {:?}", measurement.stdout))?;
        Ok((
            Sample {
                measurement,
                rows,
                timings: None,
            },
            vec![target],
        ))
    }
}

/// The analyst's DuckDB script for a case: explicit schema, QUALIFY, unnest, COPY.
fn duckdb_script(case: Case, input: &Path, target: &Path, threads: usize) -> String {
    let source = if case.compact() {
        "(SELECT * FROM events QUALIFY row_number() OVER (PARTITION BY article_id ORDER BY version DESC) = 1)"
    } else {
        "events"
    };
    let format = if case.parquet() {
        "parquet"
    } else {
        "csv, HEADER true"
    };
    format!(
        r#"
import duckdb
con = duckdb.connect()
con.execute("SET threads = {threads}")
con.execute("SET enable_progress_bar = false")

con.execute("""
CREATE VIEW events AS SELECT * FROM read_json('{input}', format = 'newline_delimited', columns = {{
    metadata: 'STRUCT(eid VARCHAR, occurred_at VARCHAR)', article_id: 'BIGINT', brand: 'VARCHAR',
    model: 'VARCHAR', version: 'BIGINT', available_qty: 'INTEGER',
    price: 'STRUCT(amount DECIMAL(12,2), currency VARCHAR)', sizes: 'STRUCT(size VARCHAR, qty INTEGER)[]'}})
""")
rows = con.execute("""
COPY (
    SELECT article_id, brand, model, version, available_qty, price.amount AS price_amount,
           price.currency AS currency, s.size AS size, s.qty AS qty,
           metadata.occurred_at AS occurred_at, metadata.eid AS eid
    FROM (SELECT *, unnest(sizes) AS s FROM {source})
) TO '{target}' (FORMAT {format})
""").fetchall()
print(rows[0][0])
"#,
        input = input.display(),
        target = target.display(),
    )
}

fn duckdb_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The local Nakadi-compatible server, serving the dataset's recordings.
struct NakadiServer {
    child: std::process::Child,
    url: String,
}

impl NakadiServer {
    fn start(sql_dir: &Path, recordings: &Path) -> Result<NakadiServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        // The server runs in a process of its own (this harness, started
        // again in server mode), so that its memory is not the harness's.
        let harness = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new(harness)
            .arg(SERVE_NAKADI)
            .arg(format!("127.0.0.1:{port}"))
            .arg(sql_dir)
            .arg(recordings)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the Nakadi-compatible server: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let server = NakadiServer { child, url };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let probe = format!("127.0.0.1:{port}");
        while std::net::TcpStream::connect(&probe).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("the Nakadi-compatible server did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for NakadiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Medians per (scale, case, engine).
#[derive(Default)]
struct Results {
    samples: BTreeMap<(u64, Case, Engine), Vec<Sample>>,
    bytes: BTreeMap<u64, u64>,
    overhead: Vec<Sample>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Results {
    fn wall(&self, key: &(u64, Case, Engine)) -> Option<f64> {
        let samples = self.samples.get(key)?;
        Some(median(
            &mut samples
                .iter()
                .map(|s| s.measurement.wall)
                .collect::<Vec<_>>(),
        ))
    }

    fn peak_rss(&self, key: &(u64, Case, Engine)) -> Option<f64> {
        let samples = self.samples.get(key)?;
        samples
            .iter()
            .map(|s| s.measurement.peak_rss_mb)
            .reduce(f64::max)
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| events | case | engine | wall s (median) | events/s | MB/s | peak RSS MB | rows | vs DuckDB | vs file |"
        );
        let _ = writeln!(out, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for (key, samples) in &self.samples {
            let (events, case, engine) = *key;
            let wall = self.wall(key).unwrap_or(f64::NAN);
            let mb = self.bytes.get(&events).copied().unwrap_or(0) as f64 / 1e6;
            let ratio = |other: Engine| {
                self.wall(&(events, case, other))
                    .filter(|_| engine != other)
                    .map_or("".to_string(), |o| format!("{:.2}", wall / o))
            };
            let _ = writeln!(
                out,
                "| {events} | {} | {} | {wall:.2} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                case.name(),
                engine.label(),
                events as f64 / wall,
                mb / wall,
                self.peak_rss(key).unwrap_or(f64::NAN),
                samples.first().map_or(0, |s| s.rows),
                if engine == Engine::DuckDb {
                    String::new()
                } else {
                    ratio(Engine::DuckDb)
                },
                if engine == Engine::Nakadi {
                    ratio(Engine::File)
                } else {
                    String::new()
                },
            );
        }
        out
    }

    fn stage_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| events | case | plan s | read+decode s | map+write s | of which key state s | commit s | whole process s |"
        );
        let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for (key, samples) in &self.samples {
            if key.2 != Engine::File {
                continue;
            }
            let stage = |name: &str| {
                median(
                    &mut samples
                        .iter()
                        .filter_map(|s| s.timings.as_ref()?[name].as_f64())
                        .collect::<Vec<_>>(),
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                key.0,
                key.1.name(),
                stage("plan"),
                stage("read"),
                stage("map_write"),
                stage("key_state"),
                stage("commit"),
                self.wall(key).unwrap_or(f64::NAN),
            );
        }
        out
    }
}

/// First argument that makes the harness a Nakadi-compatible server:
/// `<listen address> <sql dir> <recordings dir>`.
const SERVE_NAKADI: &str = "--serve-nakadi";

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

/// Serves the event types of `sql dir` with the recordings until killed.
fn serve_nakadi(args: &[String]) -> Result<(), String> {
    let [listen, sql_dir, recordings] = args else {
        return Err("expected: <listen address> <sql dir> <recordings dir>".into());
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let bus = nakadi_testkit::Bus::new(None, 4);
        let event_types = nakadi_testkit::topics::load(Path::new(sql_dir), Path::new(recordings))
            .map_err(|e| e.to_string())?;
        for event_type in event_types {
            let name = event_type.name().to_string();
            bus.add_event_type(event_type.document, event_type.recorded_partitions.max(1))?;
            bus.append_recording(&name, &event_type.recording)?;
        }
        let (_, server) = bus.start(listen).await.map_err(|e| e.to_string())?;
        server.await.map_err(|e| e.to_string())
    })
}

fn real_main() -> Result<(), String> {
    let options = parse_options()?;
    let work = options.data.join(format!("work-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let sql_dir = work.join("sql");
    write_topics(&sql_dir)?;
    let duckdb = options.duckdb && duckdb_installed();
    if options.duckdb && !duckdb {
        eprintln!("duckdb is not installed (pip install duckdb): measuring materializer alone");
    }
    let bench = Bench {
        options,
        work,
        sql_dir,
        duckdb,
    };
    let result = match (bench.options.history_runs, bench.options.large_state) {
        (Some(runs), _) => history::run(&bench, runs),
        (None, Some(keys)) => large_state::run(&bench, keys),
        (None, None) if bench.options.smoke => run_all(&bench)
            .and_then(|()| history::run(&bench, 3))
            .and_then(|()| large_state::run(&bench, 20_000)),
        (None, None) => run_all(&bench),
    };
    let _ = std::fs::remove_dir_all(&bench.work);
    result
}

fn run_all(bench: &Bench) -> Result<(), String> {
    let options = &bench.options;
    let mut results = Results::default();
    for &events in &options.scales {
        let data = dataset(options, events)?;
        results.bytes.insert(events, data.bytes);
        // The serde_json reference costs seconds per million events: use it
        // where DuckDB cannot vouch for the rows, or at small scales.
        let reference = (!bench.duckdb || events <= 200_000)
            .then(|| rows::reference(&data.ndjson))
            .transpose()?;
        let server = if options.nakadi && events <= options.nakadi_up_to {
            Some(NakadiServer::start(&bench.sql_dir, &data.recordings)?)
        } else {
            None
        };
        for run in 0..options.runs {
            for &case in &options.cases {
                let mut engines = vec![Engine::File];
                if bench.duckdb {
                    engines.push(Engine::DuckDb);
                }
                if server.is_some() {
                    engines.push(Engine::Nakadi);
                }
                let mut prints: Vec<(Engine, Fingerprint)> = Vec::new();
                for engine in engines {
                    let (sample, files) = match engine {
                        Engine::File => bench.materializer(case, &data, None)?,
                        Engine::Nakadi => bench.materializer(
                            case,
                            &data,
                            server.as_ref().map(|s| s.url.as_str()),
                        )?,
                        Engine::DuckDb => bench.duckdb(case, &data)?,
                    };
                    eprintln!(
                        "{events} {} {} run {}: {:.2} s, {:.0} MB peak, {} rows",
                        case.name(),
                        engine.label(),
                        run + 1,
                        sample.measurement.wall,
                        sample.measurement.peak_rss_mb,
                        sample.rows
                    );
                    if run == 0 {
                        let print = rows::fingerprint_files(&files, case.parquet())?;
                        if print.rows != sample.rows {
                            return Err(format!(
                                "{} {}: the summary says {} rows, the files hold {}",
                                case.name(),
                                engine.label(),
                                sample.rows,
                                print.rows
                            ));
                        }
                        prints.push((engine, print));
                    }
                    results
                        .samples
                        .entry((events, case, engine))
                        .or_default()
                        .push(sample);
                }
                check_rows(case, &prints, reference.as_ref(), &results, events)?;
            }
        }
        drop(server);
    }
    // The fixed overhead: the bundled example topic, a few hundred events.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for _ in 0..options.runs.max(3) {
        let out = bench.work.join("out-overhead");
        let _ = std::fs::remove_dir_all(&out);
        let measurement = measure(
            Command::new(BIN)
                .current_dir(root)
                .env("RUST_LOG", "warn")
                .args([
                    "run",
                    "--topic",
                    "article-stock-changed",
                    "--json",
                    "--no-progress",
                    "--output",
                ])
                .arg(&out),
        )?;
        if !measurement.success {
            return Err(format!("the example topic failed: {}", measurement.stderr));
        }
        let summary: serde_json::Value =
            serde_json::from_str(&measurement.stdout).map_err(|e| e.to_string())?;
        results.overhead.push(Sample {
            rows: summary["counts"]["main_rows"].as_u64().unwrap_or(0),
            timings: Some(summary["timings"].clone()),
            measurement,
        });
    }
    report(bench, &results)
}

/// Every engine's rows of a case must be the same rows.
fn check_rows(
    case: Case,
    prints: &[(Engine, Fingerprint)],
    reference: Option<&rows::Reference>,

    results: &Results,
    events: u64,
) -> Result<(), String> {
    // Later repetitions: the row counts must match the first one's.
    for ((e, c, engine), samples) in &results.samples {
        if *e != events || *c != case {
            continue;
        }
        if let Some(first) = samples.first()
            && samples.iter().any(|s| s.rows != first.rows)
        {
            return Err(format!(
                "{} {}: row counts differ between repetitions",
                case.name(),
                engine.label()
            ));
        }
    }
    let mut expected = reference.map(|r| {
        (
            "reference",
            if case.compact() {
                r.compacted.clone()
            } else {
                r.flattened.clone()
            },
        )
    });
    for (engine, print) in prints {
        match &expected {
            None => expected = Some((engine.label(), print.clone())),
            Some((label, want)) if want != print => {
                return Err(format!(
                    "{} at {events} events: {} wrote {} rows (fingerprint {:016x}), {label} {} rows ({:016x})",
                    case.name(),
                    engine.label(),
                    print.rows,
                    print.hash,
                    want.rows,
                    want.hash
                ));
            }
            Some(_) => {}
        }
    }
    if !prints.is_empty() {
        let checked: Vec<&str> = prints.iter().map(|(e, _)| e.label()).collect();
        eprintln!(
            "{} at {events} events: the same rows from {}{}",
            case.name(),
            checked.join(", "),
            if reference.is_some() {
                " and the reference"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Prints `report` and writes it to the report folder as `name`.
fn publish(bench: &Bench, name: &str, report: &str) -> Result<(), String> {
    println!("{report}");
    std::fs::create_dir_all(&bench.options.report).map_err(|e| e.to_string())?;
    let path = bench.options.report.join(name);
    std::fs::write(&path, report).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}

fn report(bench: &Bench, results: &Results) -> Result<(), String> {
    let options = &bench.options;
    let mut text = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        text,
        "Pipeline benchmark: {} repetition(s), median wall time of whole processes, {cpus} CPUs, seed {SEED}.\n",
        options.runs
    );
    text.push_str(&results.table());
    text.push_str(
        "\nmaterializer (file source), where the time goes (medians, from the run summary):\n\n",
    );
    text.push_str(&results.stage_table());
    let mut walls: Vec<f64> = results
        .overhead
        .iter()
        .map(|s| s.measurement.wall)
        .collect();
    let mut plans: Vec<f64> = results
        .overhead
        .iter()
        .filter_map(|s| s.timings.as_ref()?["plan"].as_f64())
        .collect();
    let _ = writeln!(
        text,
        "\nFixed overhead (bundled example topic, {} rows, whole process incl. start, config load, plan and commit): \
         median {:.3} s (plan {:.3} s), peak RSS {:.0} MB.",
        results.overhead.first().map_or(0, |s| s.rows),
        median(&mut walls),
        median(&mut plans),
        results
            .overhead
            .iter()
            .map(|s| s.measurement.peak_rss_mb)
            .fold(0.0, f64::max),
    );
    println!("{text}");
    std::fs::create_dir_all(&options.report).map_err(|e| e.to_string())?;
    std::fs::write(options.report.join("report.md"), &text).map_err(|e| e.to_string())?;
    if !options.smoke {
        let series = chart::Series::from_results(results.samples.keys().map(|k| {
            (
                k.0,
                format!("{} {}", k.1.name(), k.2.label()),
                results.wall(k).unwrap_or(f64::NAN),
            )
        }));
        let png = options.report.join("chart.png");
        match chart::draw(&png, &series) {
            Ok(()) => eprintln!("chart: {}", png.display()),
            Err(e) => eprintln!("no chart: {e}"),
        }
    }
    eprintln!("report: {}", options.report.join("report.md").display());
    Ok(())
}
