//! `materializer record`: events into a recording of Nakadi batches.

use materializer_core::source::record::record as record_events;

use crate::cli::args::RecordArgs;
use crate::cli::error::CliError;
use crate::cli::human::counted;

pub(crate) fn record(args: &RecordArgs) -> Result<(), CliError> {
    let batch_events = usize::try_from(args.batch_events).unwrap_or(usize::MAX);
    let recorded = record_events(&args.events, &args.into, &args.partition, batch_events)
        .map_err(CliError::Record)?;
    match &recorded.offsets {
        Some((first, last)) => println!(
            "{}: {} recorded in partition {} ({}), offsets {first} to {last}",
            recorded.file.display(),
            counted(recorded.events, "event", "events"),
            recorded.partition,
            counted(recorded.batches, "batch", "batches")
        ),
        None => println!(
            "{}: no events in {}; nothing recorded",
            recorded.file.display(),
            args.events.display()
        ),
    }
    Ok(())
}
