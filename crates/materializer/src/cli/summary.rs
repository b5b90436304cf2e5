//! The human summary at the end of a run.

use materializer_core::run::{Outcome, RunSummary};

/// The human summary at the end of a run.
pub fn describe_summary(s: &RunSummary) -> String {
    let c = &s.counts;
    let mut out = String::new();
    match s.outcome {
        Outcome::NothingNew => {
            out.push_str(&format!(
                "{}: nothing new since run {}; nothing written.\n",
                s.topic,
                s.sequence.map_or("(none)".to_string(), |n| n.to_string())
            ));
            return out;
        }
        Outcome::Committed => out.push_str(&format!(
            "{}: run {} committed in {:.2} s{}\n",
            s.topic,
            s.sequence.unwrap_or_default(),
            s.seconds,
            if s.resumed {
                " (resumed an uncommitted attempt)"
            } else {
                ""
            }
        )),
    }
    out.push_str(&format!(
        "  events read      {:>10}  (rejected {}, superseded {})\n",
        c.events_read, c.events_rejected, c.superseded
    ));
    out.push_str(&format!(
        "  main rows        {:>10}  from {} latest events (compaction rate {:.1}%)\n",
        c.main_rows,
        c.main_input,
        s.compaction_rate * 100.0
    ));
    out.push_str(&format!(
        "  correction rows  {:>10}  from {} out-of-order events\n",
        c.correction_rows, c.correction_events
    ));
    if c.older_rows > 0 {
        out.push_str(&format!(
            "  older rows       {:>10}  of versions kept for the warehouse's history
",
            c.older_rows
        ));
    }
    if c.deletes > 0 {
        out.push_str(&format!(
            "  deletes          {:>10}  events that end their key
",
            c.deletes
        ));
    }
    out.push_str(&format!(
        "  files            {:>10}  ({} bytes) under {}/{}\n",
        s.files.len(),
        s.bytes_written,
        s.output.trim_end_matches('/'),
        s.topic
    ));
    for file in &s.files {
        out.push_str(&format!("    {:<60} {:>8} rows\n", file.path, file.rows));
    }
    let cursors: Vec<String> = s
        .partitions
        .iter()
        .map(|p| format!("p{} {} -> {}", p.partition, p.start, p.end))
        .collect();
    out.push_str(&format!("  cursors          {}\n", cursors.join(", ")));
    out
}
