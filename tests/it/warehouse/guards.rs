//! Loads are guarded: a run loads only when it is the next one (the run
//! after the last loaded, or, into an empty warehouse, the first run its
//! setup declared), and only once. A refused load names the run that is
//! next, changes no table, and fails the psql call even without
//! `-v ON_ERROR_STOP=1`.

use std::collections::BTreeMap;
use std::path::Path;

use materializer_core::commit::Ledger;
use materializer_core::warehouse::{self, FilePlace, load_run_sql, setup_sql};

use super::lines::{
    Arrival, LINES_TOPIC, Spread, expected_history, expected_ods, generate_line_runs, line_records,
    same_rows, table_rows, write_lines_topic,
};
use crate::servers::postgres;
use crate::support::Workspace;

/// Commits `runs` one after the other (nothing loaded yet) and gives the
/// PostgreSQL load script of each.
async fn committed_load_scripts(ws: &Workspace, runs: &[Vec<Arrival>]) -> Vec<String> {
    let dialect = warehouse::dialect_named("postgres").unwrap();
    let recording = ws.path("recorded").join(LINES_TOPIC);
    std::fs::create_dir_all(&recording).unwrap();
    std::fs::write(recording.join("stream.jsonl"), "").unwrap();
    let (mut offsets, mut eid) = (BTreeMap::new(), 0);
    let mut scripts = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let lines = line_records(run, &mut offsets, &mut eid);
        ws.append(
            &format!("recorded/{LINES_TOPIC}/stream.jsonl"),
            &(lines.join("\n") + "\n"),
        );
        ws.run(LINES_TOPIC).await.unwrap();
        let manifest = Ledger::new(ws.local_output(), LINES_TOPIC)
            .manifest(i as u64 + 1)
            .await
            .unwrap()
            .unwrap();
        let folder = ws.out().join(LINES_TOPIC);
        scripts.push(
            load_run_sql(
                &manifest,
                None,
                dialect,
                FilePlace::Folder(Path::new(&folder)),
            )
            .unwrap(),
        );
    }
    scripts
}

/// A fresh database with the topic's tables, loading from `first_run`.
async fn warehouse_from(ws: &Workspace, label: &str, first_run: u64) -> String {
    let pg = postgres();
    let database = pg.database(label);
    let topic = ws.catalog().await.topic(LINES_TOPIC).unwrap();
    let dialect = warehouse::dialect_named("postgres").unwrap();
    pg.psql(&database, &setup_sql(&topic, dialect, first_run).unwrap())
        .unwrap();
    database
}

/// Every row of every table of the topic, hashed: equal snapshots mean
/// nothing changed.
fn snapshot(database: &str) -> Vec<String> {
    let pg = postgres();
    let tables = pg
        .psql(
            database,
            "SELECT table_name FROM information_schema.tables \
             WHERE table_name LIKE 'order_lines%' ORDER BY table_name;",
        )
        .unwrap();
    tables
        .lines()
        .map(|table| {
            let rows = pg
                .psql(
                    database,
                    &format!(
                        "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') \
                         FROM {table} x;"
                    ),
                )
                .unwrap();
            format!("{table}={}", rows.trim())
        })
        .collect()
}

