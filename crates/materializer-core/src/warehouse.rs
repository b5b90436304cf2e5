//! The warehouse side: import SQL for PostgreSQL (tested against a real
//! server), Amazon Redshift and Oracle, generated from a topic's output schema.
//!
//! Every dialect follows the same procedure, run by run, in run order:
//! 1. load the run's MAIN files into `<base>_main` and its CORRECTION files into
//!    `<base>_correction` (staging, or external tables);
//! 2. the view `<base>_changes` holds all CORRECTION rows plus the MAIN rows not
//!    in CORRECTION (same key and ordering key);
//! 3. merge into `<base>_ods`: per key, the newest version among the run's
//!    changes replaces the ODS rows of the key when, and only when, it is newer
//!    than them. An older (late) version never overwrites a newer one.

use std::fmt::Write as _;

use arrow::datatypes::{DataType, Schema};

use crate::config::{CsvCompression, Topic};
use crate::run::Manifest;
use crate::sink::FileKind;

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

/// Names and columns of a topic's warehouse tables.
struct Target<'a> {
    topic: &'a Topic,
    dialect: Dialect,
    base: String,
    columns: Vec<(String, DataType)>,
    keys: Vec<String>,
    ordering: String,
}

fn last_part(path: &str) -> String {
    path.rsplit('.').next().unwrap_or(path).to_string()
}

