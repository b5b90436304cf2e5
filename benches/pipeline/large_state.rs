//! The large state benchmark: one run against a key state of many keys
//! (`--large-state 100M`), against the same run on an empty state.
//!
//! A run's cost should follow the events it reads, not the keys the topic
//! has seen. The history benchmark shows that for a state of millions of
//! keys; a state of a hundred million would take it hundreds of runs, so
//! here the state is written directly:
//!
//! 1. A first, small run ([`FIRST_RUN_EVENTS`] events) commits into a fresh
//!    output folder: a real manifest, cursors and state. The folder is
//!    copied: one copy keeps the first run's state (the *empty* state, the
//!    first run's thousand or so keys), the other gets the large one.
//! 2. The large state holds the articles the generator numbers 0..KEYS as if
//!    runs had delivered them (ids spread over 100M..1B as the generator
//!    spreads them, versions 1 to 4), and those of the first run at the
//!    versions it delivered. It is written bucket by bucket through the
//!    engine's own segment writer ([`write_segment`]) and listed in the first
//!    run's manifest in place of the state that run committed.
//! 3. The next `--history-events` events (default 500k: 90 % new articles,
//!    2 % late, the others updates of articles seen before, most of them in
//!    the large state) run on each copy, the empty state first.
//!
//! Both runs are checked as the history benchmark checks its runs: committed
//! as run 2, every event read; on the large state every late event in
//! CORRECTION, on the empty state only those an earlier event of their
//! article outranks. Most late events are versions the large state's
//! history left pending, which only the key state tells late: the two
//! counts differ by those, which shows the lookup found the state's
//! versions.

use std::fmt::Write as _;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use materializer_core::commit::Manifest;
use materializer_core::sink::{OutputLocation, S3Settings};
use materializer_core::state::{BUCKETS, KeyFormat, Segment, bucket_of, write_segment};
use materializer_core::state::{KeyStateError, StateIndex};

use crate::generator::{History, StateVersions, article_id, article_number};
use crate::history::{LATE_RATIO, NEW_RATIO, check};
use crate::measure::{Measurement, measure};
use crate::{Bench, Case, SEED};

/// Events of the first run, which commits the manifest the state is put in.
const FIRST_RUN_EVENTS: u64 = 1_000;
/// Keys per batch written to a segment.
const BATCH_KEYS: usize = 8 * 1024;
/// The generator's ids are 100M and up: a bucket's spill file holds them
/// as `id - ID_BASE` in 4 bytes.
const ID_BASE: u64 = 100_000_000;
/// The targets the benchmark is held to.
const WALL_RATIO_TARGET: f64 = 2.0;
const PEAK_RSS_TARGET_MB: f64 = 768.0;

/// One measured run of the benchmark.
struct RunFigures {
    label: &'static str,
    keys: u64,
    measurement: Measurement,
    map_write: f64,
    key_state: f64,
    corrections: u64,
}

/// The state written: keys, bytes and the time it took.
struct StateFigures {
    keys: u64,
    bytes: u64,
    seconds: f64,
}

