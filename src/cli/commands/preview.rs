//! `materializer preview`: a topic's mapping applied to sample events, the
//! rows shown as tables on the terminal. Nothing is written or committed; it
//! is the API's preview, from a terminal.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use materializer_core::mapping::Engine;
use materializer_core::preview::{
    Draft, PreviewLimits, PreviewOutcome, PreviewTable, preview_bounded,
};

use crate::cli::args::{Context, PreviewArgs};
use crate::cli::error::CliError;
use crate::cli::human::{counted, thousands};
use crate::cli::{environment, load_catalog};

/// Widest a cell is shown; longer values end in `…`.
const CELL_WIDTH: usize = 40;

pub(crate) async fn preview(
    engine: &Engine,
    ctx: &Context,
    args: PreviewArgs,
) -> Result<(), CliError> {
    let catalog = load_catalog(engine, ctx).await?;
    let topic = catalog.topic(&args.topic)?;
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0));
    let events = match &args.events {
        Some(path) => read_events(path)?,
        None => {
            let env = environment(engine, ctx, "out", &Default::default(), None)?;
            let source = env
                .sample_source(&topic, args.source.as_deref())
                .map_err(|e| CliError::setup(e, "--events FILE, --source PATH"))?;
            materializer_core::preview::sample_events(&source, args.limit as usize, timeout).await?
        }
    };
    let draft = match &args.mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadEvents {
                path: path.clone(),
                source,
            })?;
            Some(Draft::from_file(path.clone(), text))
        }
        None => None,
    };
    let limits = PreviewLimits {
        timeout,
        ..PreviewLimits::default()
    };
    let outcome =
        preview_bounded(engine.clone(), Arc::clone(&topic), draft, events, limits).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).map_err(CliError::Json)?
        );
    } else {
        print!("{}", describe(&outcome));
    }
    Ok(())
}

/// Events of a file: one JSON value per line, or one JSON array.
fn read_events(path: &Path) -> Result<Vec<Bytes>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadEvents {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, e: serde_json::Error| CliError::BadEvent {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    };
    if text.trim_start().starts_with('[') {
        let events: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(e.line(), e))?;
        return Ok(events.iter().map(|e| Bytes::from(e.to_string())).collect());
    }
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // Checked here so that the error names the line; the decoder then
        // judges the event against the schema.
        serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(|e| bad(i + 1, e))?;
        events.push(Bytes::from(line.to_string()));
    }
    Ok(events)
}

/// The outcome as the terminal shows it.
fn describe(outcome: &PreviewOutcome) -> String {
    let c = &outcome.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "MAIN: {} from {}",
        counted(c.main_rows, "row", "rows"),
        counted(c.main_input, "latest event", "latest events")
    );
    table(&mut out, &outcome.main);
    let _ = writeln!(
        out,
        "\nCORRECTION: {} from {}",
        counted(c.correction_rows, "row", "rows"),
        counted(
            c.correction_events,
            "out-of-order event",
            "out-of-order events"
        )
    );
    table(&mut out, &outcome.correction);
    let _ = writeln!(
        out,
        "\nREJECTED: {}",
        counted(c.events_rejected, "event", "events")
    );
    for rejected in &outcome.rejected {
        let _ = writeln!(out, "  offset {}: {}", rejected.index, rejected.reason);
    }
    let _ = writeln!(
        out,
        "\n{} read, {} superseded by a newer version (compaction rate {:.1}%){}",
        counted(c.events_read, "event", "events"),
        thousands(c.superseded),
        c.compaction_rate() * 100.0,
        if c.deletes > 0 {
            format!(", {}", counted(c.deletes, "delete", "deletes"))
        } else {
            String::new()
        }
    );
    out
}

/// Rows as an aligned table; nothing but a note when there are none.
fn table(out: &mut String, table: &PreviewTable) {
    if table.rows.is_empty() {
        out.push_str("  (no rows)\n");
        return;
    }
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| table.columns.iter().map(|c| cell(row.get(c))).collect())
        .collect();
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut String, values: &[String]| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", padded.join(" | ").trim_end());
    };
    line(out, &table.columns);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "  {}", rule.join("-+-"));
    for row in &cells {
        line(out, row);
    }
    if table.truncated {
        out.push_str("  (more rows than a preview shows)\n");
    }
}

/// A value as a cell: text without quotes, null empty, long values cut.
fn cell(value: Option<&serde_json::Value>) -> String {
    let text = match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() > CELL_WIDTH {
        let cut: String = text.chars().take(CELL_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}
