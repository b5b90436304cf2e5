//! The input of a scale: the events generated once per scale and seed
//! (NDJSON for DuckDB, stream lines for materializer, linked per topic for
//! the Nakadi-compatible server), and the bench topics every run reads.

use std::path::{Path, PathBuf};

use crate::options::Options;
use crate::{Case, SEED, generator};

/// One scale's generated input.
pub(crate) struct Dataset {
    pub(crate) bytes: u64,
    pub(crate) ndjson: PathBuf,
    /// The recorded stream lines, one file.
    pub(crate) stream: PathBuf,
    pub(crate) recordings: PathBuf,
}

pub(crate) fn dataset(options: &Options, events: u64) -> Result<Dataset, String> {
    let spread = if options.random_partitions {
        "-random"
    } else {
        ""
    };
    let dir = options.data.join(format!("{events}-seed{SEED}{spread}"));
    let ndjson = dir.join("events.ndjson");
    let stream = dir.join("stream").join("events.jsonl");
    let done = dir.join("complete");
    if !done.exists() {
        eprintln!("generating {events} events into {}", dir.display());
        std::fs::create_dir_all(stream.parent().unwrap_or(&dir)).map_err(|e| e.to_string())?;
        let stats = generator::write_files(
            events,
            SEED,
            &ndjson,
            &stream,
            500,
            options.random_partitions,
        )
        .map_err(|e| format!("generating events: {e}"))?;
        eprintln!(
            "generated {} events, {:.1} MB, {} articles, {} late, {} size rows",
            stats.events,
            stats.bytes as f64 / 1e6,
            stats.articles,
            stats.out_of_order,
            stats.size_rows
        );
        std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    }
    let bytes = std::fs::metadata(&ndjson).map_err(|e| e.to_string())?.len();
    // The Nakadi-compatible server finds a topic's recordings in a folder
    // named for the topic: one link per bench topic.
    let recordings = dir.join("recordings");
    std::fs::create_dir_all(&recordings).map_err(|e| e.to_string())?;
    for case in Case::ALL {
        let link = recordings.join(case.topic());
        if !link.exists() {
            std::os::unix::fs::symlink(dir.join("stream"), &link).map_err(|e| e.to_string())?;
        }
    }
    Ok(Dataset {
        bytes,
        ndjson,
        stream,
        recordings,
    })
}

/// The bench topics: the same mapping as the DuckDB script, written as a user
/// writes a topic: the warehouse history (OLDER files) is on, as by default,
/// although the script keeps no older versions; KEYS files and the key state
/// are written as in every run. `compact_csv_no_history` switches the history
/// off and shows its cost.
pub(crate) fn write_topics(sql_dir: &Path) -> Result<(), String> {
    let schema = include_str!("schema.json");
    for case in Case::ALL {
        let dir = sql_dir.join(case.topic());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let format = if case.parquet() { "parquet" } else { "csv" };
        let toml = format!(
            "event_type = \"bench.{}\"\npartitioning_key = \"article_id\"\nordering_key = \"version\"\n\
             compact = {}\n\n[output]\nformat = \"{format}\"\n{}",
            case.name(),
            case.compact(),
            if case.history() {
                ""
            } else {
                "\n[warehouse]\nhistory = false\n"
            },
        );
        std::fs::write(dir.join("topic.toml"), toml).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("schema.json"),
            schema.replace("bench.event", &format!("bench.{}", case.name())),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("mapping.sql"), include_str!("mapping.sql"))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
