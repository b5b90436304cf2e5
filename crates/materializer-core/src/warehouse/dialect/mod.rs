//! The warehouses the import SQL is written for, one file each.
//!
//! [`Dialect`] is what differs between them. Its default methods write the SQL
//! they share (PostgreSQL's, which the tests run against a real server); each
//! dialect overrides only what its warehouse does differently. Shared code
//! asks the trait and never which dialect it holds.
//!
//! Adding a warehouse: a file here implementing [`Dialect`], its `mod` line
//! below and its entry in `DIALECTS`.

mod oracle;
mod postgres;
mod redshift;

use std::fmt::Write as _;
use std::sync::OnceLock;

use arrow::datatypes::DataType;

use super::WarehouseError;
use super::load::FilePlace;
use super::tables::plain_table;
use super::target::Target;
use crate::commit::Manifest;
use crate::sink::FileKind;

/// Every dialect, in the order they are offered (`--help`, the OpenAPI
/// document); names are unique.
static DIALECTS: &[&dyn Dialect] = &[&postgres::Postgres, &redshift::Redshift, &oracle::Oracle];

/// Every dialect the engine writes import SQL for.
pub fn dialects() -> &'static [&'static dyn Dialect] {
    DIALECTS
}

/// The names of [`dialects`], in the same order.
pub fn dialect_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| DIALECTS.iter().map(|d| d.name()).collect())
}

/// The dialect called `name` (as `--dialect` and `?dialect=` take it).
pub fn dialect_named(name: &str) -> Result<&'static dyn Dialect, UnknownDialect> {
    DIALECTS
        .iter()
        .copied()
        .find(|d| d.name() == name)
        .ok_or_else(|| UnknownDialect {
            name: name.to_string(),
        })
}

/// A dialect name that is not one of [`dialects`].
#[derive(Debug, thiserror::Error)]
#[error("unknown warehouse dialect {name:?}; known: {known}", known = dialect_names().join(", "))]
pub struct UnknownDialect {
    pub name: String,
}

/// The SQL of one warehouse.
///
/// The methods take the engine's view of a topic's tables, so the dialects
/// are implemented in this module only.
pub trait Dialect: Send + Sync {
    /// The name `--dialect` and `?dialect=` take, and the folder of the
    /// shipped SQL under `sql/warehouse/`.
    fn name(&self) -> &'static str;

    /// Comment lines of the setup telling what to change before running it,
    /// followed by an empty line.
    fn setup_note(&self) -> &'static str;

    /// The type of a column of `data_type`.
    fn sql_type(&self, data_type: &DataType) -> String {
        use DataType::*;
        match data_type {
            Int8 | Int16 | UInt8 => "SMALLINT".into(),
            Int32 | UInt16 => "INTEGER".into(),
            Int64 | UInt32 => "BIGINT".into(),
            UInt64 => "NUMERIC(20,0)".into(),
            Float32 => "REAL".into(),
            Float64 => "DOUBLE PRECISION".into(),
            Boolean => self.boolean_type().into(),
            Date32 | Date64 => "DATE".into(),
            Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
            Timestamp(_, None) => "TIMESTAMP".into(),
            Decimal128(p, s) => format!("NUMERIC({p},{s})"),
            _ => self.text_type().into(),
        }
    }

