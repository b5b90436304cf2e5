//! The progress bar of a run on a terminal.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use materializer_core::run::Progress;

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
        loop {
            let p = progress.snapshot();
            bar.set_message(format!(
                "{:?} | partitions {}/{} | {} events ({:.1} MB) | {} rejected | rows {} main, {} correction | {} files",
                p.stage,
                p.partitions_finished,
                p.partitions_total,
                p.events_read,
                p.bytes_read as f64 / 1e6,
                p.events_rejected,
                p.main_rows,
                p.correction_rows,
                p.files_written,
            ));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