pub fn run(bench: &Bench, keys: u64) -> Result<(), String> {
    let events = bench.options.history_events;
    if keys + FIRST_RUN_EVENTS + events >= 900_000_000 {
        return Err(
            "--large-state and --history-events: the generator numbers fewer than 900M articles"
                .into(),
        );
    }
    let dir = bench.work.join("large-state");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let empty = dir.join("out-empty");
    let large = dir.join("out-large");
    eprintln!(
        "large state: a run of {events} events against {keys} keys and against an empty state"
    );
    let mut history = History::after(
        SEED,
        keys,
        FIRST_RUN_EVENTS + events,
        events,
        NEW_RATIO,
        LATE_RATIO,
    );

    // The first run, committed into the folder both runs start from.
    let recording = dir.join("run-1");
    std::fs::create_dir_all(&recording).map_err(|e| e.to_string())?;
    let first = history
        .write_run(FIRST_RUN_EVENTS, &recording.join("events.jsonl"))
        .map_err(|e| format!("generating the events of the first run: {e}"))?;
    let (summary, _) = run_once(bench, &empty, &recording)?;
    check(
        &summary,
        "large state, first run",
        1,
        first.events,
        first.out_of_order - first.late_behind_state,
    )?;
    std::fs::remove_dir_all(&recording).map_err(|e| e.to_string())?;
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&empty)
        .arg(&large)
        .status()
        .map_err(|e| format!("copying {}: {e}", empty.display()))?;
    if !copied.success() {
        return Err(format!("copying {} failed", empty.display()));
    }
    let (_, committed) = first_manifest(&empty.join(Case::CompactCsv.topic()))?;
    let empty_keys = committed.key_state.as_ref().map_or(0, StateIndex::rows);

    eprintln!("large state: writing {keys} keys and the first run's");
    let state = write_state(
        &large.join(Case::CompactCsv.topic()),
        &Arc::new(history.state_versions()),
        &dir,
    )?;
    eprintln!(
        "large state: {} keys, {:.1} MB, written in {:.1} s",
        state.keys,
        state.bytes as f64 / 1e6,
        state.seconds
    );

    // The run, on each state.
    let recording = dir.join("run-2");
    std::fs::create_dir_all(&recording).map_err(|e| e.to_string())?;
    let second = history
        .write_run(events, &recording.join("events.jsonl"))
        .map_err(|e| format!("generating the events of the run: {e}"))?;
    let run_events = second.events - first.events;
    let late = second.out_of_order - first.out_of_order;
    let behind_state = second.late_behind_state - first.late_behind_state;
    let mut figures = Vec::new();
    for (label, out, keys_before, corrections) in [
        ("empty", &empty, empty_keys, late - behind_state),
        ("large", &large, state.keys, late),
    ] {
        let (summary, measurement) = run_once(bench, out, &recording)?;
        check(
            &summary,
            &format!("large state, the run on the {label} state"),
            2,
            run_events,
            corrections,
        )?;
        let timing = |name: &str| summary["timings"][name].as_f64().unwrap_or(f64::NAN);
        let run = RunFigures {
            label,
            keys: keys_before,
            map_write: timing("map_write"),
            key_state: timing("key_state"),
            corrections,
            measurement,
        };
        eprintln!(
            "large state, the run on the {label} state ({keys_before} keys): {:.2} s, {:.0} MB peak, \
             map+write {:.2} s (key state {:.2} s), {corrections} events in CORRECTION",
            run.measurement.wall, run.measurement.peak_rss_mb, run.map_write, run.key_state
        );
        figures.push(run);
    }
    let report = report(&figures, &state, run_events, late, bench.options.memory_mb);
    crate::publish(bench, "large-state.md", &report)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The compacting CSV topic's run from the recording in `recording` into
/// `out`: its summary, which must say it committed.
fn run_once(
    bench: &Bench,
    out: &Path,
    recording: &Path,
) -> Result<(serde_json::Value, Measurement), String> {
    let mut command = bench.run_command(Case::CompactCsv, out);
    command.arg("--source").arg(recording);
    let measurement = measure(&mut command)?;
    if !measurement.success {
        return Err(format!(
            "large state: a run into {} failed: {}",
            out.display(),
            measurement.stderr
        ));
    }
    let summary = serde_json::from_str(&measurement.stdout)
        .map_err(|e| format!("run summary is not JSON ({e}): {}", measurement.stdout))?;
    Ok((summary, measurement))
}

