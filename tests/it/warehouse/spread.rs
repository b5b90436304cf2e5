//! A key's versions on several partitions, as Nakadi's default partition
//! strategy (`random`) publishes them: one MAIN version per key per run,
//! and the ODS and the history equal to what the raw events call for,
//! whichever way the events came (a recording, the low-level API, a
//! subscription). The truth is computed here from the generated events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use materializer_core::commit::Ledger;
use materializer_core::sink::{FileKind, OutputLocation};
use materializer_core::source::TokenSource;
use materializer_core::warehouse::{self, FilePlace, load_run_sql, setup_sql};
use nakadi_testkit::Bus;

use super::lines::{
    Arrival, LINES_TOPIC, Spread, expected_history, expected_ods, generate_line_runs, line_records,
    same_rows, table_rows, write_lines_topic,
};
use super::load_recorded_runs;
use crate::nakadi::{settings, source_of};
use crate::servers::postgres;
use crate::support::{Workspace, parse_csv};

const ARTICLES: &str = "article-stock-changed";

/// The example of the issue: article 7 with version 1 on partition 0 and
/// version 2 on partition 1, article 8 with versions 1 and 3 likewise,
/// article 9 once.
#[tokio::test]
async fn an_article_on_two_partitions_has_one_main_version_and_loads() {
    let ws = Workspace::new();
    let event = |n: u64, article: u64, version: u64, qty: u64| {
        format!(
            r#"{{"metadata":{{"eid":"00000000-0000-4000-8000-{n:012x}","occurred_at":"2024-06-03T10:00:0{n}.000Z","event_type":"article.stock-changed"}},"article_id":{article},"brand":"Nike","model":"Air","version":{version},"available_qty":{qty}}}"#
        )
    };
    let batch = |partition: u32, offset: u64, events: &[String]| {
        format!(
            r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{offset:018}"}},"events":[{}]}}"#,
            events.join(",")
        )
    };
    let lines = vec![
        batch(0, 1, &[event(1, 7, 1, 5), event(2, 8, 1, 3)]),
        batch(1, 1, &[event(3, 7, 2, 4), event(4, 8, 3, 2)]),
        batch(2, 0, &[event(5, 9, 1, 9)]),
    ];
    let (database, counts) =
        load_recorded_runs(&ws, ARTICLES, &[lines], "articles_on_two_partitions").await;
    assert_eq!(counts[0].events_read, 5);
    assert_eq!(counts[0].main_input, 3, "{:?}", counts[0]);
    assert_eq!(counts[0].superseded, 2, "{:?}", counts[0]);
    assert_eq!(counts[0].correction_events, 0, "{:?}", counts[0]);

    let output = ws.local_output();
    let main: BTreeSet<(String, String)> = kind_rows(&output, ARTICLES, 1, FileKind::Main)
        .await
        .into_iter()
        .map(|(_, row)| (row[0].clone().unwrap(), row[3].clone().unwrap()))
        .collect();
    let expected: BTreeSet<(String, String)> = [("7", "2"), ("8", "3"), ("9", "1")]
        .into_iter()
        .map(|(a, v)| (a.to_string(), v.to_string()))
        .collect();
    assert_eq!(main, expected, "MAIN: article, version");
    let keys = kind_rows(&output, ARTICLES, 1, FileKind::Keys).await;
    let main_keys: Vec<(String, String)> = keys
        .iter()
        .filter(|(_, row)| row[3].as_deref() == Some("main"))
        .map(|(_, row)| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect();
    assert_eq!(
        main_keys.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "one main KEYS row per article"
    );

    let pg = postgres();
    let ods = pg
        .psql(
            &database,
            "SELECT string_agg(article_id || ':' || version, ',' ORDER BY article_id) \
             FROM article_stock_changed_ods;",
        )
        .unwrap();
    assert_eq!(ods.trim(), "7:2,8:3,9:1");
    let history = pg
        .psql(
            &database,
            "SELECT string_agg(article_id || ':' || version || '@' || valid_from || '-' || \
             coalesce(valid_to::text, 'now'), ',' ORDER BY article_id, valid_from) \
             FROM article_stock_changed_history;",
        )
        .unwrap();
    assert_eq!(
        history.trim(),
        "7:1@1-2,7:2@2-now,8:1@1-3,8:3@3-now,9:1@1-now"
    );
}

/// Random partitions in a recording: thousands of arrivals, each on any of
/// four partitions, redelivered versions with other rows than their first
/// copy (the last copy counts: the last to arrive, of the partition that
/// sorts last), late versions and deletes, over five runs.
#[tokio::test]
async fn random_partitions_in_a_recording_load_the_source_exactly() {
    // Output partitions (`partition_by`) split a run's files further.
    for (seed, partition_by) in [(7, false), (19, true)] {
        let ws = Workspace::new();
        write_lines_topic(&ws, partition_by, true);
        let spread = Spread::Random {
            partitions: 4,
            distinct_copies: true,
        };
        let runs = generate_line_runs(800, 5, seed, spread);
        let events: usize = runs.iter().map(Vec::len).sum();
        assert!(events > 2000, "seed {seed}: {events} events");
        assert_spread(&runs, seed);
        let (mut offsets, mut eid) = (BTreeMap::new(), 0);
        let recorded: Vec<Vec<String>> = runs
            .iter()
            .map(|run| line_records(run, &mut offsets, &mut eid))
            .collect();
        let label = format!("spread_recording_{seed}");
        let (database, _) = load_recorded_runs(&ws, LINES_TOPIC, &recorded, &label).await;
        check_runs(&ws.local_output(), runs.len(), &format!("seed {seed}")).await;
        check_warehouse(&database, &runs, &format!("recording, seed {seed}"));
    }
}

/// The same over a Nakadi-compatible server whose event type partitions at
/// random, read through the low-level API and through a subscription. The
/// server places the events, so redelivered copies are alike here: the truth
/// does not depend on where they went.
#[tokio::test]
async fn random_partitions_from_nakadi_load_the_source_exactly() {
    for subscription in [false, true] {
        let ws = Workspace::new();
        write_lines_topic(&ws, false, true);
        let bus = Bus::new(None, 4);
        let mut document: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(ws.sql().join(LINES_TOPIC).join("schema.json")).unwrap(),
        )
        .unwrap();
        let object = document.as_object_mut().unwrap();
        object.remove("partition_key_fields");
        object.insert("partition_strategy".into(), "random".into());
        let event_type = object["name"].as_str().unwrap().to_string();
        bus.add_event_type(document, 4).unwrap();
        bus.seed_partitions(5);
        let (address, _server) = bus.start("127.0.0.1:0").await.unwrap();
        let url = format!("http://{address}");

        let spread = Spread::Random {
            partitions: 4,
            distinct_copies: false,
        };
        let runs = generate_line_runs(600, 4, 13, spread);
        let events: usize = runs.iter().map(Vec::len).sum();
        assert!(events > 1500, "{events} events");
        let pg = postgres();
        let database = pg.database(&format!("spread_nakadi_{subscription}"));
        let topic = ws.catalog().await.topic(LINES_TOPIC).unwrap();
        let dialect = warehouse::dialect_named("postgres").unwrap();
        pg.psql(&database, &setup_sql(&topic, dialect, 1).unwrap())
            .unwrap();
        let output = ws.local_output();
        let mut eid = 0;
        for (i, run) in runs.iter().enumerate() {
            publish(&url, &event_type, run, &mut eid).await;
            let source = source_of(settings(&url, TokenSource::None), &event_type, subscription);
            let engine = Workspace::engine();
            let summary = materializer_core::run::execute(
                &engine,
                ws.request_from(LINES_TOPIC, output.clone(), source).await,
            )
            .await
            .unwrap_or_else(|e| panic!("run {}: {}", i + 1, materializer_core::report(&e)));
            assert_eq!(summary.sequence, Some(i as u64 + 1));
            assert_eq!(summary.counts.events_read, run.len() as u64);
            let manifest = Ledger::new(output.clone(), LINES_TOPIC)
                .manifest(i as u64 + 1)
                .await
                .unwrap()
                .unwrap();
            let folder = ws.out().join(LINES_TOPIC);
            let load = load_run_sql(
                &manifest,
                None,
                dialect,
                FilePlace::Folder(Path::new(&folder)),
            )
            .unwrap();
            pg.psql(&database, &load)
                .unwrap_or_else(|e| panic!("loading run {}: {e}", i + 1));
        }
        let what = format!("subscription {subscription}");
        check_runs(&output, runs.len(), &what).await;
        check_warehouse(&database, &runs, &what);
    }
}

