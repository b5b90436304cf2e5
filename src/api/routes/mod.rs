//! The handlers, one file per resource.

pub mod mapping;
pub mod operations;
pub mod preview;
pub mod run_detail;
pub mod runs;
pub mod source_events;
pub mod topics;
