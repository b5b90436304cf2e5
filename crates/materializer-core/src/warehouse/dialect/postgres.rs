//! PostgreSQL: the shared SQL, a merge function the load scripts call, and
//! psql's client-side `\copy` of the files from a local folder.

use std::fmt::Write as _;

use super::Dialect;
use super::Tables;
use super::{FilePlace, unsupported};
use crate::commit::Manifest;
use crate::config::{CsvCompression, Format, OutputSettings};
use crate::sink::FileKind;
use crate::warehouse::error::WarehouseError;

pub struct Postgres;

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn setup_note(&self) -> &'static str {
        "-- Change: the base name of the tables ([warehouse] table in topic.toml), the schema (search_path).\n\n"
    }

    fn create_merge_routine(&self, t: &dyn Tables) -> String {
        if !t.compact() {
            return format!(
                "\n-- Records the loaded run (its MAIN files were copied into {events}).\n\
                 -- Refuses a run that is not the next to load; answers the rows the run added.\n\
                 CREATE OR REPLACE FUNCTION {merge}(run_sequence BIGINT) RETURNS BIGINT\n\
                 LANGUAGE plpgsql AS $merge$\n\
                 BEGIN\n\
                 \x20   PERFORM {expect}(run_sequence);\n\
                 \x20   INSERT INTO {loaded} (sequence) VALUES (run_sequence);\n\
                 \x20   RETURN 0;\n\
                 END\n$merge$;\n",
                events = t.table("events"),
                merge = t.table("merge"),
                expect = t.table("expect"),
                loaded = t.table("loaded_runs"),
            );
        }
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
             -- Refuses a run that is not the next to load; answers the ODS rows the run inserted.\n\
             CREATE OR REPLACE FUNCTION {merge}(run_sequence BIGINT) RETURNS BIGINT\n\
             LANGUAGE plpgsql AS $merge$\n\
             DECLARE\n    inserted BIGINT;\n\
             BEGIN\n\
             \x20   PERFORM {expect}(run_sequence);\n\
             {statements}\
             \x20   INSERT INTO {loaded} (sequence) VALUES (run_sequence);\n\
             \x20   TRUNCATE {staging};\n\
             \x20   RETURN inserted;\n\
             END\n$merge$;\n",
            history = if t.history() { " and the history" } else { "" },
            merge = t.table("merge"),
            expect = t.table("expect"),
            loaded = t.table("loaded_runs"),
            statements = indent(&statements, "    "),
            staging = t.staging_tables().join(", "),
        )
    }

    fn load_run(
        &self,
        t: &dyn Tables,
        manifest: &Manifest,
        place: FilePlace<'_>,
        staged: &[(FileKind, String)],
    ) -> Result<String, WarehouseError> {
        let FilePlace::Folder(folder) = place else {
            return Err(unsupported(
                t.topic_name(),
                "the PostgreSQL load script reads the run's files from a local folder; give the output \
                 folder (download the files of an S3 output first)",
            ));
        };
        if t.output().format != Format::Csv {
            return Err(unsupported(
                t.topic_name(),
                "PostgreSQL loads CSV files; this topic writes Parquet",
            ));
        }
        // Without ON_ERROR_STOP psql would go on after a refusal and exit 0.
        let mut sql = String::from("\\set ON_ERROR_STOP on\nBEGIN;\n");
        sql.push_str(&self.guard_run(t, manifest.sequence));
        for (kind, table) in staged {
            for file in manifest.files.iter().filter(|f| f.kind == *kind) {
                sql.push_str(&copy(t.output(), table, &folder.join(&file.path)));
            }
        }
        let seq = manifest.sequence;
        let _ = writeln!(sql, "SELECT {}({seq});\nCOMMIT;", t.table("merge"));
        Ok(sql)
    }
}

/// psql's client-side COPY of one file with the topic's CSV dialect.
fn copy(output: &OutputSettings, table: &str, path: &std::path::Path) -> String {
    let csv = &output.csv;
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

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}
