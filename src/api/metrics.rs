//! Prometheus metrics of the runs this server executed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use materializer_core::run::ProgressSnapshot;

use crate::api::turns::TurnLoad;

#[derive(Default)]
struct Totals {
    runs: BTreeMap<(String, String), u64>,
    events_read: BTreeMap<String, u64>,
    events_rejected: BTreeMap<String, u64>,
    rows: BTreeMap<(String, &'static str), u64>,
    files: BTreeMap<String, u64>,
    bytes: BTreeMap<String, u64>,
    retries: BTreeMap<String, u64>,
    seconds_sum: BTreeMap<String, f64>,
    seconds_count: BTreeMap<String, u64>,
}

/// Counters and gauges, rendered in Prometheus' text format.
#[derive(Default)]
pub struct Metrics {
    totals: Mutex<Totals>,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts a finished run.
    pub fn record(&self, topic: &str, state: &str, p: &ProgressSnapshot, seconds: Option<f64>) {
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        *t.runs
            .entry((topic.to_string(), state.to_string()))
            .or_default() += 1;
        *t.events_read.entry(topic.to_string()).or_default() += p.events_read;
        *t.events_rejected.entry(topic.to_string()).or_default() += p.events_rejected;
        *t.rows.entry((topic.to_string(), "main")).or_default() += p.main_rows;
        *t.rows.entry((topic.to_string(), "correction")).or_default() += p.correction_rows;
        *t.files.entry(topic.to_string()).or_default() += p.files_written;
        *t.bytes.entry(topic.to_string()).or_default() += p.bytes_written;
        *t.retries.entry(topic.to_string()).or_default() += p.retries;
        if let Some(s) = seconds {
            *t.seconds_sum.entry(topic.to_string()).or_default() += s;
            *t.seconds_count.entry(topic.to_string()).or_default() += 1;
        }
    }

    pub fn render(
        &self,
        active: usize,
        queued: usize,
        previews: TurnLoad,
        live_events: &BTreeMap<String, u64>,
    ) -> String {
        let t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        fn family(out: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        family(
            &mut out,
            "materializer_runs_active",
            "gauge",
            "Runs executing now.",
        );
        let _ = writeln!(out, "materializer_runs_active {active}");
        family(
            &mut out,
            "materializer_runs_queued",
            "gauge",
            "Runs waiting for a slot.",
        );
        let _ = writeln!(out, "materializer_runs_queued {queued}");
        family(
            &mut out,
            "materializer_previews_running",
            "gauge",
            "Previews running now.",
        );
        let _ = writeln!(out, "materializer_previews_running {}", previews.running);
        family(
            &mut out,
            "materializer_previews_waiting",
            "gauge",
            "Previews waiting for a turn.",
        );
        let _ = writeln!(out, "materializer_previews_waiting {}", previews.waiting);
        family(
            &mut out,
            "materializer_runs_total",
            "counter",
            "Runs that ended, by topic and state.",
        );
        for ((topic, state), n) in &t.runs {
            let _ = writeln!(
                out,
                "materializer_runs_total{{topic=\"{}\",state=\"{state}\"}} {n}",
                escape(topic)
            );
        }
        let simple: [(&str, &str, &BTreeMap<String, u64>); 5] = [
            (
                "materializer_events_read_total",
                "Events read by ended runs.",
                &t.events_read,
            ),
            (
                "materializer_events_rejected_total",
                "Events rejected by ended runs.",
                &t.events_rejected,
            ),
            (
                "materializer_files_written_total",
                "Files written by ended runs.",
                &t.files,
            ),
            (
                "materializer_bytes_written_total",
                "Bytes written by ended runs.",
                &t.bytes,
            ),
            (
                "materializer_source_retries_total",
                "Retries the source needed (Nakadi).",
                &t.retries,
            ),
        ];
        for (name, help, values) in simple {
            family(&mut out, name, "counter", help);
            for (topic, n) in values {
                let _ = writeln!(out, "{name}{{topic=\"{}\"}} {n}", escape(topic));
            }
        }
        family(
            &mut out,
            "materializer_rows_written_total",
            "counter",
            "Rows written by ended runs, by kind.",
        );
        for ((topic, kind), n) in &t.rows {
            let _ = writeln!(
                out,
                "materializer_rows_written_total{{topic=\"{}\",kind=\"{kind}\"}} {n}",
                escape(topic)
            );
        }
        family(
            &mut out,
            "materializer_run_duration_seconds",
            "summary",
            "Duration of ended runs.",
        );
        for (topic, sum) in &t.seconds_sum {
            let count = t.seconds_count.get(topic).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "materializer_run_duration_seconds_sum{{topic=\"{}\"}} {sum}",
                escape(topic)
            );
            let _ = writeln!(
                out,
                "materializer_run_duration_seconds_count{{topic=\"{}\"}} {count}",
                escape(topic)
            );
        }
        family(
            &mut out,
            "materializer_events_read_in_progress",
            "gauge",
            "Events read so far by the runs executing now.",
        );
        for (topic, n) in live_events {
            let _ = writeln!(
                out,
                "materializer_events_read_in_progress{{topic=\"{}\"}} {n}",
                escape(topic)
            );
        }
        out
    }
}
