//! nakadi-testkit: a Nakadi-compatible server for trying mappings and for
//! tests, built from Nakadi's published API, with faults injected on request.
//!
//! - [`Bus`]: the server (event types, partitions, publishing, the low-level
//!   stream, subscriptions with streams, commits and stats);
//! - [`faults`]: what `/_admin/faults` can inject;
//! - [`recording`]: recorded stream lines, read independently of the engine;
//! - [`topics`]: the event types a folder of topics needs, for the binary.

pub mod bus;
pub mod faults;
pub mod log;
pub mod recording;
pub mod topics;

pub use bus::Bus;
