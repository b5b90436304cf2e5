//! The handlers, one file per resource.

pub mod operations;
pub mod preview;
pub mod runs;
pub mod topics;
