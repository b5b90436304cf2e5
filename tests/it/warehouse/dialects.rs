//! The SQL of every dialect, setup and loads, for every example topic,
//! parsed statement by statement as SQL of its dialect by sqlglot (no
//! Redshift or Oracle server is reachable here). What the parser cannot
//! check is listed by kind, and only those kinds may appear; what it would
//! accept but the warehouse refuses is checked by hand.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use materializer_core::commit::Ledger;
use materializer_core::warehouse::{self, FilePlace, load_run_sql, setup_sql};

use crate::support::{EXAMPLE_TOPICS, Workspace, repo};

/// What sqlglot made of a script.
#[derive(serde::Deserialize, Debug)]
struct Checked {
    checked: Vec<String>,
    unchecked: Vec<Unchecked>,
    failed: Vec<serde_json::Value>,
}

#[derive(serde::Deserialize, Debug)]
struct Unchecked {
    kind: String,
    statement: String,
    text: String,
}

fn parse(dialect: &str, sql: &str) -> Checked {
    let mut child = Command::new("python3")
        .arg(repo().join("tests/it/warehouse/sql_check.py"))
        .arg(dialect)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sql_check.py (sqlglot, installed by scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether a unit sqlglot does not check is of a kind the warehouse README
/// names for `dialect`.
fn expected_unchecked(dialect: &str, unit: &Unchecked) -> bool {
    let text = unit.text.to_uppercase();
    match (dialect, unit.kind.as_str()) {
        ("postgres" | "redshift", "procedural body (PL/pgSQL)") => {
            text.contains("CREATE OR REPLACE FUNCTION")
                || text.contains("CREATE OR REPLACE PROCEDURE")
        }
        ("postgres", "psql meta-command") => {
            text.starts_with("\\COPY ") || text == "\\SET ON_ERROR_STOP ON"
        }
        ("oracle", "PL/SQL unit") => {
            text.starts_with("CREATE OR REPLACE PROCEDURE") || text.starts_with("BEGIN")
        }
        ("oracle", "SQL*Plus command") => text.starts_with("WHENEVER SQLERROR"),
        ("oracle", "CREATE (sqlglot: an opaque command)") => text.contains("ORGANIZATION EXTERNAL"),
        ("oracle", "ALTER (sqlglot: an opaque command)") => text.contains(" LOCATION ("),
        ("redshift", "CALL (sqlglot: an opaque command)") => text.starts_with("CALL "),
        ("redshift", "LOCK (sqlglot: an opaque command)") => text.starts_with("LOCK "),
        _ => false,
    }
}

/// What sqlglot accepts but the warehouse refuses.
fn refused_by_the_warehouse(dialect: &str, sql: &str) -> Vec<String> {
    let mut refused = Vec::new();
    for line in sql.lines().filter(|l| !l.trim_start().starts_with("--")) {
        let upper = line.to_uppercase();
        let why = match dialect {
            // Redshift has no indexes; TRUNCATE would commit the load half way.
            "redshift" if upper.contains("CREATE INDEX") => Some("Redshift has no indexes"),
            "redshift" if upper.contains("TRUNCATE") => Some("TRUNCATE commits in Redshift"),
            // ORA-02329: no key over TIMESTAMP WITH TIME ZONE; only the
            // load's own timestamp (never a key) keeps its zone.
            "oracle" if upper.contains("WITH TIME ZONE") && !upper.contains("LOADED_AT") => {
                Some("a time zone type may not be part of an Oracle key")
            }
            _ => None,
        };
        if let Some(why) = why {
            refused.push(format!("{why}: {line}"));
        }
    }
    refused
}

#[tokio::test]
async fn every_dialects_setup_and_loads_parse_as_its_sql() {
    let ws = Workspace::new();
    let catalog = ws.catalog().await;
    for topic in EXAMPLE_TOPICS {
        ws.run(topic).await.unwrap();
    }
    for dialect in warehouse::dialects() {
        let name = dialect.name();
        for topic_name in EXAMPLE_TOPICS {
            let topic = catalog.topic(topic_name).unwrap();
            let manifest = Ledger::new(ws.local_output(), topic_name)
                .manifest(1)
                .await
                .unwrap()
                .unwrap();
            let folder = ws.out().join(topic_name);
            let url = format!("s3://bucket/prefix/{topic_name}");
            let place = if name == "redshift" {
                FilePlace::Url(&url)
            } else {
                FilePlace::Folder(Path::new(&folder))
            };
            let scripts = [
                ("setup", setup_sql(&topic, *dialect, 1).unwrap()),
                (
                    "load",
                    load_run_sql(&manifest, None, *dialect, place).unwrap(),
                ),
            ];
            for (what, sql) in scripts {
                let context = format!("{name}, {topic_name}, {what}");
                let checked = parse(name, &sql);
                assert!(checked.failed.is_empty(), "{context}: {:?}", checked.failed);
                assert!(checked.checked.len() >= 3, "{context}: {checked:?}");
                let unexpected: Vec<&Unchecked> = checked
                    .unchecked
                    .iter()
                    .filter(|u| !expected_unchecked(name, u))
                    .collect();
                assert!(
                    unexpected.is_empty(),
                    "{context}: not checked, of no kind the docs name: {:?}",
                    unexpected
                        .iter()
                        .map(|u| (&u.kind, &u.statement))
                        .collect::<Vec<_>>()
                );
                let refused = refused_by_the_warehouse(name, &sql);
                assert!(refused.is_empty(), "{context}: {refused:?}");
            }
        }
    }
}
