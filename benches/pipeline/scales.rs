//! The benchmark over scales: for each scale, repetition and case, every
//! engine's run measured in turn and its rows checked against the others'
//! (and a reference where there is one), then the fixed overhead of a run.

use std::path::Path;
use std::process::Command;

use crate::dataset::dataset;
use crate::measure::measure;
use crate::nakadi::NakadiServer;
use crate::report::{Results, report};
use crate::rows::{self, Fingerprint};
use crate::{BIN, Bench, Case, Engine, Sample};

pub(crate) fn run_all(bench: &Bench) -> Result<(), String> {
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
