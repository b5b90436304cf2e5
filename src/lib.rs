//! materializer: Nakadi event streams -> warehouse-ready files in object storage.
//!
//! A run of one topic flows one way through the modules:
//!
//! ```text
//! nakadi (source: batches + cursors) -> decode (Arrow rows, rejected events)
//!   -> mapping (generated compaction + the analyst's SQL views)
//!   -> sink (CSV / Parquet files through object_store) -> run (manifest commit)
//! ```
//! [`config`] loads and checks the topics under `sql/`; [`cli`] is the command
//! line on top of [`run::execute`].

pub mod api;
pub mod cli;
pub mod config;
pub mod decode;
pub mod mapping;
pub mod nakadi;
pub mod preview;
pub mod run;
mod scan;
pub mod schema;
pub mod sink;
pub mod warehouse;

pub use config::{Catalog, Topic};
pub use mapping::{Engine, EngineSettings};
pub use run::{RunRequest, RunSummary, execute};
