//! The handlers, one file per resource.

pub mod mapping;
pub mod operations;
pub mod preview;
pub mod runs;
pub mod topics;