/// Publishes a run's arrivals, in their order, in batches of 20.
async fn publish(url: &str, event_type: &str, arrivals: &[Arrival], eid: &mut u64) {
    let client = reqwest::Client::new();
    for chunk in arrivals.chunks(20) {
        let events: Vec<serde_json::Value> = chunk
            .iter()
            .map(|a| {
                *eid += 1;
                serde_json::from_str(&a.json(*eid)).unwrap()
            })
            .collect();
        let response = client
            .post(format!("{url}/event-types/{event_type}/events"))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
}

/// The generated runs put versions of one order on several partitions, and
/// copies of one version with different rows on different partitions of one
/// run: what the test claims to cover.
fn assert_spread(runs: &[Vec<Arrival>], seed: u64) {
    let (mut spread_keys, mut rival_copies) = (0, 0);
    for run in runs {
        let mut partitions: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        let mut copies: BTreeMap<(&str, u64), Vec<&Arrival>> = BTreeMap::new();
        for a in run {
            partitions.entry(&a.order).or_default().insert(a.partition);
            copies.entry((&a.order, a.at)).or_default().push(a);
        }
        spread_keys += partitions.values().filter(|p| p.len() > 1).count();
        rival_copies += copies
            .values()
            .filter(|c| c.len() > 1 && c[0].partition != c[1].partition && c[0].items != c[1].items)
            .count();
    }
    assert!(spread_keys > 20, "seed {seed}: {spread_keys} orders spread");
    assert!(
        rival_copies > 0,
        "seed {seed}: no copies of a version on two partitions"
    );
}

/// The rows of the files of `kind` of run `sequence`, with their partition.
async fn kind_rows(
    output: &OutputLocation,
    topic: &str,
    sequence: u64,
    kind: FileKind,
) -> Vec<(String, Vec<Option<String>>)> {
    let ledger = Ledger::new(output.clone(), topic);
    let manifest = ledger.manifest(sequence).await.unwrap().unwrap();
    let mut rows = Vec::new();
    for file in manifest.files.iter().filter(|f| f.kind == kind) {
        let bytes = crate::support::object(output, &ledger.layout().resolve(&file.path)).await;
        let mut parsed = parse_csv(std::str::from_utf8(&bytes).unwrap());
        parsed.remove(0);
        rows.extend(parsed.into_iter().map(|r| (file.partition.clone(), r)));
    }
    rows
}

/// In every run: at most one `main` KEYS row per order, MAIN rows of an
/// order from one version only; and orders whose versions the runs read
/// from several partitions.
async fn check_runs(output: &OutputLocation, runs: usize, what: &str) {
    let mut spread = 0;
    for sequence in 1..=runs as u64 {
        let keys = kind_rows(output, LINES_TOPIC, sequence, FileKind::Keys).await;
        let mut mains: BTreeMap<String, usize> = BTreeMap::new();
        let mut partitions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (partition, row) in &keys {
            let order = row[0].clone().unwrap();
            if row[3].as_deref() == Some("main") {
                *mains.entry(order.clone()).or_default() += 1;
            }
            partitions
                .entry(order)
                .or_default()
                .insert(partition.clone());
        }
        let twice: Vec<&String> = mains
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k)
            .collect();
        assert!(
            twice.is_empty(),
            "{what}: run {sequence}: two main versions of {twice:?}"
        );
        spread += partitions.values().filter(|p| p.len() > 1).count();
        let main = kind_rows(output, LINES_TOPIC, sequence, FileKind::Main).await;
        let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, row) in main {
            versions
                .entry(row[0].clone().unwrap())
                .or_default()
                .insert(row[2].clone().unwrap());
        }
        let mixed: Vec<&String> = versions
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| k)
            .collect();
        assert!(
            mixed.is_empty(),
            "{what}: run {sequence}: MAIN rows of two versions of {mixed:?}"
        );
    }
    assert!(
        spread > 20,
        "{what}: only {spread} orders read from several partitions"
    );
}

/// The ODS and the history equal what the raw events call for.
fn check_warehouse(database: &str, runs: &[Vec<Arrival>], what: &str) {
    let ods = table_rows(database, "order_lines_ods", false);
    same_rows(&ods, &expected_ods(runs), &format!("{what}: ODS"));
    let history = table_rows(database, "order_lines_history", true);
    same_rows(
        &history,
        &expected_history(runs),
        &format!("{what}: history"),
    );
}
