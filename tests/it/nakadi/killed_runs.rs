//! Runs of the binary killed or crashed at any moment (failpoints and
//! SIGKILL) while the stream grows: the next run finishes or resumes what
//! they left, and every event is committed once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use materializer_core::commit::{Ledger, PartitionCursors, Plan};
use materializer_core::sink::{FileKind, OutputLocation, S3Settings};
use materializer_core::source::TokenSource;

use super::{
    Live, RUN_DEADLINE, TOPIC, append, end_cursors, events_in, live, read_through_subscription,
    run, settings, source, source_with, subscription_id,
};
use crate::stages::{Stage, aim_at, kill_when};
use crate::support::{Workspace, article_stream, committed, parse_csv, run_files};

const FAILPOINT: &str = "MATERIALIZER_FAILPOINT";

/// What a warehouse that loads every committed run in order holds: per
/// article, the version and eid of its MAIN row of the highest version.
async fn warehouse(output: &OutputLocation) -> BTreeMap<String, (i64, String)> {
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for run in run_files(output, TOPIC).await {
        for (_, text) in run.files.iter().filter(|(kind, _)| *kind == FileKind::Main) {
            let mut rows = parse_csv(text);
            let header = rows.remove(0);
            let column = |name: &str| {
                header
                    .iter()
                    .position(|h| h.as_deref() == Some(name))
                    .unwrap()
            };
            let (key, version, eid) = (column("article_id"), column("version"), column("eid"));
            for row in rows {
                let v: i64 = row[version].as_deref().unwrap().parse().unwrap();
                let k = row[key].clone().unwrap();
                if latest.get(&k).is_none_or(|(top, _)| v > *top) {
                    latest.insert(k, (v, row[eid].clone().unwrap()));
                }
            }
        }
    }
    latest
}

/// One event of recorded stream lines, numbered as the server numbers the
/// events of its partition (in order, from 0).
struct Numbered {
    partition: String,
    number: u64,
    eid: String,
    article: String,
    version: i64,
}

/// The events of recorded stream lines.
fn events_of(lines: &[String]) -> Vec<Numbered> {
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut events = Vec::new();
    for line in lines {
        let batch: serde_json::Value = serde_json::from_str(line).unwrap();
        let partition = batch["cursor"]["partition"].as_str().unwrap().to_string();
        for event in batch["events"].as_array().unwrap() {
            let number = next.entry(partition.clone()).or_insert(0);
            events.push(Numbered {
                partition: partition.clone(),
                number: *number,
                eid: event["metadata"]["eid"].as_str().unwrap().to_string(),
                article: event["article_id"].to_string(),
                version: event["version"].as_i64().unwrap(),
            });
            *number += 1;
        }
    }
    events
}

/// The committed runs read every event of `lines` once, and hold the latest
/// version of every article as the event the rules make it: of the copies
/// of that version (redeliveries with other payloads), the last one of the
/// first run that read the version; a copy a later run read is a
/// correction. (An article's events are all on one partition here.)
async fn holds_the_latest_versions(output: &OutputLocation, lines: &[String]) {
    use nakadi_testkit::log::number_of;
    let ledger = Ledger::new(output.clone(), TOPIC);
    // Per run, per partition: the numbers after `start` up to `end`.
    let mut runs: Vec<(u64, BTreeMap<String, (Option<u64>, Option<u64>)>)> = Vec::new();
    for sequence in ledger.committed_sequences().await.unwrap() {
        let manifest = ledger.manifest(sequence).await.unwrap().unwrap();
        let number = |o: String| number_of(&o).unwrap();
        let ranges = manifest
            .partitions
            .iter()
            .map(|p| {
                let range = (number(p.start.to_string()), number(p.end.to_string()));
                (p.partition.clone(), range)
            })
            .collect();
        runs.push((sequence, ranges));
    }
    let runs_of = |e: &Numbered| -> Vec<u64> {
        runs.iter()
            .filter(|(_, ranges)| {
                ranges.get(&e.partition).is_some_and(|(start, end)| {
                    start.is_none_or(|s| e.number > s) && end.is_some_and(|end| e.number <= end)
                })
            })
            .map(|(sequence, _)| *sequence)
            .collect()
    };
    // Per article: version, run and number of the latest version's copy.
    let mut chosen: BTreeMap<String, (i64, u64, u64, String)> = BTreeMap::new();
    for e in events_of(lines) {
        let read_by = runs_of(&e);
        assert_eq!(read_by.len(), 1, "{} read by runs {read_by:?}", e.eid);
        let run = read_by[0];
        // A higher version; of one version, the earlier run, then the later copy.
        let better = chosen.get(&e.article).is_none_or(|&(v, r, n, _)| {
            e.version > v || (e.version == v && (run < r || (run == r && e.number > n)))
        });
        if better {
            chosen.insert(e.article, (e.version, run, e.number, e.eid));
        }
    }
    let expected: BTreeMap<String, (i64, String)> = chosen
        .into_iter()
        .map(|(article, (version, _, _, eid))| (article, (version, eid)))
        .collect();
    assert_eq!(warehouse(output).await, expected);
}

