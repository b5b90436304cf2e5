//! The progress bar of a run on a terminal.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use materializer_core::run::{Progress, ProgressSnapshot, Stage};

use crate::cli::human::{bytes, counted, thousands};

pub(crate) static PROGRESS_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

pub(crate) fn progress_slot() -> &'static Mutex<Option<ProgressBar>> {
    PROGRESS_BAR.get_or_init(|| Mutex::new(None))
}

pub(crate) fn clear_progress_bar() {
    if let Some(bar) = progress_slot()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        bar.finish_and_clear();
    }
}

pub(crate) fn spawn_progress_bar(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    *progress_slot().lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    tokio::spawn(async move {
        let mut measure: Option<Measure> = None;
        loop {
            let p = progress.snapshot();
            // Once the plan's offsets tell how many events the run reads (or
            // how many bytes, for a recording), the spinner becomes a bar
            // with a percentage.
            if measure.is_none() {
                measure = Measure::of(&p);
                if let Some(m) = measure {
                    bar.set_length(m.total(&p));
                    if let Ok(style) =
                        ProgressStyle::with_template("{elapsed:>4} [{bar:24}] {percent:>3}% {msg}")
                    {
                        bar.set_style(style.progress_chars("=> "));
                    }
                }
            }
            if let Some(m) = measure {
                bar.set_position(m.done(&p).min(m.total(&p)));
            }
            bar.set_message(describe(&p));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// What the bar counts.
#[derive(Clone, Copy)]
enum Measure {
    /// Events, when the plan's offsets tell how many.
    Events,
    /// Bytes of a recording, whose plan names its files' sizes.
    RecordingBytes,
}

impl Measure {
    fn of(p: &ProgressSnapshot) -> Option<Measure> {
        if p.events_planned > 0 {
            Some(Measure::Events)
        } else if p.recording_bytes > 0 {
            Some(Measure::RecordingBytes)
        } else {
            None
        }
    }

    fn total(self, p: &ProgressSnapshot) -> u64 {
        match self {
            Measure::Events => p.events_planned,
            Measure::RecordingBytes => p.recording_bytes,
        }
    }

    fn done(self, p: &ProgressSnapshot) -> u64 {
        match self {
            Measure::Events => p.events_read,
            // Reading ends at the whole recording; mapping follows.
            Measure::RecordingBytes => p.recording_bytes_read,
        }
    }
}

/// One line of what a run is doing, in words.
fn describe(p: &ProgressSnapshot) -> String {
    let stage = match p.stage {
        Stage::Queued => "waiting",
        Stage::Planning => "planning",
        Stage::Reading => "reading",
        Stage::Mapping => "mapping and writing",
        Stage::Committing => "committing",
        Stage::Done => "done",
    };
    if p.partitions_total == 0 {
        return stage.to_string();
    }
    let events = match p.events_planned {
        0 => counted(p.events_read, "event", "events"),
        planned => format!(
            "{} of {}",
            thousands(p.events_read),
            counted(planned, "event", "events")
        ),
    };
    let mut line = format!(
        "{stage} | {}/{} | {events} ({}) | {} rejected | {} main and {} | {}",
        thousands(p.partitions_finished),
        counted(p.partitions_total, "partition", "partitions"),
        bytes(p.bytes_read),
        thousands(p.events_rejected),
        thousands(p.main_rows),
        counted(p.correction_rows, "correction row", "correction rows"),
        counted(p.files_written, "file", "files"),
    );
    if p.retries > 0 {
        line.push_str(&format!(" | {}", counted(p.retries, "retry", "retries")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_words_with_known_totals() {
        let waiting = ProgressSnapshot::default();
        assert_eq!(describe(&waiting), "waiting");
        let reading = ProgressSnapshot {
            stage: Stage::Reading,
            partitions_total: 8,
            partitions_finished: 1,
            events_planned: 2_000_000,
            events_read: 1_250_000,
            bytes_read: 1_016_000_000,
            events_rejected: 1,
            main_rows: 0,
            correction_rows: 0,
            files_written: 0,
            retries: 2,
            ..ProgressSnapshot::default()
        };
        assert_eq!(
            describe(&reading),
            "reading | 1/8 partitions | 1,250,000 of 2,000,000 events (1.0 GB) | 1 rejected \
             | 0 main and 0 correction rows | 0 files | 2 retries"
        );
    }
}
