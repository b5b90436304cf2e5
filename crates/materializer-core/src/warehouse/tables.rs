//! The tables, created once per topic and warehouse.

use std::fmt::Write as _;

use arrow::datatypes::DataType;

use super::target::{DELETED, KIND, Target};
use super::{Dialect, WarehouseError};
use crate::config::Topic;

/// The tables and the merge of a topic, created once.
pub fn setup_sql(topic: &Topic, dialect: Dialect) -> Result<String, WarehouseError> {
    let t = Target::new(topic, dialect)?;
    let mut sql = t.header();
    sql.push_str(&format!(
        "-- {}\n",
        super::contract(topic).replace('\n', "\n-- ")
    ));
    sql.push_str(match dialect {
        Dialect::Postgres => {
            "-- Change: the base name of the tables ([warehouse] table in topic.toml), the schema (search_path).\n\n"
        }
        Dialect::Redshift => {
            "-- Change: the base name of the tables, the schema. Not tested against Redshift here:\n\
             -- review the column types (VARCHAR lengths) before use.\n\n"
        }
        Dialect::Oracle => {
            "-- Change: the directory object (materializer_files) must point at the topic's output folder;\n\
             -- set the topic's CSV timestamp_format to \"%Y-%m-%dT%H:%M:%S%.6fZ\" so that every timestamp has\n\
             -- six fraction digits, as the access parameters below expect. Not tested against Oracle here.\n\n"
        }
    });
    if topic.compaction().compact {
        sql.push_str(&staging(&t));
        sql.push_str(&stores(&t));
    } else {
        sql.push_str(&append_only(&t));
    }
    sql.push_str(&loaded_runs(&t));
    if dialect == Dialect::Postgres && topic.compaction().compact {
        sql.push_str(&postgres_merge(&t));
    }
    Ok(sql)
}

/// Where a run's files are staged: MAIN, CORRECTION, OLDER (with history),
/// KEYS, and the table the merge picks the ODS's new versions into.
fn staging(t: &Target<'_>) -> String {
    let mut sql = String::new();
    let keys_columns = keys_columns(t);
    match t.dialect {
        Dialect::Oracle => {
            sql.push_str(&oracle_external_table(
                t,
                &t.table("main"),
                "MAIN",
                &t.columns,
            ));
            sql.push('\n');
            sql.push_str(&oracle_external_table(
                t,
                &t.table("correction"),
                "CORRECTION",
                &t.columns,
            ));
            sql.push('\n');
            if t.history() {
                sql.push_str(&oracle_external_table(
                    t,
                    &t.table("older"),
                    "OLDER",
                    &t.columns,
                ));
                sql.push('\n');
            }
            sql.push_str(&oracle_external_table(
                t,
                &t.table("keys"),
                "KEYS",
                &keys_columns,
            ));
        }
        _ => {
            sql.push_str(&t.create_table(
                &t.table("main"),
                "Staging: the MAIN files of the run being loaded.",
                &[],
            ));
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
                create_plain(t, &t.table("keys"), &keys_definitions(t), None)
            );
        }
    }
    let _ = write!(
        sql,
        "\n-- The versions a merge gives the ODS (filled and emptied by each merge).\n{}",
        create_plain(t, &t.table("winners"), &keys_definitions(t), None)
    );
    sql
}

/// The ODS, the versions it holds, and the history.
fn stores(t: &Target<'_>) -> String {
    let mut sql = String::new();
    sql.push('\n');
    sql.push_str(&t.create_table(
        &t.table("ods"),
        "The operational data store: the rows of the newest version of every key.",
        &[],
    ));
    let _ = writeln!(
        sql,
        "CREATE INDEX {} ON {} ({});",
        t.table("ods_key"),
        t.table("ods"),
        t.key_list("")
    );
    let mut versions = t.version_columns();
    versions.push(format!("{DELETED} {}", t.boolean_type()));
    let _ = write!(
        sql,
        "\n-- The version the ODS holds of every key, rows or not (a delete, or a version that maps\n\
         -- to no row, still counts: an older version never comes back).\n{}",
        create_plain(
            t,
            &t.table("ods_versions"),
            &versions,
            Some(&t.key_list(""))
        )
    );
    if t.history() {
        let ordering_type = ordering_type(t);
        sql.push('\n');
        sql.push_str(&t.create_table(
            &t.table("history"),
            "History: the rows of every version that is not a delete, valid from its ordering key\n\
             -- to the next higher ordering key of its key (NULL: still valid).",
            &[
                format!("valid_from {ordering_type}"),
                format!("valid_to {ordering_type}"),
            ],
        ));
        let _ = writeln!(
            sql,
            "CREATE INDEX {} ON {} ({});",
            t.table("history_key"),
            t.table("history"),
            t.key_list("")
        );
        let _ = write!(
            sql,
            "\n-- Every version of every key the history knows, deletes included.\n{}",
            create_plain(
                t,
                &t.table("history_versions"),
                &versions,
                Some(&t.version_list(""))
            )
        );
    }
    sql
}

