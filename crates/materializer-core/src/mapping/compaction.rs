//! The SQL the engine generates around a mapping: compaction and the
//! correction split, over a topic's partitioning key and ordering key.
//!
//! A key is decided over all the Nakadi partitions of a run: its versions may
//! arrive on any of them. Arrival order is the order of offsets within a
//! partition (`_seq`); between partitions there is none, so where a rule
//! needs one, partitions count in partition order (numerically for Nakadi's
//! numbered partitions: shorter names first, then alphabetically). For each
//! key:
//! - an event is *late* when an event with a higher ordering key arrived
//!   before it in the same partition, or when its ordering key is not higher
//!   than the highest one committed by an earlier run (the topic's key
//!   state); late events are the CORRECTION input, every one of them;
//! - of the other events, the one with the highest ordering key is the MAIN
//!   input: the compaction; among equal ones the last in partition order and
//!   then arrival order (the last to arrive in the partition that sorts last).
//!   That event is never late itself, so `ROW_NUMBER() ... = 1` over all
//!   events of the key finds it;
//! - a version that arrives more than once counts once: of the events with
//!   one key and ordering key, the last in that same order;
//! - the rest are older versions, those superseded only by a version from
//!   another partition among them: compaction removes them, or, when the
//!   warehouse keeps a history, they are its OLDER input.
//!
//! [`Compaction::classify_sql`] states the classification as one query; its
//! rows are split by `__class` into the inputs the mapping is applied to.
//! Runs compute the same classification in a single pass over the events
//! (`run::classify`, tested against this query), as the query's windows
//! would sort the run's events several times.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};

use super::{quote_ident, sql_path};
use crate::schema::{PARTITION_COLUMN, SEQ_COLUMN, field_at_path};

/// The decoded events of a run (all its partitions), as the classification
/// reads them.
pub const ARRIVALS_TABLE: &str = "__arrivals";
/// Text column of the classification: `main`, `correction` or `older`.
pub const CLASS_COLUMN: &str = "__class";
/// Per key, the highest ordering key of the committed runs.
pub const KEY_STATE_TABLE: &str = "__key_state";
/// Column of the key state holding the ordering key.
pub const ORDERING_COLUMN: &str = "__ordering";

/// Column of the key state holding part `i` of the partitioning key.
pub fn key_column(i: usize) -> String {
    format!("__key_{i}")
}

/// What `explain` shows of a topic.
pub struct Explained<'a> {
    pub topic: &'a str,
    pub event_columns: &'a [String],
    pub mapping_path: &'a str,
    pub mapping_text: &'a str,
    pub output_view: &'a str,
    /// Whether older versions go to a HISTORY file.
    pub keep_history: bool,
    /// The delete predicate, if any.
    pub deletes: Option<&'a str>,
    /// The warehouse contract, one paragraph.
    pub contract: &'a str,
}

/// A topic's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Column paths that identify an entity (e.g. `article_id`).
    pub partitioning_key: Vec<String>,
    /// Column path whose higher value means a newer version (e.g. `version`).
    pub ordering_key: String,
    /// False when the topic keeps every event: all of them go to MAIN, none
    /// to CORRECTION, and no key state is kept.
    pub compact: bool,
}

