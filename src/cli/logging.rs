//! Structured logs on stderr, around the progress bar.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::args::*;
use crate::cli::progress::*;

/// Log lines pause the progress bar while they print.
#[derive(Clone, Copy)]
pub(crate) struct StderrAroundBar;

pub(crate) struct BarAwareWriter;

impl Write for BarAwareWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let slot = progress_slot().lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StderrAroundBar {
    type Writer = BarAwareWriter;

    fn make_writer(&'a self) -> Self::Writer {
        BarAwareWriter
    }
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Ballista's client logs a failed job's raw error text before it hands
    // it back; the run reports that failure itself, once, as the engine
    // explains it.
    let filter = match "ballista_core::execution_plans::distributed_query=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrAroundBar)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
