//! The warehouses the import SQL is written for, one file each.
//!
//! [`Dialect`] is what differs between them. Its default methods write the SQL
//! they share (PostgreSQL's, which the tests run against a real server); each
//! dialect overrides only what its warehouse does differently. Shared code
//! asks the trait and never which dialect it holds.
//!
//! A dialect's statements see the topic's tables through [`Tables`] (names,
//! columns, the shared merge), so that nothing here depends on how those are
//! made. Adding a warehouse: a file here implementing [`Dialect`], its `mod`
//! line below and its entry in the engine's list (`warehouse::dialects`).

pub mod oracle;
pub mod postgres;
pub mod redshift;

use std::fmt::Write as _;

use arrow::datatypes::DataType;

use crate::commit::{Manifest, Publication};
use crate::config::OutputSettings;
use crate::sink::FileKind;
use crate::warehouse::error::WarehouseError;

/// KEYS column: whether the version deletes its key.
pub const DELETED: &str = "deleted";
/// KEYS column: `main`, `correction` or `older`.
pub const KIND: &str = "kind";

/// Where the warehouse finds a run's files.
pub enum FilePlace<'a> {
    /// A local folder (the output location `file://` folder).
    Folder(&'a std::path::Path),
    /// The URL of the topic's folder in object storage (`s3://bucket/prefix/<topic>`).
    Url(&'a str),
}

/// The topic's warehouse tables, as a dialect's statements see them.
pub trait Tables {
    /// The name of the topic the tables are for.
    fn topic_name(&self) -> &str;
    /// The run's file format and CSV dialect.
    fn output(&self) -> &OutputSettings;
    /// False when the topic keeps every event (no merge, `<base>_events`).
    fn compact(&self) -> bool;
    /// Whether the topic keeps a history table.
    fn history(&self) -> bool;
    /// The output columns and their Arrow types.
    fn columns(&self) -> &[(String, DataType)];
    /// The key columns' output names.
    fn keys(&self) -> &[String];
    /// The ordering column's output name.
    fn ordering(&self) -> &str;
    /// `name` as an identifier of the dialect (quoted where it must be).
    fn ident(&self, name: &str) -> String;
    /// The table `<base>_<suffix>`.
    fn table(&self, suffix: &str) -> String;
    /// The ordering column as an identifier.
    fn ordering_ident(&self) -> String;
    /// The key columns, each after `prefix`, comma-separated.
    fn key_list(&self, prefix: &str) -> String;
    /// `a.k = b.k AND ...` over the key columns.
    fn keys_equal(&self, a: &str, b: &str) -> String;
    /// The staging tables of a run's files, in the order of their kinds.
    fn staging_tables(&self) -> Vec<String>;
    /// The KEYS columns as SQL definitions.
    fn keys_definitions(&self) -> Vec<String>;
    /// `CREATE TABLE name` with the output columns and `extra` definitions.
    fn create_table(&self, name: &str, comment: &str, extra: &[String]) -> String;
    /// The statements of the merge of the staged run, without semicolons.
    fn merge_statements(&self) -> Vec<String>;
    /// The merge of the staged run, as statements of a load script.
    fn merge_script(&self) -> String;
    /// Records run `sequence` as loaded and ends the load's transaction.
    fn record_run(&self, sequence: u64) -> String;
}

/// The run a warehouse loads next: the one after the last loaded, or, into
/// an empty warehouse, the first run its setup declared (`--start-at`).
pub fn next_run_query(t: &dyn Tables) -> String {
    format!(
        "SELECT COALESCE((SELECT MAX(sequence) FROM {loaded}) + 1, (SELECT MAX(first_run) FROM {start}), 1)",
        loaded = t.table("loaded_runs"),
        start = t.table("load_start"),
    )
}

/// What a refused load says after the run's and the next run's numbers.
pub const REFUSAL: &str = "is the next to load (each committed run is loaded once, in run order)";

/// `CREATE TABLE name (columns..., PRIMARY KEY (primary_key))`.
pub fn plain_table(name: &str, columns: &[String], primary_key: Option<&str>) -> String {
    let mut lines: Vec<String> = columns.iter().map(|c| format!("    {c}")).collect();
    if let Some(key) = primary_key {
        lines.push(format!("    PRIMARY KEY ({key})"));
    }
    format!("CREATE TABLE {name} (\n{}\n);\n", lines.join(",\n"))
}

/// `create_table`, a `CREATE TABLE ... );` statement, with `options` after
/// its column list.
pub fn with_table_options(create_table: String, options: &str) -> String {
    if options.is_empty() {
        return create_table;
    }
    match create_table.strip_suffix(");\n") {
        Some(head) => format!("{head}) {options};\n"),
        None => create_table,
    }
}

/// A load the topic's output or the run's place does not allow.
pub fn unsupported(topic: &str, message: &str) -> WarehouseError {
    WarehouseError::Unsupported {
        topic: topic.to_string(),
        message: message.into(),
    }
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

    /// What this warehouse needs published beside every committed run, if
    /// anything (Redshift: its COPY manifests).
    fn publication(&self) -> Option<&'static dyn Publication> {
        None
    }

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

    /// Setup: what makes finding a key's rows in `table` fast. By default
    /// an index on the key columns.
    fn index_by_key(&self, t: &dyn Tables, table: &str, index: &str) -> String {
        format!("CREATE INDEX {index} ON {table} ({});\n", t.key_list(""))
    }

    /// Setup: what follows the column list of a table whose rows are found
    /// by key (the ODS, the history and their versions). By default nothing.
    fn keyed_table_options(&self, _t: &dyn Tables) -> String {
        String::new()
    }

    /// `expr` (a column of [`Dialect::boolean_type`]) is true.
    fn is_true(&self, expr: &str) -> String {
        expr.to_string()
    }

    /// A boolean value of a column of [`Dialect::boolean_type`].
    fn boolean(&self, value: bool) -> &'static str {
        if value { "true" } else { "false" }
    }

    /// `condition` as a value of a column of [`Dialect::boolean_type`].
    fn boolean_of(&self, condition: &str) -> String {
        format!("({condition})")
    }

    /// Setup: the tables a run's files are staged in (MAIN, CORRECTION,
    /// OLDER with history, KEYS), in that order. By default they are plain
    /// tables the load copies the files into.
    fn create_staging(&self, t: &dyn Tables) -> String {
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

    /// Setup: the routine that refuses a run that is not the next to load
    /// (`<base>_expect`), naming the run that is. By default a PL/pgSQL
    /// function that also locks `<base>_loaded_runs` until the load's
    /// transaction ends, so that two loads never overlap.
    fn create_guard_routine(&self, t: &dyn Tables) -> String {
        format!(
            "\n-- Refuses a run that is not the next to load: the run after the last loaded one, or,\n\
             -- into an empty warehouse, {start}.first_run. Holds {loaded} until the load commits.\n\
             CREATE OR REPLACE FUNCTION {expect}(run_sequence BIGINT) RETURNS VOID\n\
             LANGUAGE plpgsql AS $expect$\n\
             DECLARE\n    next_run BIGINT;\n\
             BEGIN\n\
             \x20   LOCK TABLE {loaded} IN SHARE ROW EXCLUSIVE MODE;\n\
             \x20   {next_run} INTO next_run;\n\
             \x20   IF run_sequence <> next_run THEN\n\
             \x20       RAISE EXCEPTION 'run % of topic {topic} cannot be loaded now: run % {REFUSAL}', run_sequence, next_run;\n\
             \x20   END IF;\n\
             END\n$expect$;\n",
            expect = t.table("expect"),
            loaded = t.table("loaded_runs"),
            start = t.table("load_start"),
            next_run = next_run_query(t),
            topic = t.topic_name(),
        )
    }

    /// The load script's first statements: refuse run `sequence` unless it
    /// is the next to load, before anything is staged.
    fn guard_run(&self, t: &dyn Tables, sequence: u64) -> String {
        format!("SELECT {}({sequence});\n", t.table("expect"))
    }

    /// Setup, for a topic that keeps every event: what comes before
    /// `<base>_events`. By default nothing: the load copies the MAIN files
    /// into it.
    fn create_events_staging(&self, _t: &dyn Tables) -> String {
        String::new()
    }

    /// Setup: a routine the load scripts call to merge a run (or, for a topic
    /// that keeps every event, to record it). By default none: each load
    /// script holds its statements.
    fn create_merge_routine(&self, _t: &dyn Tables) -> String {
        String::new()
    }

    /// The table a run's MAIN files are loaded into when the topic keeps
    /// every event.
    fn appended_files_table(&self, t: &dyn Tables) -> String {
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
    fn close_ranges(&self, t: &dyn Tables) -> Vec<String> {
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
        t: &dyn Tables,
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
