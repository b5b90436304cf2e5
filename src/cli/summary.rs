//! The human summary at the end of a run.

use std::fmt::Write;

use materializer_core::run::{Outcome, RunSummary};

use crate::cli::human::{bytes, counted, thousands};

/// One line of the summary: a label, a right-aligned count, what it means.
fn line(out: &mut String, label: &str, n: u64, meaning: &str) {
    let _ = writeln!(out, "  {label:<16} {:>11}  {meaning}", thousands(n));
}

/// The human summary at the end of a run.
pub fn describe_summary(s: &RunSummary) -> String {
    let c = &s.counts;
    let mut out = String::new();
    match s.outcome {
        Outcome::NothingNew => {
            let _ = writeln!(
                out,
                "{}: nothing new since run {}; nothing written.",
                s.topic,
                s.sequence.map_or("(none)".to_string(), |n| n.to_string())
            );
            return out;
        }
        Outcome::Committed => {
            let _ = writeln!(
                out,
                "{}: run {} committed in {:.2} s{}",
                s.topic,
                s.sequence.unwrap_or_default(),
                s.seconds,
                if s.resumed {
                    " (resumed an uncommitted attempt)"
                } else {
                    ""
                }
            );
        }
    }
    line(
        &mut out,
        "events read",
        c.events_read,
        &format!(
            "({} rejected, {} superseded: compaction rate {:.1}%)",
            thousands(c.events_rejected),
            thousands(c.superseded),
            s.compaction_rate * 100.0
        ),
    );
    line(
        &mut out,
        "main rows",
        c.main_rows,
        &format!(
            "from {}",
            counted(c.main_input, "latest event", "latest events")
        ),
    );
    line(
        &mut out,
        "correction rows",
        c.correction_rows,
        &format!(
            "from {}",
            counted(
                c.correction_events,
                "out-of-order event",
                "out-of-order events"
            )
        ),
    );
    if c.older_rows > 0 {
        line(
            &mut out,
            "older rows",
            c.older_rows,
            "of versions kept for the warehouse's history",
        );
    }
    if c.deletes > 0 {
        line(&mut out, "deletes", c.deletes, "events that end their key");
    }
    if s.retries > 0 {
        line(
            &mut out,
            "retries",
            s.retries,
            "Nakadi requests or streams repeated after a failure",
        );
    }
    line(
        &mut out,
        "files",
        s.files.len() as u64,
        &format!(
            "({}) under {}/{}",
            bytes(s.bytes_written),
            s.output.trim_end_matches('/'),
            s.topic
        ),
    );
    for file in &s.files {
        let _ = writeln!(
            out,
            "    {:<60} {:>13}",
            file.path,
            counted(file.rows, "row", "rows")
        );
    }
    let cursors: Vec<String> = s
        .partitions
        .iter()
        .map(|p| {
            // Nakadi's partitions are numbers (`p0`); a file of events is
            // a partition named as the file.
            let numbered = p.partition.chars().all(|c| c.is_ascii_digit());
            let name = if numbered {
                format!("p{}", p.partition)
            } else {
                p.partition.clone()
            };
            format!("{name} {} -> {}", p.start, p.end)
        })
        .collect();
    let _ = writeln!(out, "  {:<16} {}", "cursors", cursors.join(", "));
    if let Some(job) = &s.workers_job {
        let _ = writeln!(
            out,
            "  {:<16} {job} (Ballista job of the partitions)",
            "cluster job"
        );
    }
    out
}
