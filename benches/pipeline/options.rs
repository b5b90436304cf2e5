//! The command line: the options of a benchmark run, with their defaults
//! for a real run (`--bench`) and for the smoke run `cargo test` makes.

use std::path::{Path, PathBuf};

use crate::Case;

pub(crate) struct Options {
    pub(crate) scales: Vec<u64>,
    pub(crate) runs: usize,
    pub(crate) cases: Vec<Case>,
    pub(crate) nakadi: bool,
    /// Largest scale measured through the Nakadi-compatible server, which
    /// holds every recorded event in memory.
    pub(crate) nakadi_up_to: u64,
    pub(crate) duckdb: bool,
    pub(crate) memory_mb: Option<u64>,
    pub(crate) data: PathBuf,
    pub(crate) report: PathBuf,
    pub(crate) smoke: bool,
    /// Runs of the history benchmark (instead of the scales), if asked for.
    pub(crate) history_runs: Option<u64>,
    /// Events of each history run, and of the large state run.
    pub(crate) history_events: u64,
    /// Keys of the large state benchmark's state, if asked for.
    pub(crate) large_state: Option<u64>,
    /// Events on random partitions (Nakadi's default strategy) instead of
    /// each article on one partition.
    pub(crate) random_partitions: bool,
    /// Measure the physical floor of each scale instead of the engines.
    pub(crate) floor: bool,
}

/// The folder of the smoke runs' reports, one folder per process.
fn smoke_reports() -> PathBuf {
    std::env::temp_dir()
        .join("materializer-bench")
        .join("report-smoke")
}

/// Removes the reports of smoke runs whose process has ended (files there
/// directly, as a build of an earlier commit writes them, are left).
pub(crate) fn remove_ended_smoke_reports() {
    let Ok(entries) = std::fs::read_dir(smoke_reports()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

pub(crate) fn parse_options() -> Result<Options, String> {
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
        // never replaces those of a real benchmark, and in a folder of its
        // process's own, so that smoke runs at once do not share one.
        report: if smoke {
            smoke_reports().join(std::process::id().to_string())
        } else {
            base.join("report")
        },
        smoke,
        history_runs: None,
        history_events: if smoke { 2_000 } else { 500_000 },
        large_state: None,
        random_partitions: false,
        floor: false,
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
            "--random-partitions" => options.random_partitions = true,
            "--floor" => options.floor = true,
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
