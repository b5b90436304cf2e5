//! Names, columns and types of a topic's warehouse tables, in a dialect.

use arrow::datatypes::DataType;

use super::dialect::{DELETED, Dialect, KIND, Tables};
use super::error::WarehouseError;
use crate::config::{OutputSettings, RunShape};
use crate::sink::FileKind;

/// Names and columns of a topic's warehouse tables, in a dialect.
///
/// Public because the methods of [`Dialect`] take it; its module is private,
/// so nothing outside the warehouse module can name it.
pub struct Target<'a> {
    topic: &'a str,
    pub(super) dialect: &'a dyn Dialect,
    shape: &'a RunShape,
    /// The output columns (the MAIN and CORRECTION files).
    pub(super) columns: Vec<(String, DataType)>,
    /// The output columns holding the key parts and the ordering key.
    pub(super) keys: Vec<String>,
    pub(super) ordering: String,
}

impl<'a> Target<'a> {
    /// The tables of `topic`'s runs of `shape`, in `dialect`.
    pub(super) fn new(
        topic: &'a str,
        shape: &'a RunShape,
        dialect: &'a dyn Dialect,
    ) -> Result<Target<'a>, WarehouseError> {
        let columns: Vec<(String, DataType)> = shape
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.arrow_type()))
            .collect();
        for (what, setting, column) in shape
            .keys
            .iter()
            .map(|k| ("partitioning key", "key_columns", k))
            .chain([("ordering key", "ordering_column", &shape.ordering)])
        {
            if !columns.iter().any(|(name, _)| name == column) {
                return Err(WarehouseError::MissingColumn {
                    topic: topic.to_string(),
                    what,
                    column: column.clone(),
                    setting,
                });
            }
        }
        Ok(Target {
            topic,
            dialect,
            shape,
            columns,
            keys: shape.keys.clone(),
            ordering: shape.ordering.clone(),
        })
    }

    pub(super) fn history(&self) -> bool {
        self.shape.history
    }

    /// The kinds of file a run of a compacting topic stages, in load order.
    pub(super) fn staged_kinds(&self) -> Vec<FileKind> {
        let mut kinds = vec![FileKind::Main, FileKind::Correction];
        if self.history() {
            kinds.push(FileKind::Older);
        }
        kinds.push(FileKind::Keys);
        kinds
    }

    /// The staging table of each of [`Self::staged_kinds`].
    pub(super) fn staging_tables(&self) -> Vec<String> {
        self.staged_kinds()
            .into_iter()
            .map(|kind| self.table(kind.as_str()))
            .collect()
    }

    pub(super) fn ident(&self, name: &str) -> String {
        if self.dialect.needs_quotes(name) {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.to_string()
        }
    }

    pub(super) fn table(&self, suffix: &str) -> String {
        self.ident(&format!("{}_{suffix}", self.shape.table))
    }

    pub(super) fn ordering_ident(&self) -> String {
        self.ident(&self.ordering)
    }

    fn type_of(&self, column: &str) -> String {
        let data_type = self
            .columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, t)| t.clone())
            .unwrap_or(DataType::Utf8);
        self.dialect.sql_type(&data_type)
    }

    /// The column definitions of the key parts and the ordering key.
    pub(super) fn version_columns(&self) -> Vec<String> {
        self.keys
            .iter()
            .chain([&self.ordering])
            .map(|c| format!("{} {}", self.ident(c), self.type_of(c)))
            .collect()
    }

    /// The type of the ordering key: what follows the first space of its
    /// column definition.
    pub(super) fn ordering_type(&self) -> String {
        self.version_columns()
            .last()
            .and_then(|c| c.split_once(' ').map(|(_, ty)| ty.to_string()))
            .unwrap_or_default()
    }

    pub(super) fn column_list(&self, prefix: &str) -> String {
        self.columns
            .iter()
            .map(|(name, _)| format!("{prefix}{}", self.ident(name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key parts, as a list.
    pub(super) fn key_list(&self, prefix: &str) -> String {
        self.keys
            .iter()
            .map(|k| format!("{prefix}{}", self.ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key parts and the ordering key, as a list.
    pub(super) fn version_list(&self, prefix: &str) -> String {
        format!(
            "{}, {prefix}{}",
            self.key_list(prefix),
            self.ordering_ident()
        )
    }

    /// `a.k1 = b.k1 AND a.k2 = b.k2`.
    pub(super) fn keys_equal(&self, a: &str, b: &str) -> String {
        self.keys
            .iter()
            .map(|k| format!("{a}.{k} = {b}.{k}", k = self.ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The keys and the ordering key of `a` and `b` are equal.
    pub(super) fn versions_equal(&self, a: &str, b: &str) -> String {
        format!(
            "{} AND {a}.{o} = {b}.{o}",
            self.keys_equal(a, b),
            o = self.ordering_ident()
        )
    }

    pub(super) fn header(&self) -> String {
        format!(
            "-- Warehouse import of topic {topic} ({dialect}).\n\
             -- Generated by: materializer warehouse-sql {topic} --dialect {dialect}\n\
             -- Key: {keys}; ordering: {ordering}. Load committed runs one by one, in run order.\n",
            topic = self.topic,
            dialect = self.dialect.name(),
            keys = self.keys.join(", "),
            ordering = self.ordering,
        )
    }

    /// `CREATE TABLE name (columns...)` of the output columns.
    pub(super) fn create_table(&self, name: &str, comment: &str, extra: &[String]) -> String {
        let mut columns: Vec<String> = self
            .columns
            .iter()
            .map(|(c, t)| format!("    {} {}", self.ident(c), self.dialect.sql_type(t)))
            .collect();
        columns.extend(extra.iter().map(|e| format!("    {e}")));
        format!(
            "-- {comment}\nCREATE TABLE {name} (\n{}\n);\n",
            columns.join(",\n")
        )
    }
}

impl Tables for Target<'_> {
    fn topic_name(&self) -> &str {
        self.topic
    }

    fn output(&self) -> &OutputSettings {
        &self.shape.output
    }

    fn compact(&self) -> bool {
        self.shape.compact
    }

    fn history(&self) -> bool {
        Target::history(self)
    }

    fn columns(&self) -> &[(String, DataType)] {
        &self.columns
    }

    fn keys(&self) -> &[String] {
        &self.keys
    }

    fn ordering(&self) -> &str {
        &self.ordering
    }

    fn ident(&self, name: &str) -> String {
        Target::ident(self, name)
    }

    fn table(&self, suffix: &str) -> String {
        Target::table(self, suffix)
    }

    fn ordering_ident(&self) -> String {
        Target::ordering_ident(self)
    }

    fn key_list(&self, prefix: &str) -> String {
        Target::key_list(self, prefix)
    }

    fn keys_equal(&self, a: &str, b: &str) -> String {
        Target::keys_equal(self, a, b)
    }

    fn staging_tables(&self) -> Vec<String> {
        Target::staging_tables(self)
    }

    fn keys_definitions(&self) -> Vec<String> {
        let mut columns = self.version_columns();
        columns.push(format!("{DELETED} {}", self.dialect.boolean_type()));
        columns.push(format!("{KIND} {}", self.dialect.kind_type()));
        columns
    }

    fn create_table(&self, name: &str, comment: &str, extra: &[String]) -> String {
        Target::create_table(self, name, comment, extra)
    }

    fn merge_statements(&self) -> Vec<String> {
        Target::merge_statements(self)
    }

    fn merge_script(&self) -> String {
        Target::merge_script(self)
    }

    fn record_run(&self, sequence: u64) -> String {
        Target::record_run(self, sequence)
    }
}