impl<'a> Target<'a> {
    fn new(topic: &'a Topic, dialect: Dialect) -> Result<Target<'a>, WarehouseError> {
        let schema: &Schema = topic.output_schema();
        let keys: Vec<String> = topic.warehouse().key_columns.clone().unwrap_or_else(|| {
            topic
                .compaction()
                .partitioning_key
                .iter()
                .map(|p| last_part(p))
                .collect()
        });
        let ordering = topic
            .warehouse()
            .ordering_column
            .clone()
            .unwrap_or_else(|| last_part(&topic.compaction().ordering_key));
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

    fn ident(&self, name: &str) -> String {
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

    fn table(&self, suffix: &str) -> String {
        self.ident(&format!("{}_{suffix}", self.base))
    }

    fn sql_type(&self, data_type: &DataType) -> String {
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

    fn column_list(&self, prefix: &str) -> String {
        self.columns
            .iter()
            .map(|(name, _)| format!("{prefix}{}", self.ident(name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_list(&self) -> String {
        self.keys
            .iter()
            .map(|k| self.ident(k))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a.k1 = b.k1 AND a.k2 = b.k2`.
    fn keys_equal(&self, a: &str, b: &str) -> String {
        self.keys
            .iter()
            .map(|k| format!("{a}.{k} = {b}.{k}", k = self.ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn header(&self) -> String {
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

    fn create_table(&self, name: &str, comment: &str) -> String {
        let mut sql = format!("-- {comment}\nCREATE TABLE {name} (\n");
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(c, t)| format!("    {} {}", self.ident(c), self.sql_type(t)))
            .collect();
        sql.push_str(&columns.join(",\n"));
        sql.push_str("\n);\n");
        sql
    }

    fn changes_view(&self) -> String {
        let ok = self.ident(&self.ordering);
        format!(
            "-- All CORRECTION rows plus the MAIN rows not in CORRECTION (same key and ordering key).\n\
             CREATE {or_replace}VIEW {changes} AS\n\
             SELECT {columns} FROM {correction}\n\
             UNION ALL\n\
             SELECT {m_columns} FROM {main} m\n\
             WHERE NOT EXISTS (\n    SELECT 1 FROM {correction} c\n    WHERE {keys_equal} AND c.{ok} = m.{ok}\n);\n",
            or_replace = "OR REPLACE ",
            changes = self.table("changes"),
            columns = self.column_list(""),
            m_columns = self.column_list("m."),
            correction = self.table("correction"),
            main = self.table("main"),
            keys_equal = self.keys_equal("c", "m"),
        )
    }

    /// The two statements of the merge: drop ODS rows of keys whose newest
    /// version in the run is newer, then insert the newest versions of keys the
    /// ODS no longer (or never) had.
    fn merge_statements(&self) -> String {
        let ok = self.ident(&self.ordering);
        let keys = self.key_list();
        let newest = format!(
            "SELECT {keys}, MAX({ok}) AS newest FROM {changes} GROUP BY {keys}",
            changes = self.table("changes")
        );
        let delete = match self.dialect {
            Dialect::Oracle => format!(
                "DELETE FROM {ods} o\nWHERE EXISTS (\n    SELECT 1 FROM ({newest}) n\n    WHERE {keys_equal} AND o.{ok} < n.newest\n)",
                ods = self.table("ods"),
                keys_equal = self.keys_equal("n", "o"),
            ),
            _ => format!(
                "DELETE FROM {ods} o\nUSING ({newest}) n\nWHERE {keys_equal} AND o.{ok} < n.newest",
                ods = self.table("ods"),
                keys_equal = self.keys_equal("n", "o"),
            ),
        };
        let insert = format!(
            "INSERT INTO {ods} ({columns})\n\
             SELECT {c_columns}\n\
             FROM {changes} c\n\
             JOIN ({newest}) n ON {n_equal} AND c.{ok} = n.newest\n\
             WHERE NOT EXISTS (SELECT 1 FROM {ods} o WHERE {o_equal})",
            ods = self.table("ods"),
            columns = self.column_list(""),
            c_columns = self.column_list("c."),
            changes = self.table("changes"),
            n_equal = self.keys_equal("n", "c"),
            o_equal = self.keys_equal("o", "c"),
        );
        format!("{delete};\n{insert};\n")
    }
}

const RESERVED: [&str; 24] = [
    "all", "and", "as", "by", "case", "check", "column", "date", "default", "desc", "from",
    "group", "level", "limit", "number", "offset", "order", "select", "size", "table", "to",
    "user", "where", "window",
];

/// The tables, the view and the merge of a topic, created once.
pub fn setup_sql(topic: &Topic, dialect: Dialect) -> Result<String, WarehouseError> {
    let t = Target::new(topic, dialect)?;
    let mut sql = t.header();
    match dialect {
        Dialect::Postgres => {
            sql.push_str("-- Change: the base name of the tables ([warehouse] table in topic.toml), the schema (search_path).\n\n");
            sql.push_str(&t.create_table(
                &t.table("main"),
                "Staging: the MAIN files of the run being loaded.",
            ));
            sql.push_str(&format!(
                "\n-- Staging: the CORRECTION files of the run being loaded.\nCREATE TABLE {} (LIKE {});\n",
                t.table("correction"),
                t.table("main")
            ));
            sql.push_str(&format!(
                "\n-- The operational data store: the latest version of every key.\nCREATE TABLE {} (LIKE {});\n",
                t.table("ods"),
                t.table("main")
            ));
            sql.push_str(&format!(
                "CREATE INDEX ON {} ({});\n",
                t.table("ods"),
                t.key_list()
            ));
            sql.push_str(&format!(
                "\n-- Runs merged so far.\nCREATE TABLE {} (sequence BIGINT PRIMARY KEY, loaded_at TIMESTAMPTZ NOT NULL DEFAULT now());\n\n",
                t.table("loaded_runs")
            ));
            sql.push_str(&t.changes_view());
            let _ = write!(
                sql,
                "\n-- Merges the loaded run into the ODS and empties the staging tables.\n\
                 -- Refuses a run that is loaded already or that comes before a loaded one.\n\
                 CREATE OR REPLACE FUNCTION {merge}(run_sequence BIGINT) RETURNS BIGINT\n\
                 LANGUAGE plpgsql AS $merge$\n\
                 DECLARE\n    inserted BIGINT;\n\
                 BEGIN\n\
                 \x20   IF EXISTS (SELECT 1 FROM {loaded} WHERE sequence >= run_sequence) THEN\n\
                 \x20       RAISE EXCEPTION 'run % of topic {topic} is not after the last loaded run', run_sequence;\n\
                 \x20   END IF;\n\
                 {merge_statements}\
                 \x20   GET DIAGNOSTICS inserted = ROW_COUNT;\n\
                 \x20   INSERT INTO {loaded} (sequence) VALUES (run_sequence);\n\
                 \x20   TRUNCATE {main}, {correction};\n\
                 \x20   RETURN inserted;\n\
                 END\n$merge$;\n",
                merge = t.table("merge"),
                loaded = t.table("loaded_runs"),
                topic = topic.name(),
                merge_statements = indent(&t.merge_statements(), "    "),
                main = t.table("main"),
                correction = t.table("correction"),
            );
        }
        Dialect::Redshift => {
            sql.push_str("-- Change: the base name of the tables, the schema. Not tested against Redshift here:\n-- review the column types (VARCHAR lengths) before use.\n\n");
            sql.push_str(&t.create_table(
                &t.table("main"),
                "Staging: the MAIN files of the run being loaded.",
            ));
            sql.push_str(&format!(
                "\n-- Staging: the CORRECTION files of the run being loaded.\nCREATE TABLE {} (LIKE {});\n",
                t.table("correction"),
                t.table("main")
            ));
            sql.push_str(&format!(
                "\n-- The operational data store: the latest version of every key.\nCREATE TABLE {} (LIKE {});\n",
                t.table("ods"),
                t.table("main")
            ));
            sql.push_str(&format!(
                "\n-- Runs merged so far.\nCREATE TABLE {} (sequence BIGINT PRIMARY KEY, loaded_at TIMESTAMPTZ DEFAULT GETDATE());\n\n",
                t.table("loaded_runs")
            ));
            sql.push_str(&t.changes_view());
        }
        Dialect::Oracle => {
            sql.push_str(
                "-- Change: the directory object (materializer_files) must point at the topic's output folder;\n\
                 -- set the topic's CSV timestamp_format to \"%Y-%m-%dT%H:%M:%S%.6fZ\" so that every timestamp has\n\
                 -- six fraction digits, as the access parameters below expect. Not tested against Oracle here.\n\n",
            );
            for (kind, comment) in [("main", "MAIN"), ("correction", "CORRECTION")] {
                sql.push_str(&oracle_external_table(&t, kind, comment));
                sql.push('\n');
            }
            sql.push_str(&t.create_table(
                &t.table("ods"),
                "The operational data store: the latest version of every key.",
            ));
            sql.push_str(&format!(
                "\n-- Runs merged so far.\nCREATE TABLE {} (sequence NUMBER(19) PRIMARY KEY, loaded_at TIMESTAMP WITH TIME ZONE DEFAULT SYSTIMESTAMP);\n\n",
                t.table("loaded_runs")
            ));
            sql.push_str(&t.changes_view());
        }
    }
    Ok(sql)
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

fn oracle_external_table(t: &Target<'_>, kind: &str, comment: &str) -> String {
    let csv = &t.topic.output().csv;
    let fields: Vec<String> = t
        .columns
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
    let mut sql = t.create_table(
        &t.table(kind),
        &format!("External table over the {comment} files of one run (see LOCATION)."),
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

/// Where the warehouse finds a run's files.
pub enum FilePlace<'a> {
    /// A local folder (the output location `file://` folder).
    Folder(&'a std::path::Path),
    /// The URL of the topic's folder in object storage (`s3://bucket/prefix/<topic>`).
    Url(&'a str),
}

/// The statements that load one committed run and merge it.
pub fn load_run_sql(
    topic: &Topic,
    dialect: Dialect,
    manifest: &Manifest,
    place: FilePlace<'_>,
) -> Result<String, WarehouseError> {
    let t = Target::new(topic, dialect)?;
    let seq = manifest.sequence;
    let mut sql = format!(
        "-- Load run {seq} of topic {} ({}).\n",
        topic.name(),
        dialect.name()
    );
    let files = |kind: FileKind| manifest.files.iter().filter(move |f| f.kind == kind);
    match dialect {
        Dialect::Postgres => {
            let FilePlace::Folder(folder) = place else {
                return Err(WarehouseError::Unsupported {
                    topic: topic.name().to_string(),
                    message:
                        "the PostgreSQL load script reads the run's files from a local folder; \
                              give the output folder (download the files of an S3 output first)"
                            .into(),
                });
            };
            if topic.output().format != crate::config::Format::Csv {
                return Err(WarehouseError::Unsupported {
                    topic: topic.name().to_string(),
                    message: "PostgreSQL loads CSV files; this topic writes Parquet".into(),
                });
            }
            sql.push_str("BEGIN;\n");
            for (kind, table) in [
                (FileKind::Main, t.table("main")),
                (FileKind::Correction, t.table("correction")),
            ] {
                for file in files(kind) {
                    let path = folder.join(&file.path);
                    sql.push_str(&postgres_copy(topic, &table, &path));
                }
            }
            let _ = writeln!(sql, "SELECT {}({seq});\nCOMMIT;", t.table("merge"));
        }
        Dialect::Redshift => {
            let FilePlace::Url(base) = place else {
                return Err(WarehouseError::Unsupported {
                    topic: topic.name().to_string(),
                    message: "Redshift loads from S3; give the topic's S3 URL".into(),
                });
            };
            let csv = &topic.output().csv;
            let format = match topic.output().format {
                crate::config::Format::Parquet => "FORMAT AS PARQUET".to_string(),
                crate::config::Format::Csv => format!(
                    "CSV DELIMITER '{}' QUOTE '{}'{}{} TIMEFORMAT 'auto' DATEFORMAT 'auto'{}",
                    csv.delimiter,
                    csv.quote,
                    if csv.header { " IGNOREHEADER 1" } else { "" },
                    if csv.null.is_empty() {
                        String::new()
                    } else {
                        format!(" NULL AS '{}'", csv.null.replace('\'', "''"))
                    },
                    match csv.compression {
                        CsvCompression::None => "",
                        CsvCompression::Gzip => " GZIP",
                        CsvCompression::Zstd => " ZSTD",
                    }
                ),
            };
            sql.push_str("-- Change: the IAM role.\nBEGIN;\n");
            let _ = writeln!(
                sql,
                "DELETE FROM {};\nDELETE FROM {};",
                t.table("main"),
                t.table("correction")
            );
            for (kind, table) in [
                (FileKind::Main, t.table("main")),
                (FileKind::Correction, t.table("correction")),
            ] {
                if files(kind).next().is_none() {
                    continue;
                }
                let _ = writeln!(
                    sql,
                    "COPY {table} FROM '{base}/_redshift/{}-{seq:010}.json'\n  IAM_ROLE '<your-role-arn>' MANIFEST {format};",
                    kind.as_str()
                );
            }
            sql.push_str(&t.merge_statements());
            let _ = writeln!(
                sql,
                "INSERT INTO {} (sequence) VALUES ({seq});\nCOMMIT;",
                t.table("loaded_runs")
            );
        }
        Dialect::Oracle => {
            for (kind, table) in [
                (FileKind::Main, t.table("main")),
                (FileKind::Correction, t.table("correction")),
            ] {
                let locations: Vec<String> = files(kind)
                    .map(|f| format!("'{}'", f.path.replace('\'', "''")))
                    .collect();
                let locations = if locations.is_empty() {
                    "'none.csv'".to_string()
                } else {
                    locations.join(", ")
                };
                let _ = writeln!(sql, "ALTER TABLE {table} LOCATION ({locations});");
            }
            sql.push_str(&t.merge_statements());
            let _ = writeln!(
                sql,
                "INSERT INTO {} (sequence) VALUES ({seq});\nCOMMIT;",
                t.table("loaded_runs")
            );
        }
    }
    Ok(sql)
}

/// psql's client-side COPY of one file with the topic's CSV dialect.
fn postgres_copy(topic: &Topic, table: &str, path: &std::path::Path) -> String {
    let csv = &topic.output().csv;
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut options = vec!["FORMAT csv".to_string(), format!("HEADER {}", csv.header)];
    options.push(format!("DELIMITER {}", literal(&csv.delimiter.to_string())));
    options.push(format!("QUOTE {}", literal(&csv.quote.to_string())));
    if let Some(escape) = csv.escape {
        options.push(format!("ESCAPE {}", literal(&escape.to_string())));
    }
    options.push(format!("NULL {}", literal(&csv.null)));
    let path = path.display().to_string();
    let from = match csv.compression {
        CsvCompression::None => literal(&path),
        CsvCompression::Gzip => format!(
            "PROGRAM {}",
            literal(&format!("gzip -dc {}", shell_quote(&path)))
        ),
        CsvCompression::Zstd => format!(
            "PROGRAM {}",
            literal(&format!("zstd -dc {}", shell_quote(&path)))
        ),
    };
    format!("\\copy {table} FROM {from} WITH ({})\n", options.join(", "))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
