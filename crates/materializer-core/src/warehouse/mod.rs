//! The warehouse side: import SQL for PostgreSQL (tested against a real
//! server), Amazon Redshift and Oracle, generated from a topic's output schema.
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
//! - `<base>_history` (unless `[warehouse] history = false`) holding every
//!   version that is not a delete, with `valid_from` its ordering key and
//!   `valid_to` the next higher ordering key of its key, deletes included
//!   (NULL for the newest); a late version, whenever it arrives, is put in
//!   its place and shortens its predecessor's range.
//!
//! A topic with `compact = false` keeps every event: its MAIN files are
//! appended to `<base>_events`.

mod load;
mod merge;
mod tables;
mod target;

pub use load::{FilePlace, load_run_sql};
pub use tables::setup_sql;

/// Warehouses the import SQL is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Redshift,
    Oracle,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Redshift => "redshift",
            Dialect::Oracle => "oracle",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "topic {topic}: the mapping's output has no column {column:?} for the {what}; add it to the \
         output view or name the column in topic.toml ([warehouse] {setting})"
    )]
    MissingColumn {
        topic: String,
        what: &'static str,
        column: String,
        setting: &'static str,
    },
    #[error("topic {topic}: {message}")]
    Unsupported { topic: String, message: String },
}

impl WarehouseError {
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

/// The contract, in one paragraph wrapped at about 100 columns, for
/// `explain` and `warehouse-sql`.
pub fn contract(topic: &crate::config::Topic) -> String {
    wrap(&contract_text(topic))
}

fn contract_text(topic: &crate::config::Topic) -> String {
    if !topic.compaction().compact {
        return "This topic keeps every event (compact = false): each committed run's MAIN files are \
                appended to <base>_events, in run order; there are no corrections, no KEYS files and \
                no merge."
            .into();
    }
    let deletes = match topic.deletes() {
        Some(predicate) => format!(
            "an event for which `{}` holds deletes its key",
            predicate.sql()
        ),
        None => "no event deletes its key (set delete_when in topic.toml)".into(),
    };
    format!(
        "Load every committed run, in run order. The ODS then holds, for every key, the rows the \
         mapping makes of the key's newest version (highest ordering key, the last to arrive among \
         equals), or none when that version deletes the key or the mapping makes no row of it (an \
         unnest of an empty or null array, a WHERE); a late version never replaces a newer one. \
         {history}Each run's KEYS files name every version it decided, rows or not, so that the \
         merge replaces by key. Here {deletes}.",
        history = if topic.warehouse().history {
            "The history table holds every version that is not a delete, valid from its ordering key \
             to the next higher ordering key of its key (deletes included), a late version put in \
             its place. "
        } else {
            ""
        },
    )
}

/// Wraps a paragraph into lines of at most 96 columns (SQL comments of about 100).
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + word.len() > 96 {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}
