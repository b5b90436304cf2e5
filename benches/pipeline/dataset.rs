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
    // The folder is named for the generator's source too: a changed
    // generator writes a new folder instead of reusing what an earlier one
    // wrote.
    let name = format!(
        "{events}-seed{SEED}{spread}-{:016x}",
        fingerprint(include_str!("generator.rs"))
    );
    let dir = options.data.join(&name);
    let ndjson = dir.join("events.ndjson");
    let recordings = dir.join("recordings");
    if !dir.join("complete").exists() {
        // Folders an earlier generator wrote are left (a build of an earlier
        // commit may still read them): named here, to be removed by hand.
        let prefix = format!("{events}-seed{SEED}{spread}");
        for entry in std::fs::read_dir(&options.data)
            .into_iter()
            .flatten()
            .flatten()
        {
            let other = entry.file_name().to_string_lossy().into_owned();
            // The same scale, seed and spread: no suffix (before the folders
            // were named for the generator) or another generator's.
            let earlier = other != name
                && other.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.is_empty() || (rest.starts_with('-') && !rest.starts_with("-random"))
                });
            if earlier {
                eprintln!(
                    "{} holds these events as an earlier generator wrote them; remove it when no build reads it",
                    entry.path().display()
                );
            }
        }
        // Written in a folder of this process's own and renamed into place
        // whole: a process reading the data never sees it half written.
        let scratch = options.data.join(format!(".{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let stream = scratch.join("stream").join("events.jsonl");
        eprintln!("generating {events} events into {}", dir.display());
        std::fs::create_dir_all(stream.parent().unwrap_or(&scratch)).map_err(|e| e.to_string())?;
        let stats = generator::write_files(
            events,
            SEED,
            &scratch.join("events.ndjson"),
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
        // The Nakadi-compatible server finds a topic's recordings in a
        // folder named for the topic: one link per bench topic.
        std::fs::create_dir_all(scratch.join("recordings")).map_err(|e| e.to_string())?;
        for case in Case::ALL {
            std::os::unix::fs::symlink(
                dir.join("stream"),
                scratch.join("recordings").join(case.topic()),
            )
            .map_err(|e| e.to_string())?;
        }
        std::fs::write(scratch.join("complete"), b"").map_err(|e| e.to_string())?;
        if dir.exists() && !dir.join("complete").exists() {
            // Left half written by a process that wrote in place.
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
        }
        if let Err(e) = std::fs::rename(&scratch, &dir) {
            // Another process put the same data in place first.
            let _ = std::fs::remove_dir_all(&scratch);
            if !dir.join("complete").exists() {
                return Err(format!("{}: {e}", dir.display()));
            }
        }
    }
    // A case added since the data was generated gets its link too.
    for case in Case::ALL {
        let link = recordings.join(case.topic());
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(dir.join("stream"), &link).map_err(|e| e.to_string())?;
        }
    }
    let bytes = std::fs::metadata(&ndjson).map_err(|e| e.to_string())?.len();
    Ok(Dataset {
        bytes,
        ndjson,
        stream: dir.join("stream").join("events.jsonl"),
        recordings,
    })
}

/// FNV-1a of `text`: a name that changes when the text does.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
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