/// A run of the binary against `live`, writing to `output`.
fn cli_run(ws: &Workspace, live: &Live, output: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(ws.command());
    command
        .args([
            "run",
            "--topic",
            TOPIC,
            "--nakadi-url",
            &live.url,
            "--no-progress",
            "--output",
        ])
        .arg(output)
        .kill_on_drop(true);
    command
}

/// What a run of the binary printed once it ended; a run that does not end
/// fails the test.
async fn finished(command: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(RUN_DEADLINE, command.output())
        .await
        .expect("the run did not end")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until the server noticed that the killed run's stream is gone.
async fn until_no_stream_holds(live: &Live, id: &str) {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let stats: serde_json::Value =
            reqwest::get(format!("{}/subscriptions/{id}/stats", live.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let assigned = stats["items"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["state"] == "assigned");
        if !assigned {
            return;
        }
        assert!(Instant::now() < deadline, "the stream stays held: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events between a plan's start and end cursors.
fn planned_events(plan: &Plan) -> u64 {
    plan.partitions
        .iter()
        .map(|p| p.start.distance_to(&p.end).unwrap())
        .sum()
}

#[tokio::test]
async fn a_crash_between_manifest_and_cursor_commit_is_finished_by_the_next_run() {
    let ws = Workspace::new();
    read_through_subscription(&ws);
    let live = live(&ws, None, &article_stream(600, 4, 12)).await;
    let output = ws.path("crash-out");
    let crashed = finished(cli_run(&ws, &live, &output).env(FAILPOINT, "post-committed")).await;
    assert!(!crashed.status.success());
    let location =
        OutputLocation::parse(&output.display().to_string(), &S3Settings::default()).unwrap();
    assert_eq!(
        committed(&location, TOPIC).await.sequences,
        vec![1],
        "the manifest was written"
    );
    let id = subscription_id(&live).await;
    assert!(
        live.bus
            .committed(&id)
            .unwrap()
            .values()
            .all(|c| c == "BEGIN"),
        "no cursor commit yet"
    );

    let next = finished(&mut cli_run(&ws, &live, &output)).await;
    assert!(next.status.success(), "{}", text(&next.stderr));
    assert!(text(&next.stdout).contains("nothing new since run 1"));
    assert_eq!(
        live.bus.committed(&id).unwrap(),
        end_cursors(&location).await
    );
}

#[tokio::test]
async fn a_killed_subscription_run_resumes_its_plan_after_the_stream_grew() {
    let ws = Workspace::new();
    read_through_subscription(&ws);
    let lines = article_stream(1600, 4, 41);
    let parts: Vec<&[String]> = lines.chunks(lines.len() / 3 + 1).collect();
    let live = live(&ws, None, parts[0]).await;
    let dir = ws.path("resumed");
    let output = OutputLocation::parse(&dir.display().to_string(), &S3Settings::default()).unwrap();
    run(&ws, &output, source(&live, true)).await.unwrap();
    append(&live, parts[1]);
    // Run 2 dies after its first batch went to a decoder: its plan is
    // written, its manifest is not, its stream had sent events uncommitted.
    let killed = finished(cli_run(&ws, &live, &dir).env(FAILPOINT, "reading")).await;
    assert!(
        text(&killed.stderr).contains("failpoint reading"),
        "{}",
        text(&killed.stderr)
    );
    let ledger = Ledger::new(output.clone(), TOPIC);
    let plan = ledger.plan(2).await.unwrap().expect("run 2 wrote its plan");
    assert_eq!(ledger.committed_sequences().await.unwrap(), vec![1]);
    assert_eq!(planned_events(&plan), events_in(parts[1]));

    // The stream grows: Nakadi sends these events past the plan's end.
    append(&live, parts[2]);
    let id = subscription_id(&live).await;
    until_no_stream_holds(&live, &id).await;
    let mut s = settings(&live.url, TokenSource::None);
    s.commit_timeout = Duration::from_secs(2);
    let resumed = tokio::time::timeout(RUN_DEADLINE, run(&ws, &output, source_with(s, true)))
        .await
        .expect("the resumed run did not end")
        .unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.sequence, Some(2));
    assert_eq!(resumed.counts.events_read, planned_events(&plan));
    let cursors = |p: &[PartitionCursors]| -> Vec<(String, String, String)> {
        p.iter()
            .map(|c| (c.partition.clone(), c.start.to_string(), c.end.to_string()))
            .collect()
    };
    assert_eq!(cursors(&resumed.partitions), cursors(&plan.partitions));
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
    let planned = [parts[0], parts[1]].concat();
    holds_the_latest_versions(&output, &planned).await;

    // The growth is the next run's.
    let next = run(&ws, &output, source(&live, true)).await.unwrap();
    assert_eq!(next.counts.events_read, events_in(parts[2]));
    holds_the_latest_versions(&output, &lines).await;
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
}

#[tokio::test]
async fn runs_killed_at_any_moment_on_a_growing_stream_commit_every_event_once() {
    let ws = Workspace::new();
    read_through_subscription(&ws);
    let lines = article_stream(3000, 4, 57);
    let live = live(&ws, None, &[]).await;
    let dir = ws.path("series");
    let output = OutputLocation::parse(&dir.display().to_string(), &S3Settings::default()).unwrap();
    // Every failpoint once, and SIGKILL in between, aimed at a stage of the
    // run: each kill lands where the output shows it did, and kills must land
    // mid-read, mid-state, mid-write and mid-commit (aimed again at a stage
    // no kill has landed in yet).
    let deaths = [
        Some("planned"),
        None,
        Some("reading"),
        None,
        Some("files-written"),
        None,
        Some("committed"),
        None,
        Some("post-committed"),
        None,
        None,
        Some("reading"),
        None,
        None,
    ];
    let required = [
        Stage::Reading,
        Stage::Deciding,
        Stage::Writing,
        Stage::Committing,
    ];
    let mut landed: Vec<Stage> = Vec::new();
    let rounds: Vec<&[String]> = lines.chunks(lines.len().div_ceil(deaths.len())).collect();
    assert_eq!(rounds.len(), deaths.len());
    let ledger = Ledger::new(output.clone(), TOPIC);
    for (round, (events, death)) in rounds.iter().zip(deaths).enumerate() {
        let (before, meanwhile) = events.split_at(events.len() / 2);
        append(&live, before);
        match death {
            Some(point) => {
                let died = finished(cli_run(&ws, &live, &dir).env(FAILPOINT, point)).await;
                assert!(
                    text(&died.stderr).contains(&format!("failpoint {point}")),
                    "round {round}: {}",
                    text(&died.stderr)
                );
            }
            None => {
                let aim = required
                    .into_iter()
                    .find(|stage| !landed.contains(stage))
                    .unwrap_or(Stage::Writing);
                let sequence = ledger
                    .committed_sequences()
                    .await
                    .unwrap()
                    .last()
                    .map_or(1, |s| s + 1);
                let mut command = cli_run(&ws, &live, &dir);
                aim_at(&mut command, aim, &ws.path("never-opened"));
                let mut child = command
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let stage = kill_when(&mut child, &output, TOPIC, sequence, aim).await;
                assert!(
                    stage >= aim,
                    "round {round}: aimed at {aim:?}, landed in {stage:?}"
                );
                landed.push(stage);
            }
        }
        // Events keep arriving while no run is there.
        append(&live, meanwhile);
        let next = finished(&mut cli_run(&ws, &live, &dir)).await;
        assert!(
            next.status.success(),
            "round {round}: {}",
            text(&next.stderr)
        );
    }

    eprintln!("kills landed in {landed:?}");
    for stage in required {
        assert!(
            landed.contains(&stage),
            "no kill landed in {stage:?}: {landed:?}"
        );
    }

    // A run that resumed a plan left the last events to the next one.
    let last = finished(&mut cli_run(&ws, &live, &dir)).await;
    assert!(last.status.success(), "{}", text(&last.stderr));

    // Every event is in exactly one committed run, and the runs follow each other.
    let mut manifests = Vec::new();
    for sequence in ledger.committed_sequences().await.unwrap() {
        manifests.push(ledger.manifest(sequence).await.unwrap().unwrap());
    }
    let read: u64 = manifests.iter().map(|m| m.counts.events_read).sum();
    assert_eq!(read, events_in(&lines));
    for pair in manifests.windows(2) {
        let ends: Vec<_> = pair[0].partitions.iter().map(|p| &p.end).collect();
        let starts: Vec<_> = pair[1].partitions.iter().map(|p| &p.start).collect();
        assert_eq!(ends, starts, "run {}", pair[1].sequence);
    }
    holds_the_latest_versions(&output, &lines).await;
    let id = subscription_id(&live).await;
    assert_eq!(live.bus.committed(&id).unwrap(), end_cursors(&output).await);
}