    /// The type of text of any length, and of any value without a type of its
    /// own (lists and structs arrive as their text).
    fn text_type(&self) -> &'static str {
        "TEXT"
    }

    fn boolean_type(&self) -> &'static str {
        "BOOLEAN"
    }

    /// The type of the KEYS files' `kind` (`main`, `correction`, `older`).
    fn kind_type(&self) -> &'static str {
        "VARCHAR(10)"
    }

    /// The type and default of `<base>_loaded_runs.loaded_at`: when the run
    /// was merged.
    fn loaded_at_definition(&self) -> &'static str {
        "TIMESTAMPTZ NOT NULL DEFAULT now()"
    }

    /// Whether `name` must be quoted to be used as an identifier.
    fn needs_quotes(&self, name: &str) -> bool {
        !is_plain_identifier(name)
    }

    /// `expr` holds the boolean false.
    fn is_false(&self, expr: &str) -> String {
        format!("NOT {expr}")
    }

    /// Setup: the tables a run's files are staged in (MAIN, CORRECTION,
    /// OLDER with history, KEYS), in that order. By default they are plain
    /// tables the load copies the files into.
    fn create_staging(&self, t: &Target<'_>) -> String {
        let mut sql = t.create_table(
            &t.table("main"),
            "Staging: the MAIN files of the run being loaded.",
            &[],
        );
        let _ = write!(
            sql,
            "\n-- Staging: the CORRECTION files of the run being loaded.\nCREATE TABLE {} (LIKE {});\n",
            t.table("correction"),
            t.table("main")
        );
        if t.history() {
            let _ = write!(
                sql,
                "\n-- Staging: the OLDER files of the run being loaded (versions only the history keeps).\n\
                 CREATE TABLE {} (LIKE {});\n",
                t.table("older"),
                t.table("main")
            );
        }
        let _ = write!(
            sql,
            "\n-- Staging: the KEYS files of the run being loaded (the versions it decided).\n{}",
            plain_table(&t.table("keys"), &t.keys_definitions(), None)
        );
        sql
    }

    /// Setup, for a topic that keeps every event: what comes before
    /// `<base>_events`. By default nothing: the load copies the MAIN files
    /// into it.
    fn create_events_staging(&self, _t: &Target<'_>) -> String {
        String::new()
    }

    /// Setup, for a compacting topic: a routine the load scripts call to
    /// merge a run. By default none: each load script holds the merge.
    fn create_merge_routine(&self, _t: &Target<'_>) -> String {
        String::new()
    }

    /// The table a run's MAIN files are loaded into when the topic keeps
    /// every event.
    fn appended_files_table(&self, t: &Target<'_>) -> String {
        t.table("events")
    }

    /// Deletes the rows of `table` for which `condition` holds; `condition`
    /// gets the name to refer to `table` by and compares it with `other`,
    /// aliased `other_alias`.
    fn delete_matching(
        &self,
        table: &str,
        alias: &str,
        other: &str,
        other_alias: &str,
        condition: &dyn Fn(&str) -> String,
    ) -> String {
        format!(
            "DELETE FROM {table} {alias}\nUSING {other} {other_alias}\nWHERE {}",
            condition(alias)
        )
    }

    /// Sets `valid_to` of every history row of the run's keys: the next
    /// higher ordering key of the key, NULL for the newest.
    fn close_ranges(&self, t: &Target<'_>) -> Vec<String> {
        let o = t.ordering_ident();
        vec![format!(
            "UPDATE {history} h\n\
             SET valid_to = (SELECT MIN(v.{o}) FROM {versions} v WHERE {v_equal} AND v.{o} > h.valid_from)\n\
             WHERE EXISTS (SELECT 1 FROM {keys} k WHERE {k_equal})",
            history = t.table("history"),
            versions = t.table("history_versions"),
            keys = t.table("keys"),
            v_equal = t.keys_equal("v", "h"),
            k_equal = t.keys_equal("k", "h"),
        )]
    }

    /// The statements that load the files of one committed run from `place`
    /// into the `staged` tables (a table per kind of file, in load order),
    /// merge them and record the run as loaded.
    fn load_run(
        &self,
        t: &Target<'_>,
        manifest: &Manifest,
        place: FilePlace<'_>,
        staged: &[(FileKind, String)],
    ) -> Result<String, WarehouseError>;
}

/// Shows the dialect's name.
impl std::fmt::Debug for dyn Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `name` reads the same unquoted: lower case (unquoted names fold
/// to a case), digits and underscores, not a reserved word.
fn is_plain_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name)
}

/// Words reserved in one dialect or another, quoted in all of them.
const RESERVED: [&str; 24] = [
    "all", "and", "as", "by", "case", "check", "column", "date", "default", "desc", "from",
    "group", "level", "limit", "number", "offset", "order", "select", "size", "table", "to",
    "user", "where", "window",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_is_found_by_its_own_name() {
        assert_eq!(dialect_names().len(), dialects().len());
        for (dialect, name) in dialects().iter().zip(dialect_names()) {
            assert_eq!(dialect.name(), *name);
            assert_eq!(dialect_named(name).unwrap().name(), *name);
        }
        let mut names = dialect_names().to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), dialects().len(), "a name used twice");
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let error = dialect_named("mysql").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown warehouse dialect \"mysql\"; known: postgres, redshift, oracle"
        );
        assert!(dialect_named("Postgres").is_err(), "names are exact");
    }
}
