//! Names, columns and types of a topic's warehouse tables, per dialect.

use arrow::datatypes::{DataType, Schema};

use super::{Dialect, WarehouseError};
use crate::config::Topic;
use crate::sink::FileKind;

/// The KEYS columns after the key parts and the ordering key.
pub(super) const DELETED: &str = "deleted";
pub(super) const KIND: &str = "kind";

/// Names and columns of a topic's warehouse tables.
pub(super) struct Target<'a> {
    pub(super) topic: &'a Topic,
    pub(super) dialect: Dialect,
    base: String,
    /// The output columns (the MAIN and CORRECTION files).
    pub(super) columns: Vec<(String, DataType)>,
    /// The output columns holding the key parts and the ordering key.
    pub(super) keys: Vec<String>,
    pub(super) ordering: String,
}

impl<'a> Target<'a> {
    pub(super) fn new(topic: &'a Topic, dialect: Dialect) -> Result<Target<'a>, WarehouseError> {
        let schema: &Schema = topic.output_schema();
        let (keys, ordering) = topic.warehouse().key_names(topic.compaction());
        for (what, setting, column) in keys
            .iter()
            .map(|k| ("partitioning key", "key_columns", k))
            .chain([("ordering key", "ordering_column", &ordering)])
        {
            if schema.field_with_name(column).is_err() {
                return Err(WarehouseError::MissingColumn {
                    topic: topic.name().to_string(),
                    what,
                    column: column.clone(),
                    setting,
                });
            }
        }
        let base = topic
            .warehouse()
            .table
            .clone()
            .unwrap_or_else(|| topic.name().replace(['-', '.'], "_"));
        Ok(Target {
            topic,
            dialect,
            base,
            columns: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
            keys,
            ordering,
        })
    }

    pub(super) fn history(&self) -> bool {
        self.topic.keeps_history()
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
        let simple = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !RESERVED.contains(&name);
        match self.dialect {
            Dialect::Oracle if simple && !name.starts_with('_') => name.to_string(),
            Dialect::Oracle => format!("\"{}\"", name.replace('"', "\"\"")),
            _ if simple => name.to_string(),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    pub(super) fn table(&self, suffix: &str) -> String {
        self.ident(&format!("{}_{suffix}", self.base))
    }

    pub(super) fn ordering_ident(&self) -> String {
        self.ident(&self.ordering)
    }

    pub(super) fn sql_type(&self, data_type: &DataType) -> String {
        use DataType::*;
        match (self.dialect, data_type) {
            (Dialect::Oracle, Int8 | Int16 | Int32 | UInt8 | UInt16) => "NUMBER(10)".into(),
            (Dialect::Oracle, Int64 | UInt32) => "NUMBER(19)".into(),
            (Dialect::Oracle, UInt64) => "NUMBER(20)".into(),
            (Dialect::Oracle, Float32) => "BINARY_FLOAT".into(),
            (Dialect::Oracle, Float64) => "BINARY_DOUBLE".into(),
            (Dialect::Oracle, Boolean) => "VARCHAR2(5)".into(),
            (Dialect::Oracle, Date32 | Date64) => "DATE".into(),
            (Dialect::Oracle, Timestamp(_, Some(_))) => "TIMESTAMP WITH TIME ZONE".into(),
            (Dialect::Oracle, Timestamp(_, None)) => "TIMESTAMP".into(),
            (Dialect::Oracle, Decimal128(p, s)) => format!("NUMBER({p},{s})"),
            (Dialect::Oracle, _) => "VARCHAR2(4000 CHAR)".into(),
            (_, Int8 | Int16 | UInt8) => "SMALLINT".into(),
            (_, Int32 | UInt16) => "INTEGER".into(),
            (_, Int64 | UInt32) => "BIGINT".into(),
            (_, UInt64) => "NUMERIC(20,0)".into(),
            (_, Float32) => "REAL".into(),
            (_, Float64) => "DOUBLE PRECISION".into(),
            (_, Boolean) => "BOOLEAN".into(),
            (_, Date32 | Date64) => "DATE".into(),
            (_, Timestamp(_, Some(_))) => "TIMESTAMPTZ".into(),
            (_, Timestamp(_, None)) => "TIMESTAMP".into(),
            (_, Decimal128(p, s)) => format!("NUMERIC({p},{s})"),
            (Dialect::Redshift, _) => "VARCHAR(65535)".into(),
            (_, _) => "TEXT".into(),
        }
    }

    fn type_of(&self, column: &str) -> String {
        let data_type = self
            .columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, t)| t.clone())
            .unwrap_or(DataType::Utf8);
        self.sql_type(&data_type)
    }

    /// The column definitions of the key parts and the ordering key.
    pub(super) fn version_columns(&self) -> Vec<String> {
        self.keys
            .iter()
            .chain([&self.ordering])
            .map(|c| format!("{} {}", self.ident(c), self.type_of(c)))
            .collect()
    }

    pub(super) fn boolean_type(&self) -> &'static str {
        match self.dialect {
            Dialect::Oracle => "VARCHAR2(5)",
            _ => "BOOLEAN",
        }
    }

    pub(super) fn text_type(&self) -> &'static str {
        match self.dialect {
            Dialect::Oracle => "VARCHAR2(10)",
            _ => "VARCHAR(10)",
        }
    }

    /// `expr` holds the boolean false (Oracle keeps booleans as text).
    pub(super) fn is_false(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::Oracle => format!("{expr} = 'false'"),
            _ => format!("NOT {expr}"),
        }
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
            topic = self.topic.name(),
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
            .map(|(c, t)| format!("    {} {}", self.ident(c), self.sql_type(t)))
            .collect();
        columns.extend(extra.iter().map(|e| format!("    {e}")));
        format!(
            "-- {comment}\nCREATE TABLE {name} (\n{}\n);\n",
            columns.join(",\n")
        )
    }
}

const RESERVED: [&str; 24] = [
    "all", "and", "as", "by", "case", "check", "column", "date", "default", "desc", "from",
    "group", "level", "limit", "number", "offset", "order", "select", "size", "table", "to",
    "user", "where", "window",
];