/// Writes the key state `versions` describes into the topic folder `topic`
/// as the state of its newest (first) run, and lists it in that run's
/// manifest in place of the state the run wrote. Each bucket's keys wait in
/// a spill file in `scratch` and are sorted one bucket at a time.
fn write_state(
    topic: &Path,
    versions: &Arc<StateVersions>,
    scratch: &Path,
) -> Result<StateFigures, String> {
    let started = Instant::now();
    let (manifest_path, mut manifest) = first_manifest(topic)?;
    let before = manifest
        .key_state
        .clone()
        .ok_or("the first run committed no bucketed key state")?;
    let schema = state_schema(&topic.join(&before.segments[0].path))?;
    let format = KeyFormat::new(&schema).map_err(|e| e.to_string())?;

    // Every key, in its bucket's spill file.
    let spills: Vec<PathBuf> = (0..BUCKETS)
        .map(|b| scratch.join(format!("bucket-{b:03}.u32")))
        .collect();
    let mut files = spills
        .iter()
        .map(|path| std::fs::File::create(path).map(|f| BufWriter::with_capacity(1 << 20, f)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("creating a spill file: {e}"))?;
    let articles = versions.articles();
    for start in (0..articles).step_by(64 * 1024) {
        let ids: Vec<i64> = (start..articles.min(start + 64 * 1024))
            .map(|n| article_id(n) as i64)
            .collect();
        let column: ArrayRef = Arc::new(Int64Array::from(ids.clone()));
        let rows = format.key_rows(&[column]).map_err(|e| e.to_string())?;
        for (row, id) in rows.iter().zip(ids) {
            let file = &mut files[bucket_of(row.data(), BUCKETS) as usize];
            file.write_all(&((id as u64 - ID_BASE) as u32).to_le_bytes())
                .map_err(|e| format!("writing a spill file: {e}"))?;
        }
    }
    for file in files {
        file.into_inner()
            .map_err(|e| format!("writing a spill file: {e}"))?;
    }

    // Each bucket sorted and written, a bucket per core at a time.
    let location = OutputLocation::parse(
        &topic
            .parent()
            .ok_or("the topic folder has no parent")?
            .display()
            .to_string(),
        &S3Settings::default(),
    )
    .map_err(|e| e.to_string())?;
    let topic_name = Case::CompactCsv.topic();
    let next = AtomicU32::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut segments: Vec<Segment> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<Segment>, String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let mut written = Vec::new();
                    loop {
                        let bucket = next.fetch_add(1, Ordering::Relaxed);
                        if bucket >= BUCKETS {
                            return Ok(written);
                        }
                        let rows = sorted_rows(&spills[bucket as usize], &schema, versions)?;
                        written.push(
                            runtime
                                .block_on(write_segment(
                                    &location,
                                    &topic_name,
                                    schema.clone(),
                                    bucket,
                                    manifest.sequence,
                                    &manifest.attempt,
                                    rows,
                                ))
                                .map_err(|e| {
                                    format!("writing bucket {bucket}: {}", error_chain(&e))
                                })?,
                        );
                        std::fs::remove_file(&spills[bucket as usize])
                            .map_err(|e| e.to_string())?;
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.join().map_err(|_| "a writer panicked")??);
        }
        Ok::<_, String>(all)
    })?;
    segments.sort_by_key(|s| s.bucket);
    let keys: u64 = segments.iter().map(|s| s.keys).sum();
    if keys != articles {
        return Err(format!("{keys} keys written of {articles}"));
    }
    let bytes = segments.iter().map(|s| s.bytes).sum();

    // The manifest names the new segments; those of the first run that
    // were not overwritten go.
    for old in &before.segments {
        if !segments.iter().any(|s| s.path == old.path) {
            std::fs::remove_file(topic.join(&old.path))
                .map_err(|e| format!("removing {}: {e}", old.path))?;
        }
    }
    manifest.state = None;
    manifest.key_state = Some(StateIndex {
        buckets: BUCKETS,
        segments,
    });
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(&manifest_path, body)
        .map_err(|e| format!("writing {}: {e}", manifest_path.display()))?;
    Ok(StateFigures {
        keys,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The manifest of the first run committed in the topic folder `topic`.
fn first_manifest(topic: &Path) -> Result<(PathBuf, Manifest), String> {
    let path = topic.join("_manifests").join("0000000001.json");
    let text = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let manifest = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a manifest: {e}", path.display()))?;
    Ok((path, manifest))
}

/// The schema of the key state as the first run wrote it: one BIGINT key
/// part (the article id) and the BIGINT ordering key (the version).
fn state_schema(segment: &Path) -> Result<SchemaRef, String> {
    let file =
        std::fs::File::open(segment).map_err(|e| format!("opening {}: {e}", segment.display()))?;
    let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("reading {}: {e}", segment.display()))?
        .schema()
        .clone();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    if types != [&DataType::Int64, &DataType::Int64] {
        return Err(format!(
            "the key state's columns are {types:?}, the generated keys are BIGINT"
        ));
    }
    Ok(schema)
}

/// The keys of a spill file, sorted (for ids that are non-negative BIGINTs,
/// the row format's order is the numbers'), as batches with their versions,
/// made as they are written.
fn sorted_rows(
    spill: &Path,
    schema: &SchemaRef,
    versions: &Arc<StateVersions>,
) -> Result<impl Stream<Item = Result<RecordBatch, KeyStateError>> + Send + 'static, String> {
    let mut bytes = Vec::new();
    BufReader::new(std::fs::File::open(spill).map_err(|e| e.to_string())?)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", spill.display()))?;
    let mut ids: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    drop(bytes);
    ids.sort_unstable();
    let (schema, versions) = (schema.clone(), versions.clone());
    Ok(
        futures::stream::iter(0..ids.len().div_ceil(BATCH_KEYS)).map(move |batch| {
            let chunk = &ids[batch * BATCH_KEYS..ids.len().min((batch + 1) * BATCH_KEYS)];
            let ids: Vec<u64> = chunk.iter().map(|&i| ID_BASE + u64::from(i)).collect();
            let versions: Int64Array = ids
                .iter()
                .map(|&id| Some(versions.version(article_number(id))))
                .collect();
            let ids: Int64Array = ids.iter().map(|&id| Some(id as i64)).collect();
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(ids), Arc::new(versions)],
            )?)
        }),
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn report(
    figures: &[RunFigures],
    state: &StateFigures,
    events: u64,
    late: u64,
    memory_mb: Option<u64>,
) -> String {
    let memory = memory_mb.map_or("the default --memory-mb".to_string(), |mb| {
        format!("--memory-mb {mb}")
    });
    let mut text = format!(
        "Large state: a run of {events} events ({:.0} % new articles, {:.0} % late: {late}) \
         against a key state of {} keys ({:.1} MB, written in {:.1} s) and against an empty \
         state (a first run's keys), {memory}\n\n\
         | state | keys before | wall s | peak RSS MB | map+write s | of which key state s | events in CORRECTION |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        NEW_RATIO * 100.0,
        LATE_RATIO * 100.0,
        state.keys,
        state.bytes as f64 / 1e6,
        state.seconds,
    );
    for f in figures {
        let _ = writeln!(
            text,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
            f.label,
            f.keys,
            f.measurement.wall,
            f.measurement.peak_rss_mb,
            f.map_write,
            f.key_state,
            f.corrections
        );
    }
    if let [empty, large] = figures {
        let ratio = large.measurement.wall / empty.measurement.wall;
        let peak = large.measurement.peak_rss_mb;
        let _ = write!(
            text,
            "\nlarge state's wall time against the empty state's: {ratio:.2} ({} the target of {WALL_RATIO_TARGET}); \
             its peak RSS: {peak:.0} MB ({} {PEAK_RSS_TARGET_MB:.0} MB)\n",
            if ratio <= WALL_RATIO_TARGET {
                "within"
            } else {
                "above"
            },
            if peak < PEAK_RSS_TARGET_MB {
                "below"
            } else {
                "not below"
            },
        );
    }
    text
}
