//! The classification of a real run checked against a model of its own: the
//! README's rules ("Compaction and corrections") written out in plain Rust
//! over the input events, apart from the engine's code and SQL. Articles on
//! random partitions (with a partition `10`, which sorts after `2`), late
//! versions within a partition, copies of one version with other payloads
//! within a partition and across partitions, and versions not higher than
//! the one an earlier run committed, over three runs.

use std::collections::{BTreeMap, HashMap};

use materializer_core::sink::FileKind;

use crate::support::{Field, Workspace, parse_csv, run_files};

const TOPIC: &str = "article-stock-changed";
const PARTITIONS: [&str; 4] = ["0", "1", "2", "10"];

/// One event of the input.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    partition: &'static str,
    article: i64,
    version: i64,
    /// The payload: copies of one version differ in it.
    qty: i64,
    eid: String,
}

impl Event {
    fn json(&self) -> String {
        format!(
            r#"{{"metadata":{{"eid":"{}","occurred_at":"2024-06-03T08:00:00.000Z","event_type":"article.stock-changed","partition":"{}"}},"article_id":{},"brand":"Nike","model":"M","version":{},"available_qty":{}}}"#,
            self.eid, self.partition, self.article, self.version, self.qty
        )
    }

    /// What a MAIN, CORRECTION or OLDER row of it shows: (eid, article, version, qty).
    fn shown(&self) -> Shown {
        (self.eid.clone(), self.article, self.version, self.qty)
    }
}

type Shown = (String, i64, i64, i64);

/// What a run is expected to write, per kind; KEYS rows as
/// (article, version, kind).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) main: Vec<Shown>,
    pub(crate) correction: Vec<Shown>,
    pub(crate) older: Vec<Shown>,
    pub(crate) keys: Vec<(i64, i64, String)>,
}

/// The runs' events, each run's in arrival order (over all partitions; a
/// partition's own order is what counts): versions drawn from a range that
/// grows with the runs, so that equal versions, late ones and ones below
/// the committed version are common.
pub(crate) fn generate(runs: usize, articles: i64, seed: u64) -> Vec<Vec<Event>> {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let mut eid = 0u64;
    (0..runs)
        .map(|run| {
            let mut events = Vec::new();
            for _ in 0..articles as u64 * 4 {
                eid += 1;
                events.push(Event {
                    partition: PARTITIONS[next(4) as usize],
                    article: 1000 + next(articles as u64) as i64,
                    version: 1 + next(4 + 3 * run as u64) as i64,
                    qty: next(1000) as i64,
                    eid: format!("00000000-0000-4000-8000-{eid:012x}"),
                });
            }
            events
        })
        .collect()
}

/// The recording of runs `..=last`: batches of up to three events of one
/// partition, offsets going on from run to run.
pub(crate) fn recording(runs: &[Vec<Event>], last: usize) -> Vec<String> {
    let mut offsets: HashMap<&str, u64> = HashMap::new();
    let mut lines = Vec::new();
    for run in &runs[..=last] {
        let mut rest: &[Event] = run;
        while let Some(first) = rest.first() {
            let batch: Vec<&Event> = rest
                .iter()
                .take(3)
                .take_while(|e| e.partition == first.partition)
                .collect();
            rest = &rest[batch.len()..];
            let offset = offsets.entry(first.partition).or_insert(0);
            *offset += batch.len() as u64;
            let events: Vec<String> = batch.iter().map(|e| e.json()).collect();
            lines.push(format!(
                r#"{{"cursor":{{"partition":"{}","offset":"001-0001-{:018}"}},"events":[{}]}}"#,
                first.partition,
                *offset - 1,
                events.join(",")
            ));
        }
    }
    lines
}

/// The model: what one run writes given the versions committed before it
/// (updated to those after it).
pub(crate) fn model(run: &[Event], committed: &mut HashMap<i64, i64>) -> Expected {
    // Partition after partition, numerically; each partition's events in
    // arrival order.
    let mut ordered: Vec<&Event> = Vec::new();
    let mut names: Vec<&str> = PARTITIONS.to_vec();
    names.sort_by_key(|p| p.parse::<u64>().unwrap());
    for p in names {
        ordered.extend(run.iter().filter(|e| e.partition == p));
    }
    // Late: lower than a version of its key that arrived before it in its
    // partition, or not higher than the committed one.
    let late: Vec<bool> = ordered
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let newer_before = ordered[..i].iter().any(|o| {
                o.partition == e.partition && o.article == e.article && o.version > e.version
            });
            newer_before || committed.get(&e.article).is_some_and(|&c| e.version <= c)
        })
        .collect();
    let mut newest: HashMap<i64, i64> = HashMap::new();
    for e in &ordered {
        let top = newest.entry(e.article).or_insert(e.version);
        *top = (*top).max(e.version);
    }
    // A version counts once: its last copy in that order.
    let mut expected = Expected::default();
    for (i, e) in ordered.iter().enumerate() {
        let last_copy = !ordered[i + 1..]
            .iter()
            .any(|o| o.article == e.article && o.version == e.version);
        if !last_copy {
            continue;
        }
        let (rows, kind) = if late[i] {
            (&mut expected.correction, "correction")
        } else if newest[&e.article] == e.version {
            (&mut expected.main, "main")
        } else {
            (&mut expected.older, "older")
        };
        rows.push(e.shown());
        expected.keys.push((e.article, e.version, kind.to_string()));
    }
    for (article, version) in newest {
        let top = committed.entry(article).or_insert(version);
        *top = (*top).max(version);
    }
    expected.main.sort();
    expected.correction.sort();
    expected.older.sort();
    expected.keys.sort();
    expected
}