/// A topic that keeps every event: its MAIN files, appended.
fn append_only(t: &Target<'_>) -> String {
    let mut sql = String::new();
    if t.dialect == Dialect::Oracle {
        sql.push_str(&oracle_external_table(
            t,
            &t.table("events_files"),
            "MAIN",
            &t.columns,
        ));
        sql.push('\n');
    }
    sql.push_str(&t.create_table(
        &t.table("events"),
        "Every event of the topic, as the mapping makes its rows, run after run.",
        &[],
    ));
    sql
}

fn loaded_runs(t: &Target<'_>) -> String {
    let (sequence, at) = match t.dialect {
        Dialect::Postgres => ("BIGINT", "TIMESTAMPTZ NOT NULL DEFAULT now()"),
        Dialect::Redshift => ("BIGINT", "TIMESTAMPTZ DEFAULT GETDATE()"),
        Dialect::Oracle => (
            "NUMBER(19)",
            "TIMESTAMP WITH TIME ZONE DEFAULT SYSTIMESTAMP",
        ),
    };
    format!(
        "\n-- Runs merged so far.\nCREATE TABLE {} (sequence {sequence} PRIMARY KEY, loaded_at {at});\n",
        t.table("loaded_runs")
    )
}

fn postgres_merge(t: &Target<'_>) -> String {
    let statements: String = t
        .merge_statements()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = format!("{s};\n");
            // The ODS rows inserted are the function's answer.
            if i == 3 {
                s.push_str("GET DIAGNOSTICS inserted = ROW_COUNT;\n");
            }
            s
        })
        .collect();
    format!(
        "\n-- Merges the loaded run into the ODS{history} and empties the staging tables.\n\
         -- Refuses a run that is loaded already or that comes before a loaded one.\n\
         CREATE OR REPLACE FUNCTION {merge}(run_sequence BIGINT) RETURNS BIGINT\n\
         LANGUAGE plpgsql AS $merge$\n\
         DECLARE\n    inserted BIGINT;\n\
         BEGIN\n\
         \x20   IF EXISTS (SELECT 1 FROM {loaded} WHERE sequence >= run_sequence) THEN\n\
         \x20       RAISE EXCEPTION 'run % of topic {topic} is not after the last loaded run', run_sequence;\n\
         \x20   END IF;\n\
         {statements}\
         \x20   INSERT INTO {loaded} (sequence) VALUES (run_sequence);\n\
         \x20   TRUNCATE {staging};\n\
         \x20   RETURN inserted;\n\
         END\n$merge$;\n",
        history = if t.history() { " and the history" } else { "" },
        merge = t.table("merge"),
        loaded = t.table("loaded_runs"),
        topic = t.topic.name(),
        statements = indent(&statements, "    "),
        staging = t.staging_tables().join(", "),
    )
}

/// The KEYS columns with their Arrow types (for external tables).
fn keys_columns(t: &Target<'_>) -> Vec<(String, DataType)> {
    let mut columns: Vec<(String, DataType)> = t
        .keys
        .iter()
        .chain([&t.ordering])
        .map(|name| {
            let data_type = t
                .columns
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

/// The KEYS columns as SQL definitions.
fn keys_definitions(t: &Target<'_>) -> Vec<String> {
    let mut columns = t.version_columns();
    columns.push(format!("{DELETED} {}", t.boolean_type()));
    columns.push(format!("{KIND} {}", t.text_type()));
    columns
}

fn ordering_type(t: &Target<'_>) -> String {
    t.version_columns()
        .last()
        .and_then(|c| c.split_once(' ').map(|(_, ty)| ty.to_string()))
        .unwrap_or_default()
}

fn create_plain(
    t: &Target<'_>,
    name: &str,
    columns: &[String],
    primary_key: Option<&str>,
) -> String {
    let mut lines: Vec<String> = columns.iter().map(|c| format!("    {c}")).collect();
    if let Some(key) = primary_key {
        lines.push(format!("    PRIMARY KEY ({key})"));
    }
    let _ = t;
    format!("CREATE TABLE {name} (\n{}\n);\n", lines.join(",\n"))
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

fn oracle_external_table(
    t: &Target<'_>,
    table: &str,
    comment: &str,
    columns: &[(String, DataType)],
) -> String {
    let csv = &t.topic.output().csv;
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, data_type)| {
            let field = t.ident(name);
            match data_type {
                DataType::Timestamp(_, _) => {
                    format!("    {field} CHAR(40) DATE_FORMAT TIMESTAMP WITH TIME ZONE MASK 'YYYY-MM-DD\"T\"HH24:MI:SS.FF6\"Z\"'")
                }
                DataType::Date32 | DataType::Date64 => format!("    {field} CHAR(10) DATE_FORMAT DATE MASK 'YYYY-MM-DD'"),
                _ => format!("    {field} CHAR(32000)"),
            }
        })
        .collect();
    let definitions: Vec<String> = columns
        .iter()
        .map(|(name, data_type)| format!("{} {}", t.ident(name), t.sql_type(data_type)))
        .collect();
    let mut sql = format!(
        "-- External table over the {comment} files of one run (see LOCATION).\n{}",
        create_plain(t, table, &definitions, None)
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
