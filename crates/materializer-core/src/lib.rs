//! materializer-core: the engine that turns Nakadi event streams into
//! warehouse-ready files in object storage.
//!
//! A run of one topic flows one way through the modules:
//!
//! ```text
//! source (batches + cursors) -> decode (Arrow rows, rejected events)
//!   -> mapping (generated compaction + the analyst's SQL views)
//!   -> sink (CSV / Parquet files through object_store) -> run (manifest commit)
//! ```
//! [`config`] loads and checks the topics under `sql/`; [`run::execute`] is
//! what the command line and the HTTP API call.

pub mod commit;
pub mod config;
pub mod decode;
pub mod error;
pub mod failpoint;
pub mod mapping;
pub mod preview;
pub mod run;
pub mod schema;
pub mod sink;
pub mod source;
pub mod state;
pub mod warehouse;

#[cfg(test)]
mod test_support;

pub use config::{Catalog, Topic};
pub use error::{ErrorClass, Report, report};
pub use mapping::{Engine, EngineSettings};
pub use run::{RunRequest, RunSummary, execute};