/// The rows of a CSV file as maps from column name to field.
fn named_rows(text: &str) -> Vec<BTreeMap<String, Field>> {
    let mut rows = parse_csv(text);
    let header: Vec<String> = rows.remove(0).into_iter().map(Option::unwrap).collect();
    rows.into_iter()
        .map(|row| {
            assert_eq!(row.len(), header.len(), "{header:?}: {row:?}");
            header.iter().cloned().zip(row).collect()
        })
        .collect()
}

fn number(row: &BTreeMap<String, Field>, column: &str) -> i64 {
    row[column]
        .as_deref()
        .unwrap_or_else(|| panic!("{column} is NULL: {row:?}"))
        .parse()
        .unwrap()
}

/// What a committed run wrote, in the model's terms.
pub(crate) fn written(files: &[(FileKind, String)]) -> Expected {
    let mut got = Expected::default();
    for (kind, text) in files {
        let rows = named_rows(text);
        if *kind == FileKind::Keys {
            for row in rows {
                assert_eq!(row["deleted"].as_deref(), Some("false"), "{row:?}");
                got.keys.push((
                    number(&row, "article_id"),
                    number(&row, "version"),
                    row["kind"].clone().unwrap(),
                ));
            }
            continue;
        }
        let shown = rows.iter().map(|row| {
            (
                row["eid"].clone().unwrap(),
                number(row, "article_id"),
                number(row, "version"),
                number(row, "available_qty"),
            )
        });
        match kind {
            FileKind::Main => got.main.extend(shown),
            FileKind::Correction => got.correction.extend(shown),
            FileKind::Older => got.older.extend(shown),
            FileKind::Rejected => assert!(rows.is_empty(), "rejected: {text}"),
            FileKind::Keys => unreachable!(),
        }
    }
    got.main.sort();
    got.correction.sort();
    got.older.sort();
    got.keys.sort();
    got
}

/// The stream has what the test claims: per run, how many versions of each
/// situation the model met.
fn situations(run: &[Event], committed: &HashMap<i64, i64>) -> BTreeMap<&'static str, usize> {
    let mut seen = BTreeMap::new();
    for (i, e) in run.iter().enumerate() {
        let before = &run[..i];
        let mut count = |what| *seen.entry(what).or_insert(0) += 1;
        if before
            .iter()
            .any(|o| o.partition == e.partition && o.article == e.article && o.version > e.version)
        {
            count("late in its partition");
        }
        for o in before
            .iter()
            .filter(|o| o.article == e.article && o.version == e.version && o.qty != e.qty)
        {
            count(if o.partition == e.partition {
                "copy with another payload, same partition"
            } else {
                "copy with another payload, other partition"
            });
        }
        if before
            .iter()
            .any(|o| o.partition != e.partition && o.article == e.article && o.version > e.version)
        {
            count("older than a version of another partition");
        }
        match committed.get(&e.article) {
            Some(&c) if e.version == c => count("equal to the committed version"),
            Some(&c) if e.version < c => count("below the committed version"),
            _ => {}
        }
    }
    seen
}

#[tokio::test]
async fn three_runs_classify_every_event_as_the_model_of_the_rules_does() {
    let ws = Workspace::new();
    let runs = generate(3, 40, 29);
    let mut committed = HashMap::new();
    for (n, run) in runs.iter().enumerate() {
        let claimed = situations(run, &committed);
        let mut needed = vec![
            "late in its partition",
            "copy with another payload, same partition",
            "copy with another payload, other partition",
            "older than a version of another partition",
        ];
        if n > 0 {
            needed.extend([
                "equal to the committed version",
                "below the committed version",
            ]);
        }
        for what in needed {
            assert!(
                claimed.contains_key(what),
                "run {n}: no {what}: {claimed:?}"
            );
        }
        let expected = model(run, &mut committed);
        ws.record(TOPIC, &recording(&runs, n));
        let summary = ws.run(TOPIC).await.unwrap();
        assert_eq!(summary.sequence, Some(n as u64 + 1));
        let files = run_files(&ws.local_output(), TOPIC).await;
        assert_eq!(files.len(), n + 1);
        let got = written(&files[n].files);
        assert_eq!(got.main, expected.main, "run {n}: MAIN");
        assert_eq!(got.correction, expected.correction, "run {n}: CORRECTION");
        assert_eq!(got.older, expected.older, "run {n}: OLDER");
        assert_eq!(got.keys, expected.keys, "run {n}: KEYS");
        assert!(!expected.correction.is_empty() && !expected.older.is_empty());
    }
}
