//! The history benchmark: a topic's life, run after run.
//!
//! Each run reads only what came after the run before (a recording of its
//! own, offsets going on), and most of its events are articles never seen
//! before, so the key state grows by about the run's size every run. A run's
//! cost should follow the events it reads, not the keys the topic has seen:
//! the table shows per run the keys in the state, wall time, peak RSS and the
//! map+write stage (where the state is read and written), and the last run's
//! time against the second's.
//!
//! Every run is checked: committed as the next run, having read exactly its
//! events, and with every late event of the run in CORRECTION, also when the
//! newer version of its article was committed by an earlier run (that is
//! what the key state is for).

use std::fmt::Write as _;

use crate::generator::{History, Stats};
use crate::measure::measure;
use crate::{Bench, Case, SEED};

/// Share of a run's events that are articles never seen before.
pub const NEW_RATIO: f64 = 0.9;
/// Share of a run's events that are late (an older version of an article
/// than one already delivered).
pub const LATE_RATIO: f64 = 0.02;

struct RunFigures {
    keys: u64,
    wall: f64,
    peak_rss_mb: f64,
    map_write: f64,
    key_state: f64,
}

pub fn run(bench: &Bench, runs: u64) -> Result<(), String> {
    let events = bench.options.history_events;
    let dir = bench.work.join("history");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "history: {runs} runs of {events} events, {:.0} % new articles, {:.0} % late",
        NEW_RATIO * 100.0,
        LATE_RATIO * 100.0
    );
    let mut history = History::new(SEED, runs, events, NEW_RATIO, LATE_RATIO);
    let mut before = Stats::default();
    let mut figures = Vec::new();
    for run in 1..=runs {
        let recording = dir.join(format!("run-{run:03}"));
        std::fs::create_dir_all(&recording).map_err(|e| e.to_string())?;
        let generated = history
            .write_run(events, &recording.join("events.jsonl"))
            .map_err(|e| format!("generating the events of history run {run}: {e}"))?;
        let mut command = bench.run_command(Case::CompactCsv, &out);
        command.arg("--source").arg(&recording);
        let measurement = measure(&mut command)?;
        if !measurement.success {
            return Err(format!("history run {run} failed: {}", measurement.stderr));
        }
        let summary: serde_json::Value = serde_json::from_str(&measurement.stdout)
            .map_err(|e| format!("run summary is not JSON ({e}): {}", measurement.stdout))?;
        let late = generated.out_of_order - before.out_of_order;
        check(
            &summary,
            &format!("history run {run}"),
            run,
            generated.events - before.events,
            late,
        )?;
        let run_figures = RunFigures {
            keys: generated.articles,
            wall: measurement.wall,
            peak_rss_mb: measurement.peak_rss_mb,
            map_write: summary["timings"]["map_write"].as_f64().unwrap_or(f64::NAN),
            key_state: summary["timings"]["key_state"].as_f64().unwrap_or(f64::NAN),
        };
        eprintln!(
            "history run {run}: {} keys in the state, {:.2} s, {:.0} MB peak, map+write {:.2} s (key state {:.2} s), {late} late events in CORRECTION",
            run_figures.keys,
            run_figures.wall,
            run_figures.peak_rss_mb,
            run_figures.map_write,
            run_figures.key_state
        );
        figures.push(run_figures);
        before = generated;
        std::fs::remove_dir_all(&recording).map_err(|e| e.to_string())?;
    }
    crate::publish(bench, "history.md", &report(&figures, events))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What every run must show: committed as run `run`, `events` read, and its
/// `late` events, every one of them, in CORRECTION. `label` names the run
/// in the error.
pub fn check(
    summary: &serde_json::Value,
    label: &str,
    run: u64,
    events: u64,
    late: u64,
) -> Result<(), String> {
    let counts = &summary["counts"];
    let found = (
        summary["outcome"].as_str(),
        summary["sequence"].as_u64(),
        counts["events_read"].as_u64(),
        counts["correction_events"].as_u64(),
    );
    if found != (Some("committed"), Some(run), Some(events), Some(late)) {
        return Err(format!(
            "{label}: expected it committed as run {run} with {events} events read \
             and {late} in CORRECTION, found {found:?}"
        ));
    }
    Ok(())
}

fn report(figures: &[RunFigures], events: u64) -> String {
    let mut text = format!(
        "History: runs of {events} events each, {:.0} % new articles, {:.0} % late\n\n\
         | run | keys in state after | wall s | peak RSS MB | map+write s | of which key state s |\n|---:|---:|---:|---:|---:|---:|\n",
        NEW_RATIO * 100.0,
        LATE_RATIO * 100.0
    );
    for (i, f) in figures.iter().enumerate() {
        let _ = writeln!(
            text,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            i + 1,
            f.keys,
            f.wall,
            f.peak_rss_mb,
            f.map_write,
            f.key_state
        );
    }
    if let (Some(second), Some(last)) = (figures.get(1), figures.last()) {
        let peak = figures.iter().map(|f| f.peak_rss_mb).fold(0.0, f64::max);
        let _ = write!(
            text,
            "\nlast run's wall time against the second's: {:.2}; highest peak RSS: {peak:.0} MB\n",
            last.wall / second.wall
        );
    }
    // Single runs vary with the machine; five against five shows the trend.
    if figures.len() >= 10 {
        let early = median_wall(&figures[1..6]);
        let late = median_wall(&figures[figures.len() - 5..]);
        let _ = writeln!(
            text,
            "median wall time of the last five runs against runs 2-6: {:.2} ({late:.2} s / {early:.2} s)",
            late / early
        );
    }
    text
}

fn median_wall(figures: &[RunFigures]) -> f64 {
    let mut walls: Vec<f64> = figures.iter().map(|f| f.wall).collect();
    crate::median(&mut walls)
}
