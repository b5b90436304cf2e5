//! The warehouse side: import SQL for PostgreSQL (tested against a real
//! server), Amazon Redshift and Oracle, generated from a topic's output schema.
//! What differs between them is in [`dialect`], one file each.
//!
//! The contract is per key, not per row. Every committed run of a compacting
//! topic writes, beside its MAIN and CORRECTION (and, with history, OLDER)
//! files, a KEYS file per Nakadi partition: one row per version the run
//! decided (the key parts and the ordering key under the output's column
//! names, `deleted`, and `kind`: `main` for the key's newest version in the
//! run, `correction` for a late one, `older` for an older one that arrived in
//! order), whether or not the mapping made rows of it. Loading every committed
//! run, in run order, with the SQL here leaves
//! - `<base>_ods` holding, for every key, the rows the mapping makes of its
//!   newest version, or none when that version deletes the key or maps to no
//!   row (an `unnest` of an empty array, a `WHERE`); a late version never
//!   replaces a newer one;
//! - `<base>_history` (unless `[warehouse] history = false`) holding the
//!   rows of every version, a delete as a row of its own (`deleted`), with
//!   `valid_from` its ordering key (included) and `valid_to` the next higher
//!   ordering key of its key (excluded; NULL and `is_current` for the
//!   newest); a late version, whenever it arrives, is put in its place and
//!   shortens its predecessor's range.
//!
//! Every load is refused unless its run is the next to load (`<base>_expect`),
//! and is one transaction.
//!
//! A topic with `compact = false` keeps every event: its MAIN files are
//! appended to `<base>_events`.

mod contract;
pub mod dialect;
mod dialects;
mod error;
mod explain;
mod load;
mod merge;
mod tables;
mod target;

pub use contract::contract;
pub use dialect::FilePlace;
pub use dialects::{UnknownDialect, dialect_named, dialect_names, dialects, publications};
pub use error::WarehouseError;
pub use explain::explain;
pub use load::load_run_sql;
pub use tables::setup_sql;

/// A warehouse dialect as callers hold it: `&'static Dialect` from
/// [`dialects`] or [`dialect_named`]. The trait is [`dialect::Dialect`].
pub type Dialect = dyn dialect::Dialect;
