//! Amazon Redshift: the shared SQL with Redshift's text type, DELETE and
//! UPDATE forms; runs are loaded from S3 with COPY and the run's manifests.

use std::fmt::Write as _;

use super::Dialect;
use object_store::path::Path;

use super::Tables;
use super::{FilePlace, REFUSAL, unsupported};
use crate::commit::{Ledger, Manifest, Publication};
use crate::config::{CsvCompression, Format};
use crate::sink::FileKind;
use crate::warehouse::error::WarehouseError;

/// Amazon Redshift: loads with `COPY` from S3, each kind of file named by
/// the run's COPY manifest.
pub struct Redshift;

/// The Redshift COPY manifests of a committed run, one per kind of file
/// (`_redshift/<kind>-<seq>.json`): the exact files `COPY ... MANIFEST` loads.
pub struct CopyManifests;

impl Publication for CopyManifests {
    fn files(&self, manifest: &Manifest, ledger: &Ledger) -> Vec<(Path, Vec<u8>)> {
        [
            FileKind::Main,
            FileKind::Correction,
            FileKind::Older,
            FileKind::Keys,
        ]
        .into_iter()
        .map(|kind| {
            let entries: Vec<serde_json::Value> = manifest
                .files
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| {
                    serde_json::json!({
                        "url": ledger.url_of(&f.path),
                        "mandatory": true,
                        "meta": {"content_length": f.bytes}
                    })
                })
                .collect();
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "entries": entries }))
                .unwrap_or_default();
            (
                ledger.layout().redshift_manifest(kind, manifest.sequence),
                body,
            )
        })
        .collect()
    }
}

impl Dialect for Redshift {
    fn name(&self) -> &'static str {
        "redshift"
    }

    fn setup_note(&self) -> &'static str {
        "-- Change: the base name of the tables, the schema. Not run against Redshift here (each\n\
         -- statement is parsed as Redshift SQL in the tests): review the VARCHAR lengths before use.\n\
         -- Redshift enforces no primary key: <base>_expect guards the loads.\n\n"
    }

    fn publication(&self) -> Option<&'static dyn Publication> {
        Some(&CopyManifests)
    }

    fn create_guard_routine(&self, t: &dyn Tables) -> String {
        format!(
            "\n-- Refuses a run that is not the next to load: the run after the last loaded one, or,\n\
             -- into an empty warehouse, {start}.first_run. The load script locks {loaded} first.\n\
             CREATE OR REPLACE PROCEDURE {expect}(run_sequence BIGINT)\n\
             AS $$\n\
             DECLARE\n    next_run BIGINT;\n\
             BEGIN\n\
             \x20   SELECT INTO next_run COALESCE((SELECT MAX(sequence) FROM {loaded}) + 1, (SELECT MAX(first_run) FROM {start}), 1);\n\
             \x20   IF run_sequence <> next_run THEN\n\
             \x20       RAISE EXCEPTION 'run % of topic {topic} cannot be loaded now: run % {REFUSAL}', run_sequence, next_run;\n\
             \x20   END IF;\n\
             END;\n$$ LANGUAGE plpgsql;\n",
            expect = t.table("expect"),
            loaded = t.table("loaded_runs"),
            start = t.table("load_start"),
            topic = t.topic_name(),
        )
    }

    // A lock Redshift holds until the transaction ends: loads never overlap.
    fn guard_run(&self, t: &dyn Tables, sequence: u64) -> String {
        format!(
            "LOCK {};\nCALL {}({sequence});\n",
            t.table("loaded_runs"),
            t.table("expect")
        )
    }

    // Redshift has no indexes: a table's rows are distributed and sorted.
    fn index_by_key(&self, _t: &dyn Tables, _table: &str, _index: &str) -> String {
        String::new()
    }

    // Rows of one key on one slice, sorted by key: joins and deletes by key
    // stay local and skip blocks.
    fn keyed_table_options(&self, t: &dyn Tables) -> String {
        let first = t.keys().first().map(|k| t.ident(k)).unwrap_or_default();
        format!("DISTKEY ({first}) SORTKEY ({})", t.key_list(""))
    }

    // Redshift's TEXT is a VARCHAR(256).
    fn text_type(&self) -> &'static str {
        "VARCHAR(65535)"
    }

    fn loaded_at_definition(&self) -> &'static str {
        "TIMESTAMPTZ DEFAULT GETDATE()"
    }

    // Redshift's DELETE takes no alias for its target.
    fn delete_matching(
        &self,
        table: &str,
        _alias: &str,
        other: &str,
        other_alias: &str,
        condition: &dyn Fn(&str) -> String,
    ) -> String {
        format!(
            "DELETE FROM {table}\nUSING {other} {other_alias}\nWHERE {}",
            condition(table)
        )
    }

    // Redshift takes no correlated subquery in SET: clear, then join.
    fn close_ranges(&self, t: &dyn Tables) -> Vec<String> {
        let o = t.ordering_ident();
        let (keys, history, versions) = (
            t.table("keys"),
            t.table("history"),
            t.table("history_versions"),
        );
        vec![
            format!(
                "UPDATE {history} SET valid_to = NULL\nFROM (SELECT DISTINCT {key_list} FROM {keys}) k\nWHERE {k_equal}",
                key_list = t.key_list(""),
                k_equal = t.keys_equal("k", history.as_str()),
            ),
            format!(
                "UPDATE {history} SET valid_to = n.next_from\n\
                 FROM (\n\
                 \x20   SELECT {h_keys}, h.valid_from, MIN(v.{o}) AS next_from\n\
                 \x20   FROM {history} h\n\
                 \x20   JOIN {versions} v ON {v_equal} AND v.{o} > h.valid_from\n\
                 \x20   WHERE EXISTS (SELECT 1 FROM {keys} k WHERE {k_equal})\n\
                 \x20   GROUP BY {h_keys}, h.valid_from\n\
                 ) n\n\
                 WHERE {n_equal} AND {history}.valid_from = n.valid_from",
                h_keys = t.key_list("h."),
                v_equal = t.keys_equal("v", "h"),
                k_equal = t.keys_equal("k", "h"),
                n_equal = t.keys_equal("n", history.as_str()),
            ),
        ]
    }

    fn load_run(
        &self,
        t: &dyn Tables,
        manifest: &Manifest,
        place: FilePlace<'_>,
        staged: &[(FileKind, String)],
    ) -> Result<String, WarehouseError> {
        let FilePlace::Url(base) = place else {
            return Err(unsupported(
                t.topic_name(),
                "Redshift loads from S3; give the topic's S3 URL",
            ));
        };
        let csv = &t.output().csv;
        let format = match t.output().format {
            Format::Parquet => "FORMAT AS PARQUET".to_string(),
            Format::Csv => format!(
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
        let seq = manifest.sequence;
        let mut sql = String::from("-- Change: the IAM role.\nBEGIN;\n");
        sql.push_str(&self.guard_run(t, seq));
        let compact = t.compact();
        if compact {
            for (_, table) in staged {
                let _ = writeln!(sql, "DELETE FROM {table};");
            }
        }
        for (kind, table) in staged {
            if !manifest.files.iter().any(|f| f.kind == *kind) {
                continue;
            }
            let _ = writeln!(
                sql,
                "COPY {table} FROM '{base}/_redshift/{}-{seq:010}.json'\n  IAM_ROLE '<your-role-arn>' MANIFEST {format};",
                kind.as_str()
            );
        }
        if compact {
            sql.push_str(&t.merge_script());
        }
        sql.push_str(&t.record_run(seq));
        Ok(sql)
    }
}
