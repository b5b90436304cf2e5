//! Oracle: its own types (booleans kept as text), identifiers, DELETE form,
//! and external tables over the run's files in place of staging tables.

use std::fmt::Write as _;

use arrow::datatypes::DataType;

use super::FilePlace;
use super::plain_table;
use super::{DELETED, KIND, REFUSAL, Tables, next_run_query};
use super::{Dialect, is_plain_identifier};
use crate::commit::Manifest;
use crate::sink::FileKind;
use crate::warehouse::error::WarehouseError;

pub struct Oracle;

/// The external table over a run's MAIN files of a topic that keeps every
/// event; the load appends its rows to `<base>_events`.
const EVENTS_FILES: &str = "events_files";

impl Dialect for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn setup_note(&self) -> &'static str {
        "-- Change: the directory object (materializer_files) must point at the topic's output folder;\n\
         -- set the topic's CSV timestamp_format to \"%Y-%m-%dT%H:%M:%S%.6fZ\" so that every timestamp has\n\
         -- six fraction digits, as the access parameters below expect. Timestamps are TIMESTAMP\n\
         -- columns in UTC (Oracle takes no key over TIMESTAMP WITH TIME ZONE). Run with SQL*Plus or\n\
         -- SQLcl (PL/SQL units end with a line holding /). Not run against Oracle here (each\n\
         -- statement is parsed as Oracle SQL in the tests).\n\n"
    }

    fn sql_type(&self, data_type: &DataType) -> String {
        use DataType::*;
        match data_type {
            Int8 | Int16 | Int32 | UInt8 | UInt16 => "NUMBER(10)".into(),
            Int64 | UInt32 => "NUMBER(19)".into(),
            UInt64 => "NUMBER(20)".into(),
            Float32 => "BINARY_FLOAT".into(),
            Float64 => "BINARY_DOUBLE".into(),
            Boolean => self.boolean_type().into(),
            Date32 | Date64 => "DATE".into(),
            // Kept in UTC: Oracle takes no key over TIMESTAMP WITH TIME ZONE
            // (ORA-02329), and the files hold every timestamp in UTC.
            Timestamp(_, _) => "TIMESTAMP".into(),
            Decimal128(p, s) => format!("NUMBER({p},{s})"),
            _ => self.text_type().into(),
        }
    }

    fn text_type(&self) -> &'static str {
        "VARCHAR2(4000 CHAR)"
    }

    // Oracle has no boolean column type: `true` and `false` as text.
    fn boolean_type(&self) -> &'static str {
        "VARCHAR2(5)"
    }

    fn kind_type(&self) -> &'static str {
        "VARCHAR2(10)"
    }

    fn loaded_at_definition(&self) -> &'static str {
        "TIMESTAMP WITH TIME ZONE DEFAULT SYSTIMESTAMP"
    }

    // An unquoted Oracle identifier begins with a letter.
    fn needs_quotes(&self, name: &str) -> bool {
        name.starts_with('_') || !is_plain_identifier(name)
    }

    fn is_false(&self, expr: &str) -> String {
        format!("{expr} = 'false'")
    }

    fn is_true(&self, expr: &str) -> String {
        format!("{expr} = 'true'")
    }

    fn boolean(&self, value: bool) -> &'static str {
        if value { "'true'" } else { "'false'" }
    }

    fn boolean_of(&self, condition: &str) -> String {
        format!("CASE WHEN {condition} THEN 'true' ELSE 'false' END")
    }

    fn create_guard_routine(&self, t: &dyn Tables) -> String {
        format!(
            "\n-- Refuses a run that is not the next to load: the run after the last loaded one, or,\n\
             -- into an empty warehouse, {start}.first_run. Holds {loaded} until the load commits.\n\
             CREATE OR REPLACE PROCEDURE {expect}(run_sequence IN NUMBER) AS\n\
             \x20   next_run NUMBER;\n\
             BEGIN\n\
             \x20   LOCK TABLE {loaded} IN EXCLUSIVE MODE;\n\
             \x20   {next_run} INTO next_run FROM dual;\n\
             \x20   IF run_sequence <> next_run THEN\n\
             \x20       RAISE_APPLICATION_ERROR(-20001, 'run ' || run_sequence || ' of topic {topic} cannot be loaded now: run '\n\
             \x20           || next_run || ' {REFUSAL}');\n\
             \x20   END IF;\n\
             END;\n/\n",
            expect = t.table("expect"),
            loaded = t.table("loaded_runs"),
            start = t.table("load_start"),
            next_run = next_run_query(t),
            topic = t.topic_name(),
        )
    }

    fn guard_run(&self, t: &dyn Tables, sequence: u64) -> String {
        format!("BEGIN\n    {}({sequence});\nEND;\n/\n", t.table("expect"))
    }

    fn create_staging(&self, t: &dyn Tables) -> String {
        let mut sql = external_table(t, &t.table("main"), "MAIN", t.columns());
        sql.push('\n');
        sql.push_str(&external_table(
            t,
            &t.table("correction"),
            "CORRECTION",
            t.columns(),
        ));
        sql.push('\n');
        if t.history() {
            sql.push_str(&external_table(t, &t.table("older"), "OLDER", t.columns()));
            sql.push('\n');
        }
        sql.push_str(&external_table(
            t,
            &t.table("keys"),
            "KEYS",
            &keys_columns(t),
        ));
        sql
    }

    fn create_events_staging(&self, t: &dyn Tables) -> String {
        let mut sql = external_table(t, &t.table(EVENTS_FILES), "MAIN", t.columns());
        sql.push('\n');
        sql
    }

    fn appended_files_table(&self, t: &dyn Tables) -> String {
        t.table(EVENTS_FILES)
    }

    fn delete_matching(
        &self,
        table: &str,
        alias: &str,
        other: &str,
        other_alias: &str,
        condition: &dyn Fn(&str) -> String,
    ) -> String {
        format!(
            "DELETE FROM {table} {alias}\nWHERE EXISTS (SELECT 1 FROM {other} {other_alias} WHERE {})",
            condition(alias)
        )
    }

    /// Points the external tables at the run's files (they are read where
    /// the directory object points, whatever `place` says). `ALTER TABLE`
    /// commits on its own, so the guard and the merge follow it, in one
    /// transaction that SQL*Plus rolls back on the first error.
    fn load_run(
        &self,
        t: &dyn Tables,
        manifest: &Manifest,
        _place: FilePlace<'_>,
        staged: &[(FileKind, String)],
    ) -> Result<String, WarehouseError> {
        let mut sql = String::from("WHENEVER SQLERROR EXIT FAILURE ROLLBACK\n");
        for (kind, table) in staged {
            let locations: Vec<String> = manifest
                .files
                .iter()
                .filter(|f| f.kind == *kind)
                .map(|f| format!("'{}'", f.path.replace('\'', "''")))
                .collect();
            let locations = if locations.is_empty() {
                "'none.csv'".to_string()
            } else {
                locations.join(", ")
            };
            let _ = writeln!(sql, "ALTER TABLE {table} LOCATION ({locations});");
        }
        sql.push_str(&self.guard_run(t, manifest.sequence));
        if t.compact() {
            sql.push_str(&t.merge_script());
        } else {
            let _ = writeln!(
                sql,
                "INSERT INTO {} SELECT * FROM {};",
                t.table("events"),
                t.table(EVENTS_FILES)
            );
        }
        sql.push_str(&t.record_run(manifest.sequence));
        Ok(sql)
    }
}

