//! `warehouse-sql --run N` and `--pending --loaded-through N`: the loads of
//! committed runs need only the runs (each keeps the shape of its files),
//! come in run order, and load.

use crate::servers::postgres;
use crate::support::{Workspace, article_stream};

const TOPIC: &str = "article-stock-changed";

fn warehouse_sql(ws: &Workspace, args: &[&str]) -> std::process::Output {
    ws.command()
        .args([
            "warehouse-sql",
            TOPIC,
            "--dialect",
            "postgres",
            "--output",
            "out",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Commits one run per part of the article stream, one after the other;
/// answers each run's recorded lines.
async fn commit_runs(ws: &Workspace, parts: usize) -> Vec<Vec<String>> {
    let lines = article_stream(300, 2, 17);
    let chunk = lines.len().div_ceil(parts);
    ws.record(TOPIC, &[]);
    for part in lines.chunks(chunk) {
        ws.append(
            &format!("recorded/{TOPIC}/stream.jsonl"),
            &(part.join("\n") + "\n"),
        );
        ws.run(TOPIC).await.unwrap();
    }
    lines.chunks(chunk).map(<[String]>::to_vec).collect()
}

/// The setup, from the topic as it is now.
fn setup(ws: &Workspace, database: &str) {
    let out = ws
        .command()
        .args(["warehouse-sql", TOPIC, "--dialect", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    postgres().psql(database, &text(&out.stdout)).unwrap();
}

fn loaded(database: &str) -> String {
    postgres()
        .psql(
            database,
            "SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM article_stock_changed_loaded_runs;",
        )
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn a_run_loads_from_what_it_kept_without_its_topics_schema() {
    let ws = Workspace::new();
    commit_runs(&ws, 1).await;
    let database = postgres().database("run_sql_kept");
    setup(&ws, &database);
    let with_schema = warehouse_sql(&ws, &["--run", "1"]);
    assert!(
        with_schema.status.success(),
        "{}",
        text(&with_schema.stderr)
    );
    // The topic's schema goes (an event type whose schema Nakadi serves):
    // the run's SQL is the same, written from the run alone.
    std::fs::remove_file(ws.sql().join(TOPIC).join("schema.json")).unwrap();
    let without_schema = warehouse_sql(&ws, &["--run", "1"]);
    assert!(
        without_schema.status.success(),
        "{}",
        text(&without_schema.stderr)
    );
    assert_eq!(text(&without_schema.stdout), text(&with_schema.stdout));
    postgres()
        .psql(&database, &text(&without_schema.stdout))
        .unwrap();
    assert_eq!(loaded(&database), "1");
    let ods = postgres()
        .psql(&database, "SELECT count(*) FROM article_stock_changed_ods;")
        .unwrap();
    assert!(ods.trim().parse::<u64>().unwrap() > 50, "{ods}");
}

#[tokio::test]
async fn a_run_of_an_earlier_release_is_loaded_as_its_topic_is_now() {
    let ws = Workspace::new();
    commit_runs(&ws, 1).await;
    let kept = warehouse_sql(&ws, &["--run", "1"]);
    assert!(kept.status.success(), "{}", text(&kept.stderr));
    // A manifest as earlier releases wrote it: no shape of its files.
    let path = ws.out().join(TOPIC).join("_manifests/0000000001.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(manifest.as_object_mut().unwrap().remove("shape").is_some());
    std::fs::write(&path, manifest.to_string()).unwrap();
    let from_topic = warehouse_sql(&ws, &["--run", "1"]);
    assert!(from_topic.status.success(), "{}", text(&from_topic.stderr));
    assert_eq!(text(&from_topic.stdout), text(&kept.stdout));
    // Without the topic's schema there is nothing to describe the files.
    std::fs::remove_file(ws.sql().join(TOPIC).join("schema.json")).unwrap();
    let refused = warehouse_sql(&ws, &["--run", "1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains(
            "run 1 was committed by an earlier release, which kept no description of its files"
        ),
        "{}",
        text(&refused.stderr)
    );
}

#[tokio::test]
async fn pending_loads_come_in_run_order_and_catch_the_warehouse_up() {
    let ws = Workspace::new();
    commit_runs(&ws, 3).await;
    let database = postgres().database("run_sql_pending");
    setup(&ws, &database);
    let first = warehouse_sql(&ws, &["--pending", "--loaded-through", "0"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let all = text(&first.stdout);
    let headers: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("-- Load run"))
        .collect();
    assert_eq!(
        headers,
        [
            "-- Load run 1 of topic article-stock-changed (postgres).",
            "-- Load run 2 of topic article-stock-changed (postgres).",
            "-- Load run 3 of topic article-stock-changed (postgres).",
        ]
    );
    let run1 = warehouse_sql(&ws, &["--run", "1"]);
    postgres().psql(&database, &text(&run1.stdout)).unwrap();
    let pending = warehouse_sql(&ws, &["--pending", "--loaded-through", "1"]);
    assert!(pending.status.success(), "{}", text(&pending.stderr));
    let pending = text(&pending.stdout);
    assert!(!pending.contains("-- Load run 1 "), "{pending}");
    postgres().psql(&database, &pending).unwrap();
    assert_eq!(loaded(&database), "1,2,3");
    // Nothing is pending after the last run.
    let none = warehouse_sql(&ws, &["--pending", "--loaded-through", "3"]);
    assert!(none.status.success(), "{}", text(&none.stderr));
    assert_eq!(text(&none.stdout), "");
}

/// `<base>_merge(n)` answers the number of ODS rows run n inserted: here
/// (one row per version, no deletes) one per article whose newest version
/// in the run is at least the one loaded before (a newer version, or the
/// loaded one redelivered, replaces its row); an article whose versions in
/// the run are all older inserts none. Counted from the recorded events.
#[tokio::test]
async fn the_merge_answers_the_ods_rows_each_run_inserted() {
    let ws = Workspace::new();
    let runs = commit_runs(&ws, 4).await;
    let mut loaded: std::collections::HashMap<i64, i64> = Default::default();
    let mut expected = Vec::new();
    let (mut late_only, mut redelivered) = (false, false);
    for lines in &runs {
        let mut newest: std::collections::HashMap<i64, i64> = Default::default();
        for line in lines {
            let batch: serde_json::Value = serde_json::from_str(line).unwrap();
            for event in batch["events"].as_array().into_iter().flatten() {
                let article = event["article_id"].as_i64().unwrap();
                let version = event["version"].as_i64().unwrap();
                let top = newest.entry(article).or_insert(version);
                *top = (*top).max(version);
            }
        }
        let mut inserted = 0;
        for (article, version) in newest {
            match loaded.get(&article) {
                Some(&before) if version < before => late_only = true,
                before => {
                    redelivered |= before == Some(&version);
                    inserted += 1;
                    loaded.insert(article, version);
                }
            }
        }
        expected.push(inserted);
    }
    assert!(late_only, "no run with only older versions of an article");
    assert!(redelivered, "no run redelivering the loaded version");

    let database = postgres().database("run_sql_merge_count");
    setup(&ws, &database);
    for (i, inserted) in expected.iter().enumerate() {
        let run = (i + 1).to_string();
        let load = warehouse_sql(&ws, &["--run", &run]);
        assert!(load.status.success(), "{}", text(&load.stderr));
        // The load script's SELECTs: the guard (no value), then the merge.
        let answered = postgres().psql(&database, &text(&load.stdout)).unwrap();
        assert_eq!(answered.trim(), inserted.to_string(), "run {run}");
    }
    let ods = postgres()
        .psql(&database, "SELECT count(*) FROM article_stock_changed_ods;")
        .unwrap();
    assert_eq!(ods.trim(), loaded.len().to_string());
}
