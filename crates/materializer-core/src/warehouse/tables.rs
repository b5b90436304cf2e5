//! The tables, created once per topic and warehouse.

use std::fmt::Write as _;

use arrow::datatypes::DataType;

use super::dialect::{DELETED, Dialect, Tables, plain_table, with_table_options};
use super::error::WarehouseError;
use super::target::Target;
use crate::config::Topic;

/// The tables and the merge of a topic, created once; the warehouse loads
/// runs from `first_run` on (1 unless it starts in the middle of a topic's
/// life).
pub fn setup_sql(
    topic: &Topic,
    dialect: &dyn Dialect,
    first_run: u64,
) -> Result<String, WarehouseError> {
    let shape = topic.run_shape();
    let t = Target::new(topic.name(), &shape, dialect)?;
    let mut sql = t.header();
    sql.push_str(&format!(
        "-- {}\n",
        super::contract(topic).replace('\n', "\n-- ")
    ));
    sql.push_str(dialect.setup_note());
    if topic.compaction().compact {
        sql.push_str(&staging(&t));
        sql.push_str(&stores(&t));
    } else {
        sql.push_str(&append_only(&t));
    }
    sql.push_str(&loaded_runs(&t, first_run));
    sql.push_str(&dialect.create_guard_routine(&t));
    sql.push_str(&dialect.create_merge_routine(&t));
    Ok(sql)
}

/// Where a run's files are staged: MAIN, CORRECTION, OLDER (with history),
/// KEYS, and the table the merge picks the ODS's new versions into.
fn staging(t: &Target<'_>) -> String {
    let mut sql = t.dialect.create_staging(t);
    let _ = write!(
        sql,
        "\n-- The versions a merge gives the ODS (filled and emptied by each merge).\n{}",
        plain_table(&t.table("winners"), &t.keys_definitions(), None)
    );
    sql
}

/// The ODS, the versions it holds, and the history.
fn stores(t: &Target<'_>) -> String {
    let mut sql = String::new();
    sql.push('\n');
    let keyed = t.dialect.keyed_table_options(t);
    sql.push_str(&with_table_options(
        t.create_table(
            &t.table("ods"),
            "The operational data store: the rows of the newest version of every key.",
            &[],
        ),
        &keyed,
    ));
    sql.push_str(
        &t.dialect
            .index_by_key(t, &t.table("ods"), &t.table("ods_key")),
    );
    let mut versions = t.version_columns();
    versions.push(format!("{DELETED} {}", t.dialect.boolean_type()));
    let _ = write!(
        sql,
        "\n-- The version the ODS holds of every key, rows or not (a delete, or a version that maps\n\
         -- to no row, still counts: an older version never comes back).\n{}",
        with_table_options(
            plain_table(&t.table("ods_versions"), &versions, Some(&t.key_list(""))),
            &keyed
        )
    );
    if t.history() {
        let ordering_type = t.ordering_type();
        sql.push('\n');
        let boolean = t.dialect.boolean_type();
        let history = t.create_table(
            &t.table("history"),
            "History: the rows of every version of every key, valid from its ordering key (included)\n\
             -- to the next higher ordering key of its key (excluded; NULL: still valid, is_current).\n\
             -- A delete is a row of its own: deleted, the key and ordering columns set, the others NULL.\n\
             -- A version the mapping makes no row of (an unnest of an empty array, a WHERE) has none.",
            &[
                format!("valid_from {ordering_type}"),
                format!("valid_to {ordering_type}"),
                format!("{DELETED} {boolean}"),
                format!("is_current {boolean}"),
            ],
        );
        sql.push_str(&with_table_options(history, &keyed));
        sql.push_str(
            &t.dialect
                .index_by_key(t, &t.table("history"), &t.table("history_key")),
        );
        let _ = write!(
            sql,
            "\n-- Every version of every key the history knows, deletes included.\n{}",
            with_table_options(
                plain_table(
                    &t.table("history_versions"),
                    &versions,
                    Some(&t.version_list(""))
                ),
                &keyed
            )
        );
    }
    sql
}

/// A topic that keeps every event: its MAIN files, appended.
fn append_only(t: &Target<'_>) -> String {
    let mut sql = t.dialect.create_events_staging(t);
    sql.push_str(&t.create_table(
        &t.table("events"),
        "Every event of the topic, as the mapping makes its rows, run after run.",
        &[],
    ));
    sql
}

/// The runs loaded so far, and the first run the warehouse loads.
fn loaded_runs(t: &Target<'_>, first_run: u64) -> String {
    let sequence = t.dialect.sql_type(&DataType::Int64);
    format!(
        "\n-- Runs loaded so far.\nCREATE TABLE {loaded} (sequence {sequence} PRIMARY KEY, loaded_at {at});\n\
         \n-- The run this warehouse loads first: 1, or a later one for a warehouse that starts in\n\
         -- the middle of the topic's life (warehouse-sql --start-at).\n\
         CREATE TABLE {start} (first_run {sequence} NOT NULL);\n\
         INSERT INTO {start} (first_run) VALUES ({first_run});\n",
        loaded = t.table("loaded_runs"),
        at = t.dialect.loaded_at_definition(),
        start = t.table("load_start"),
    )
}