fn loaded_runs(database: &str) -> String {
    postgres()
        .psql(
            database,
            "SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM order_lines_loaded_runs;",
        )
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn only_the_next_run_loads_and_a_refused_load_changes_nothing() {
    let ws = Workspace::new();
    write_lines_topic(&ws, false, true);
    let runs = generate_line_runs(150, 4, 23, Spread::ByOrder);
    let scripts = committed_load_scripts(&ws, &runs).await;
    let database = warehouse_from(&ws, "guards", 1).await;
    let pg = postgres();
    let refused = |script: &str, run: u64, next: u64| {
        let before = snapshot(&database);
        let error = pg.psql(&database, script).unwrap_err();
        assert!(
            error.contains(&format!(
                "run {run} of topic order-lines cannot be loaded now: run {next} is the next to load"
            )),
            "{error}"
        );
        assert_eq!(
            snapshot(&database),
            before,
            "the refused load of run {run} changed a table"
        );
        // psql's default goes on after an error; the script stops it anyway.
        let error = pg.psql_as(&database, script, false).unwrap_err();
        assert!(error.contains("cannot be loaded now"), "{error}");
        assert_eq!(snapshot(&database), before);
    };

    // An empty warehouse takes run 1 first, not run 2.
    refused(&scripts[1], 2, 1);
    assert_eq!(loaded_runs(&database), "");
    pg.psql(&database, &scripts[0]).unwrap();
    // Run 1 again, and run 3 after run 1 (run 2 would be lost).
    refused(&scripts[0], 1, 2);
    refused(&scripts[2], 3, 2);
    // The merge alone refuses too.
    let error = pg
        .psql(&database, "SELECT order_lines_merge(3);")
        .unwrap_err();
    assert!(
        error.contains("run 3 of topic order-lines cannot be loaded now"),
        "{error}"
    );
    for script in &scripts[1..] {
        pg.psql(&database, script).unwrap();
    }
    assert_eq!(loaded_runs(&database), "1,2,3,4");
    same_rows(
        &table_rows(&database, "order_lines_ods", false),
        &expected_ods(&runs),
        "ODS after the refusals",
    );
    same_rows(
        &table_rows(&database, "order_lines_history", true),
        &expected_history(&runs),
        "history after the refusals",
    );
}

#[tokio::test]
async fn a_warehouse_started_mid_stream_loads_from_its_first_run_on() {
    let ws = Workspace::new();
    write_lines_topic(&ws, false, true);
    let runs = generate_line_runs(80, 4, 31, Spread::ByOrder);
    let scripts = committed_load_scripts(&ws, &runs).await;
    let database = warehouse_from(&ws, "guards_start", 3).await;
    let pg = postgres();
    let error = pg.psql(&database, &scripts[0]).unwrap_err();
    assert!(
        error
            .contains("run 1 of topic order-lines cannot be loaded now: run 3 is the next to load"),
        "{error}"
    );
    pg.psql(&database, &scripts[2]).unwrap();
    let error = pg.psql(&database, &scripts[1]).unwrap_err();
    assert!(
        error.contains("run 2 of topic order-lines cannot be loaded now: run 4"),
        "{error}"
    );
    pg.psql(&database, &scripts[3]).unwrap();
    assert_eq!(loaded_runs(&database), "3,4");
}

/// A topic that keeps every event appends each run's rows to
/// `<base>_events`, once, in run order.
#[tokio::test]
async fn a_topic_that_keeps_every_event_appends_each_run_once() {
    let ws = Workspace::new();
    let dir = ws.sql().join("all-stock");
    crate::support::copy_dir(&ws.sql().join("article-stock-changed"), &dir);
    let toml = std::fs::read_to_string(dir.join("topic.toml")).unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        toml.replace("[output]", "compact = false\n\n[output]"),
    )
    .unwrap();
    let lines = crate::support::article_stream(400, 3, 9);
    let (first, second) = lines.split_at(lines.len() / 2);
    // Every event's (article, version), as the source holds them.
    let mut expected: Vec<String> = lines
        .iter()
        .flat_map(|line| {
            let batch: serde_json::Value = serde_json::from_str(line).unwrap();
            batch["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("{}:{}", e["article_id"], e["version"]))
                .collect::<Vec<_>>()
        })
        .collect();
    expected.sort();
    let (database, counts) = super::load_recorded_runs(
        &ws,
        "all-stock",
        &[first.to_vec(), second.to_vec()],
        "keeps_every_event",
    )
    .await;
    assert_eq!(counts.iter().map(|c| c.events_read).sum::<u64>(), 400);
    let pg = postgres();
    let rows = pg
        .psql(
            &database,
            "SELECT article_id || ':' || version FROM all_stock_events ORDER BY 1;",
        )
        .unwrap();
    let mut got: Vec<String> = rows.lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, expected);
    let error = pg
        .psql(&database, "SELECT all_stock_merge(2);")
        .unwrap_err();
    assert!(
        error.contains("run 2 of topic all-stock cannot be loaded now: run 3 is the next to load"),
        "{error}"
    );
}

/// Two loads never overlap: a load of run 1 started while another load of
/// run 1 is in flight (its transaction open) waits for it, then finds run 1
/// loaded and is refused, changing nothing.
#[tokio::test]
async fn a_load_waits_for_the_one_in_flight_and_never_loads_twice() {
    use std::io::{BufRead, BufReader, Write};
    let ws = Workspace::new();
    write_lines_topic(&ws, false, true);
    let runs = generate_line_runs(60, 1, 29, Spread::ByOrder);
    let scripts = committed_load_scripts(&ws, &runs).await;
    let database = warehouse_from(&ws, "load_lock", 1).await;
    let pg = postgres();

    // The first load, all of it but its COMMIT.
    let (uncommitted, _) = scripts[0].rsplit_once("COMMIT;").unwrap();
    let mut first = pg.session(&database);
    let mut stdin = first.stdin.take().unwrap();
    writeln!(stdin, "{uncommitted}\nSELECT 'in flight';").unwrap();
    let mut answers = BufReader::new(first.stdout.take().unwrap()).lines();
    while answers.next().unwrap().unwrap() != "in flight" {}

    // The second one waits for the first one's lock.
    let second = std::thread::spawn({
        let (database, script) = (database.clone(), scripts[0].clone());
        move || postgres().psql(&database, &script)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock';"
    );
    while pg.psql(&database, &waiting).unwrap().trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the second load never waited"
        );
        assert!(
            !second.is_finished(),
            "the second load did not wait: {:?}",
            second.join()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    writeln!(stdin, "COMMIT;").unwrap();
    drop(stdin);
    assert!(first.wait().unwrap().success());
    let after_first = snapshot(&database);
    let refused = second.join().unwrap().unwrap_err();
    assert!(
        refused
            .contains("run 1 of topic order-lines cannot be loaded now: run 2 is the next to load"),
        "{refused}"
    );
    assert_eq!(
        snapshot(&database),
        after_first,
        "the second load changed a table"
    );
    assert_eq!(loaded_runs(&database), "1");
}
