//! Making a recording from events: Nakadi stream lines, as a run of the
//! recording reads them, continuing the offsets the recording's folder
//! already holds so that a recording can grow run after run.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::files::{EXTENSIONS, FileKind, for_each_line_of, kind_of, list_files};
use super::framing;
use super::{Offset, SourceError, partition_cmp};

/// The offset of a partition's first event in a new recording.
pub const FIRST_OFFSET: &str = "001-0001-000000000000000000";

/// Where a recording written to a file goes on: per partition, the newest
/// offset the file's folder holds and the file that holds it.
#[derive(Debug, Default)]
pub struct Recorded {
    newest: BTreeMap<String, (Offset, PathBuf)>,
}

impl Recorded {
    /// What the recordings in `file`'s folder (`file` included, when it
    /// exists) hold. Files of plain events are not recordings and are left
    /// alone.
    pub fn around(file: &Path) -> Result<Recorded, SourceError> {
        let folder = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut files = match list_files(&folder) {
            Ok(files) => files,
            Err(SourceError::NoRecordings(_)) => Vec::new(),
            Err(SourceError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        if file.is_file() && !files.iter().any(|f| same_file(f, file)) {
            files.push(file.to_path_buf());
        }
        let mut recorded = Recorded::default();
        for path in files {
            let size = std::fs::metadata(&path)
                .map_err(|source| SourceError::Io {
                    path: path.display().to_string(),
                    source,
                })?
                .len();
            if kind_of(&path, size)? != FileKind::Recording {
                continue;
            }
            for_each_line_of(&path, 0..size, |line_no, line| {
                let batch = framing::parse_head(line).map_err(|e| SourceError::Recorded {
                    path: path.display().to_string(),
                    line: line_no,
                    message: format!("not a recorded batch: {e}"),
                })?;
                let newer = recorded
                    .newest
                    .get(&*batch.partition)
                    .is_none_or(|(o, _)| batch.offset.is_after(o));
                if newer {
                    recorded.newest.insert(
                        batch.partition.to_string(),
                        (batch.offset.clone(), path.clone()),
                    );
                }
                Ok(true)
            })?;
        }
        Ok(recorded)
    }

    /// The offset of the next event of `partition` appended to `file`, or
    /// why it cannot go there: a run reads a folder's files in name order,
    /// so a partition's events cannot go on in a file that sorts before the
    /// one holding its newest.
    pub fn next_offset(&self, partition: &str, file: &Path) -> Result<Offset, String> {
        let Some((newest, holder)) = self.newest.get(partition) else {
            return Ok(Offset::new(FIRST_OFFSET));
        };
        if !same_file(holder, file) && file.file_name() < holder.file_name() {
            return Err(format!(
                "partition {partition} goes on in {}, which a run reads after {}: record into {} \
                 (or a file whose name sorts after it)",
                holder.display(),
                file.display(),
                holder.display()
            ));
        }
        newest.plus(1).ok_or_else(|| {
            format!(
                "the newest offset of partition {partition}, {newest} in {}, is not a number a \
                 next one can follow",
                holder.display()
            )
        })
    }

    /// The partitions held, in partition order, with their newest offsets.
    pub fn partitions(&self) -> Vec<(&str, &Offset)> {
        let mut partitions: Vec<(&str, &Offset)> = self
            .newest
            .iter()
            .map(|(p, (o, _))| (p.as_str(), o))
            .collect();
        partitions.sort_by(|a, b| partition_cmp(a.0, b.0));
        partitions
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Whether a file has bytes after its last newline.
fn ends_open(file: &mut std::fs::File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// One stream line: `events` (each one JSON value, in order) as a batch of
/// `partition` whose first event has offset `first`. Returns the line (with
/// its newline) and the offset of its last event.
pub fn batch_line(partition: &str, first: &Offset, events: &[Bytes]) -> Option<(Vec<u8>, Offset)> {
    let last = first.plus(events.len().checked_sub(1)? as u64)?;
    let cursor = serde_json::json!({"partition": partition, "offset": last.as_str()});
    let mut line = format!(r#"{{"cursor":{cursor},"events":["#).into_bytes();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(event);
    }
    line.extend_from_slice(b"]}\n");
    Some((line, last))
}

/// The events a batch line holds at most when `record` is not told.
pub const BATCH_EVENTS: usize = 100;

/// What [`record`] appended to a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvents {
    /// The recording file written.
    pub file: PathBuf,
    pub partition: String,
    pub events: u64,
    pub batches: u64,
    /// The offsets of the first and the last event appended (none for a
    /// file without events).
    pub offsets: Option<(Offset, Offset)>,
}

/// Appends the events of `events` (a file of plain events, one JSON event a
/// line) to the recording `into` as batches of at most `batch_events` events
/// of `partition`, their offsets going on after the newest the recordings
/// beside `into` hold for the partition. `into` may be a folder (a path
/// without a `.jsonl`, `.ndjson` or `.json` name is one): the recording is
/// its `stream.jsonl`. Nothing is written when a line is not a
/// JSON event.
pub fn record(
    events: &Path,
    into: &Path,
    partition: &str,
    batch_events: usize,
) -> Result<RecordedEvents, SourceError> {
    let names_a_file = into
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e));
    let into = if into.is_dir() || !names_a_file {
        into.join("stream.jsonl")
    } else {
        into.to_path_buf()
    };
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SourceError::Io { path, source }
    };
    let size = std::fs::metadata(events).map_err(io(events))?.len();
    if kind_of(events, size)? == FileKind::Recording {
        return Err(SourceError::Recorded {
            path: events.display().to_string(),
            line: 1,
            message:
                "already a recording (Nakadi batches with cursors): pass it to --source as it is"
                    .into(),
        });
    }
    let recorded = Recorded::around(&into)?;
    let first =
        recorded
            .next_offset(partition, &into)
            .map_err(|message| SourceError::Partition {
                partition: partition.to_string(),
                message,
            })?;
    let mut lines: Vec<Bytes> = Vec::new();
    for_each_line_of(events, 0..size, |line_no, line| {
        serde_json::from_slice::<serde_json::Value>(&line).map_err(|e| SourceError::Recorded {
            path: events.display().to_string(),
            line: line_no,
            message: format!("not a JSON event: {e}"),
        })?;
        lines.push(line);
        Ok(true)
    })?;
    let mut out = Vec::new();
    let mut next = first.clone();
    let mut last = None;
    let mut batches = 0u64;
    for chunk in lines.chunks(batch_events.max(1)) {
        let too_far = || SourceError::Partition {
            partition: partition.to_string(),
            message: format!("offset {next} is as far as offsets of this form go"),
        };
        let (line, end) = batch_line(partition, &next, chunk).ok_or_else(too_far)?;
        out.extend_from_slice(&line);
        next = end.plus(1).ok_or_else(too_far)?;
        last = Some(end);
        batches += 1;
    }
    let recorded_events = RecordedEvents {
        file: into.clone(),
        partition: partition.to_string(),
        events: lines.len() as u64,
        batches,
        offsets: last.map(|last| (first, last)),
    };
    if batches == 0 {
        return Ok(recorded_events); // nothing to write, not even an empty file
    }
    if let Some(parent) = into.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&into)
        .map_err(io(&into))?;
    // A recording that does not end its last line would glue the first
    // new batch to it.
    if ends_open(&mut file).map_err(io(&into))? {
        out.insert(0, b'\n');
    }
    file.write_all(&out).map_err(io(&into))?;
    Ok(recorded_events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_its_last_event_in_its_cursor() {
        let events = [Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"[2]")];
        let (line, last) = batch_line("0", &Offset::new(FIRST_OFFSET), &events).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"cursor\":{\"partition\":\"0\",\"offset\":\"001-0001-000000000000000001\"},\
             \"events\":[{\"a\":1},[2]]}\n"
        );
        assert_eq!(last.as_str(), "001-0001-000000000000000001");
        assert!(batch_line("0", &Offset::new(FIRST_OFFSET), &[]).is_none());
    }

    #[test]
    fn a_file_without_events_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("none.jsonl");
        std::fs::write(&events, "\n\n").unwrap();
        let recorded = record(&events, &dir.path().join("rec"), "0", BATCH_EVENTS).unwrap();
        assert_eq!(recorded.events, 0);
        assert_eq!(recorded.offsets, None);
        assert!(!dir.path().join("rec").exists());
    }

    #[test]
    fn offsets_go_on_after_the_newest_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.jsonl"),
            "{\"cursor\":{\"partition\":\"0\",\"offset\":\"001-0001-000000000000000004\"},\"events\":[{}]}\n",
        )
        .unwrap();
        // Plain events beside it are not a recording.
        std::fs::write(dir.path().join("events.jsonl"), "{\"a\":1}\n").unwrap();
        let recorded = Recorded::around(&dir.path().join("c.jsonl")).unwrap();
        assert_eq!(
            recorded
                .next_offset("0", &dir.path().join("c.jsonl"))
                .unwrap()
                .as_str(),
            "001-0001-000000000000000005"
        );
        assert_eq!(
            recorded
                .next_offset("1", &dir.path().join("c.jsonl"))
                .unwrap()
                .as_str(),
            FIRST_OFFSET
        );
        let err = recorded
            .next_offset("0", &dir.path().join("a.jsonl"))
            .unwrap_err();
        assert!(
            err.starts_with("partition 0 goes on in ") && err.contains("b.jsonl"),
            "{err}"
        );
        // A folder that does not exist yet holds nothing.
        let empty = Recorded::around(&dir.path().join("new/stream.jsonl")).unwrap();
        assert!(empty.partitions().is_empty());
    }
}
