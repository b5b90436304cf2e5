//! The physical floor of a scale: what reading the recorded stream costs on
//! this machine before any engine does anything with it.
//!
//! Three figures, each on as many threads as there are CPUs, each thread
//! taking a slice of the recording cut at line ends:
//! - **read**: the bytes read from the file (page cache when it fits), lines
//!   found, nothing parsed;
//! - **parse**: every line read and parsed as JSON by serde_json into
//!   nothing (`IgnoredAny`: the syntax checked, no value built): the least a
//!   JSON decoder does;
//! - **DuckDB read**: DuckDB reading the same events as NDJSON with the
//!   bench's explicit schema and aggregating one column (a whole process,
//!   when DuckDB is installed): what the script pays before its query.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::Bench;
use crate::dataset::{Dataset, dataset};
use crate::measure::measure;
use crate::report::{median, publish};

/// `--floor`: the floor of every scale, medians of `--runs`, published as
/// `floor.md`.
pub(crate) fn run(bench: &Bench) -> Result<(), String> {
    let options = &bench.options;
    let mut text = String::from(
        "Physical floor: the recording read and parsed without an engine, medians of the repetitions.\n\n\
         | events | what | s | MB/s |\n|---:|---|---:|---:|\n",
    );
    for &events in &options.scales {
        let data = dataset(options, events)?;
        let mut samples: Vec<Vec<Floor>> = Vec::new();
        for _ in 0..options.runs {
            samples.push(measure_floor(&data, bench.duckdb)?);
        }
        for (i, first) in samples[0].iter().enumerate() {
            let seconds = median(&mut samples.iter().map(|s| s[i].seconds).collect::<Vec<_>>());
            text.push_str(&format!(
                "| {events} | {} | {seconds:.2} | {:.0} |\n",
                first.what,
                first.bytes as f64 / 1e6 / seconds
            ));
        }
    }
    publish(bench, "floor.md", &text)
}

/// One floor figure.
pub(crate) struct Floor {
    pub(crate) what: &'static str,
    pub(crate) seconds: f64,
    pub(crate) bytes: u64,
}

pub(crate) fn measure_floor(data: &Dataset, duckdb: bool) -> Result<Vec<Floor>, String> {
    let stream = data.stream.clone();
    let bytes = std::fs::metadata(&stream)
        .map_err(|e| format!("{}: {e}", stream.display()))?
        .len();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let slices = slices(&stream, bytes, threads)?;
    let mut floors = vec![
        Floor {
            what: "read the recording's bytes, find its lines",
            seconds: on_threads(&stream, &slices, read_slice)?,
            bytes,
        },
        Floor {
            what: "parse every line as JSON (serde_json, no values built)",
            seconds: on_threads(&stream, &slices, parse_slice)?,
            bytes,
        },
    ];
    if duckdb {
        let ndjson_bytes = std::fs::metadata(&data.ndjson)
            .map_err(|e| e.to_string())?
            .len();
        floors.push(Floor {
            what: "DuckDB reads the NDJSON events with the bench schema (whole process)",
            seconds: duckdb_read(&data.ndjson, threads)?,
            bytes: ndjson_bytes,
        });
    }
    Ok(floors)
}

/// `threads` byte ranges of the file, each starting at a line's start.
fn slices(path: &Path, bytes: u64, threads: usize) -> Result<Vec<(u64, u64)>, String> {
    let mut file = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
    let mut starts = vec![0u64];
    for i in 1..threads as u64 {
        let guess = bytes * i / threads as u64;
        file.seek(SeekFrom::Start(guess))
            .map_err(|e| e.to_string())?;
        let mut rest = Vec::new();
        let skipped = file
            .read_until(b'\n', &mut rest)
            .map_err(|e| e.to_string())? as u64;
        starts.push((guess + skipped).min(bytes));
    }
    starts.push(bytes);
    Ok(starts.windows(2).map(|w| (w[0], w[1])).collect())
}

fn on_threads(
    path: &Path,
    slices: &[(u64, u64)],
    work: fn(&Path, u64, u64) -> Result<u64, String>,
) -> Result<f64, String> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = slices
            .iter()
            .map(|&(start, end)| scope.spawn(move || work(path, start, end)))
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| "a floor thread panicked".to_string())??;
        }
        Ok::<(), String>(())
    })?;
    Ok(started.elapsed().as_secs_f64())
}

fn open_at(path: &Path, start: u64, end: u64) -> Result<impl BufRead, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    Ok(BufReader::with_capacity(1 << 20, file.take(end - start)))
}

/// Lines of the slice, counted.
fn read_slice(path: &Path, start: u64, end: u64) -> Result<u64, String> {
    let mut reader = open_at(path, start, end)?;
    let mut lines = 0;
    loop {
        let buffer = reader.fill_buf().map_err(|e| e.to_string())?;
        if buffer.is_empty() {
            return Ok(lines);
        }
        lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        let consumed = buffer.len();
        reader.consume(consumed);
    }
}

/// Lines of the slice, each parsed.
fn parse_slice(path: &Path, start: u64, end: u64) -> Result<u64, String> {
    let mut reader = open_at(path, start, end)?;
    let mut line = Vec::with_capacity(1 << 20);
    let mut lines = 0;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Ok(lines);
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&line)
            .map_err(|e| format!("line {} of the slice at {start}: {e}", lines + 1))?;
        lines += 1;
    }
}

fn duckdb_read(ndjson: &Path, threads: usize) -> Result<f64, String> {
    let script = format!(
        r#"
import duckdb
con = duckdb.connect()
con.execute("SET threads = {threads}")
con.execute("SET enable_progress_bar = false")
print(con.execute("""
SELECT count(*), sum(version) FROM read_json('{input}', format = 'newline_delimited', columns = {{
    metadata: 'STRUCT(eid VARCHAR, occurred_at VARCHAR)', article_id: 'BIGINT', brand: 'VARCHAR',
    model: 'VARCHAR', version: 'BIGINT', available_qty: 'INTEGER',
    price: 'STRUCT(amount DECIMAL(12,2), currency VARCHAR)', sizes: 'STRUCT(size VARCHAR, qty INTEGER)[]'}})
""").fetchall())
"#,
        input = ndjson.display(),
    );
    let measurement = measure(Command::new("python3").arg("-c").arg(script))?;
    if !measurement.success {
        return Err(format!("duckdb failed: {}", measurement.stderr));
    }
    Ok(measurement.wall)
}
