//! The report of the benchmark over scales: medians per scale, case and
//! engine, the tables of time, throughput, memory and stage timings, the
//! fixed overhead of a run, and the chart; and how any report is published.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{Bench, Case, Engine, SEED, Sample, chart};

/// Medians per (scale, case, engine).
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) samples: BTreeMap<(u64, Case, Engine), Vec<Sample>>,
    pub(crate) bytes: BTreeMap<u64, u64>,
    pub(crate) overhead: Vec<Sample>,
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
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

/// Prints `report` and writes it to the report folder as `name`.
pub(crate) fn publish(bench: &Bench, name: &str, report: &str) -> Result<(), String> {
    println!("{report}");
    std::fs::create_dir_all(&bench.options.report).map_err(|e| e.to_string())?;
    let path = bench.options.report.join(name);
    std::fs::write(&path, report).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}

pub(crate) fn report(bench: &Bench, results: &Results) -> Result<(), String> {
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