/// The KEYS columns with their Arrow types (for external tables).
fn keys_columns(t: &dyn Tables) -> Vec<(String, DataType)> {
    let ordering = t.ordering().to_string();
    let mut columns: Vec<(String, DataType)> = t
        .keys()
        .iter()
        .chain([&ordering])
        .map(|name| {
            let data_type = t
                .columns()
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, d)| d.clone())
                .unwrap_or(DataType::Utf8);
            (name.clone(), data_type)
        })
        .collect();
    columns.push((DELETED.into(), DataType::Boolean));
    columns.push((KIND.into(), DataType::Utf8));
    columns
}

fn external_table(
    t: &dyn Tables,
    table: &str,
    comment: &str,
    columns: &[(String, DataType)],
) -> String {
    let csv = &t.output().csv;
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, data_type)| {
            let field = t.ident(name);
            match data_type {
                DataType::Timestamp(_, _) => {
                    format!("    {field} CHAR(40) DATE_FORMAT TIMESTAMP MASK 'YYYY-MM-DD\"T\"HH24:MI:SS.FF6\"Z\"'")
                }
                DataType::Date32 | DataType::Date64 => format!("    {field} CHAR(10) DATE_FORMAT DATE MASK 'YYYY-MM-DD'"),
                _ => format!("    {field} CHAR(32000)"),
            }
        })
        .collect();
    let definitions: Vec<String> = columns
        .iter()
        .map(|(name, data_type)| format!("{} {}", t.ident(name), Oracle.sql_type(data_type)))
        .collect();
    let mut sql = format!(
        "-- External table over the {comment} files of one run (see LOCATION).\n{}",
        plain_table(table, &definitions, None)
    );
    sql.truncate(sql.trim_end().len() - 1); // reopen the statement
    let _ = write!(
        sql,
        "\nORGANIZATION EXTERNAL (\n\
         \x20 TYPE ORACLE_LOADER DEFAULT DIRECTORY materializer_files\n\
         \x20 ACCESS PARAMETERS (\n\
         \x20   RECORDS DELIMITED BY NEWLINE CHARACTERSET AL32UTF8{skip}\n\
         \x20   FIELDS CSV WITH EMBEDDED TERMINATED BY '{delimiter}' OPTIONALLY ENCLOSED BY '{quote}'\n\
         \x20   MISSING FIELD VALUES ARE NULL\n\
         \x20   (\n{fields}\n    )\n\
         \x20 )\n\
         \x20 LOCATION ('none.csv')\n\
         ) REJECT LIMIT 0;\n",
        skip = if csv.header { " SKIP 1" } else { "" },
        delimiter = csv.delimiter,
        quote = csv.quote,
        fields = fields.join(",\n"),
    );
    sql
}
