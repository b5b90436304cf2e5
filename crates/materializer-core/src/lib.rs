//! materializer-core: the engine that turns Nakadi event streams into
//! warehouse-ready files in object storage.
//!
//! A run of one topic flows one way through the modules:
//!
//! ```text
//! source (batches + cursors) -> decode (Arrow rows, rejected events)
//!   -> decide (per key: MAIN, CORRECTION, OLDER, against the key [`state`])
//!   -> map (the analyst's SQL views, [`mapping`])
//!   -> write (CSV / Parquet files through object_store, [`sink`])
//!   -> commit (the manifest that makes the files visible, [`commit`])
//! ```
//! [`run`] holds the stages and the one function that runs them in order,
//! [`run::execute`], which the command line and the HTTP API call. [`config`]
//! loads and checks the topics under `sql/`; [`warehouse`] writes the SQL that
//! loads the committed files into a warehouse.

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