impl Compaction {
    fn partition_by(&self) -> String {
        self.partitioning_key
            .iter()
            .map(|p| sql_path(p))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The classification query over [`ARRIVALS_TABLE`] and [`KEY_STATE_TABLE`]:
    /// the events with the `events` columns plus [`CLASS_COLUMN`] (`main`,
    /// `correction`, or with `keep_history` `older`); the others are left out.
    pub fn classify_sql(&self, event_columns: &[String], keep_history: bool) -> String {
        let keys = self.partition_by();
        let ok = sql_path(&self.ordering_key);
        let seq = quote_ident(SEQ_COLUMN);
        let partition = quote_ident(PARTITION_COLUMN);
        // Partition order: numerically for numbered partitions.
        let after = format!("length({partition}) DESC, {partition} DESC, {seq} DESC");
        let columns = event_columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let join = self
            .partitioning_key
            .iter()
            .enumerate()
            .map(|(i, path)| format!("{} = state.{}", sql_path(path), quote_ident(&key_column(i))))
            .collect::<Vec<_>>()
            .join(" AND ");
        // A version without an ordering key has no place in the history.
        let kept = if keep_history {
            format!(" AND ({CLASS_COLUMN} <> 'older' OR {ok} IS NOT NULL)")
        } else {
            format!(" AND {CLASS_COLUMN} <> 'older'")
        };
        format!(
            "SELECT {columns}, {CLASS_COLUMN}\n\
             FROM (\n  \
               SELECT *,\n         \
                      ROW_NUMBER() OVER (PARTITION BY {keys}, {ok} ORDER BY {after}) AS __copy\n  \
               FROM (\n    \
                 SELECT *,\n           \
                        CASE WHEN coalesce(__max_before > {ok}, false) OR coalesce({ok} <= __committed, false) THEN 'correction'\n                \
                             WHEN __rank = 1 THEN 'main' ELSE 'older' END AS {CLASS_COLUMN}\n    \
                 FROM (\n      \
                   SELECT arrivals.*,\n             \
                          state.{ordering} AS __committed,\n             \
                          max({ok}) OVER (PARTITION BY {keys}, {partition} ORDER BY {seq}\n                             \
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS __max_before,\n             \
                          ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {ok} DESC NULLS LAST, {after}) AS __rank\n      \
                   FROM {ARRIVALS_TABLE} AS arrivals\n      \
                   LEFT JOIN {KEY_STATE_TABLE} AS state ON {join}\n    \
                 ) AS ranked\n  \
               ) AS classed\n\
             ) AS classified\n\
             WHERE __copy = 1{kept}",
            ordering = quote_ident(ORDERING_COLUMN),
        )
    }

    /// Columns of the key state: one per partitioning key part, then the
    /// highest committed ordering key.
    pub fn key_state_schema(&self, payload: &Schema) -> Option<SchemaRef> {
        let mut fields = Vec::new();
        for (i, path) in self.partitioning_key.iter().enumerate() {
            let field = field_at_path(payload, path)?;
            fields.push(Field::new(key_column(i), field.data_type().clone(), true));
        }
        let ordering = field_at_path(payload, &self.ordering_key)?;
        fields.push(Field::new(
            ORDERING_COLUMN,
            ordering.data_type().clone(),
            true,
        ));
        Some(Arc::new(Schema::new(fields)))
    }

    /// The whole chain a run executes for each Nakadi partition, as SQL text.
    pub fn explain(&self, input: &Explained<'_>) -> String {
        let columns = input
            .event_columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let deletes = match input.deletes {
            Some(predicate) => format!(
                "-- Deletes: an event for which `{predicate}` holds deletes its key; the mapping does\n\
                 -- not see it, the run's KEYS file records it.\n"
            ),
            None => "-- Deletes: none (delete_when in topic.toml).\n".to_string(),
        };
        let history = if input.keep_history {
            format!(
                "-- 2c. Generated: input of the OLDER file (older versions, for the warehouse's history).\n\
                 CREATE VIEW events AS SELECT {columns} FROM __classified WHERE {CLASS_COLUMN} = 'older';\n"
            )
        } else {
            String::new()
        };
        format!(
            "-- Topic {topic}: what a run does with its events, as SQL.\n\
             -- (Step 1 runs as one pass over the events, with the same result; steps 2 to 4\n\
             -- run for each Nakadi partition, whose files hold its events' rows.)\n\
             -- {ARRIVALS_TABLE}: the decoded events of this run, of all its partitions (_partition),\n\
             -- each partition's in arrival order (_seq).\n\
             -- {KEY_STATE_TABLE}: per key, the highest ordering key committed by earlier runs.\n\
             -- Partitioning key: {pk}; ordering key: {ok}.\n\
             {deletes}\
             \n\
             -- 1. Generated: classify every event, per key over all partitions. MAIN = the\n\
             --    latest version per key (ROW_NUMBER over the ordering key; among equal ones\n\
             --    the last in partition order, then arrival order); CORRECTION = events that\n\
             --    arrived after a higher version of their key in the same partition, or that\n\
             --    are not newer than the version committed by an earlier run; OLDER = the\n\
             --    older versions{kept}. A version that arrives more than once counts once\n\
             --    (the last copy).\n\
             CREATE VIEW __classified AS\n{classify};\n\
             \n\
             -- 2a. Generated: input of the MAIN file.\n\
             CREATE VIEW events AS SELECT {columns} FROM __classified WHERE {CLASS_COLUMN} = 'main';\n\
             -- 2b. Generated: input of the CORRECTION file (the same mapping runs over it).\n\
             CREATE VIEW events AS SELECT {columns} FROM __classified WHERE {CLASS_COLUMN} = 'correction';\n\
             {history}\
             \n\
             -- 3. The mapping, {mapping_path}, applied to each input:\n\
             {mapping}\n\
             \n\
             -- 4. Rows written to the file:\n\
             SELECT * FROM {output};\n\
             \n\
             -- The warehouse contract:\n\
             -- {contract}\n",
            topic = input.topic,
            pk = self.partitioning_key.join(", "),
            ok = self.ordering_key,
            kept = if input.keep_history {
                ""
            } else {
                " (dropped: this topic's warehouse keeps no history)"
            },
            classify = self.classify_sql(input.event_columns, input.keep_history),
            mapping_path = input.mapping_path,
            mapping = input.mapping_text.trim_end(),
            output = quote_ident(input.output_view),
            contract = input.contract.replace('\n', "\n-- "),
        )
    }
}
