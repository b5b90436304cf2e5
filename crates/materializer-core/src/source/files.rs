//! The files of a source on disk: which ones are read, in which order, what
//! each holds (recorded Nakadi batches or plain events, one JSON event per
//! line), and their lines.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::SourceError;

const READ_BLOCK: usize = 4 << 20;

/// The extensions of the files a source folder's files are read from.
pub const EXTENSIONS: [&str; 3] = ["jsonl", "ndjson", "json"];

/// The files of a source, in the order they are read: the file itself, or
/// a folder's `*.jsonl`, `*.ndjson` and `*.json` files in name order.
pub(crate) fn list_files(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io = |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let files = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(SourceError::NoRecordings(path.display().to_string()));
    }
    Ok(files)
}

/// What a file of a source holds, told by its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Nakadi stream lines: `{"cursor":{...},"events":[...]}`, one batch a line.
    Recording,
    /// Plain events, one JSON event a line. The file is a partition of its
    /// own (named as the file); an event's offset is its place among the
    /// file's events, from 0, so lines appended later come after the events
    /// a run read.
    Events,
}

/// What `path` holds, judged by its first non-blank line within its first
/// `size` bytes (`Events` for a file without one: nothing is read of it).
/// A first line that is a JSON array, or a JSON value that goes on past the
/// end of its line, fits neither kind: an error names the file.
pub(crate) fn kind_of(path: &Path, size: u64) -> Result<FileKind, SourceError> {
    let mut first = None;
    for_each_line_of(path, 0..size, |line_no, line| {
        first = Some((line_no, line));
        Ok(false)
    })?;
    let Some((line_no, line)) = first else {
        return Ok(FileKind::Events);
    };
    kind_of_line(&line).map_err(|message| SourceError::Recorded {
        path: path.display().to_string(),
        line: line_no,
        message,
    })
}

/// The kind of a file whose first line is `line`, or why it fits neither.
fn kind_of_line(line: &[u8]) -> Result<FileKind, String> {
    if line.starts_with(b"[") {
        return Err(
            "a JSON array: a source file holds one JSON event per line (NDJSON), or recorded \
             Nakadi batches; write each event on a line of its own"
                .into(),
        );
    }
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(object)) => Ok(
            if object
                .get("cursor")
                .is_some_and(serde_json::Value::is_object)
            {
                FileKind::Recording
            } else {
                FileKind::Events
            },
        ),
        Ok(_) => Ok(FileKind::Events),
        Err(e) if e.is_eof() => Err(
            "the JSON value goes on past the end of the line: a source file holds one JSON event \
             per line (NDJSON), or recorded Nakadi batches; write each event on a line of its own"
                .into(),
        ),
        // A broken batch is still a recording (its error names the line);
        // a broken event is rejected like any other.
        Err(_) if starts_with_cursor(line) => Ok(FileKind::Recording),
        Err(_) => Ok(FileKind::Events),
    }
}

/// Whether a line opens with a cursor, as Nakadi writes its batches.
fn starts_with_cursor(line: &[u8]) -> bool {
    let mut rest = line;
    for expected in [&b"{"[..], br#""cursor""#, b":", b"{"] {
        rest = rest.trim_ascii_start();
        match rest.strip_prefix(expected) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    true
}

/// Calls `f` with every non-empty line of the files' byte ranges (1-based
/// line numbers). `f` returns `false` to stop early. A file shorter than its
/// range's end (when the end is not open) is an error: the recording changed
/// under the run.
pub(crate) fn for_each_line(
    files: &[(PathBuf, std::ops::Range<u64>)],
    mut f: impl FnMut(&Path, u64, Bytes) -> Result<bool, SourceError>,
) -> Result<(), SourceError> {
    for (path, range) in files {
        if range.end != u64::MAX {
            let size = std::fs::metadata(path)
                .map_err(|source| SourceError::Io {
                    path: path.display().to_string(),
                    source,
                })?
                .len();
            if size < range.end {
                return Err(SourceError::RecordingShrank {
                    path: path.display().to_string(),
                    planned: range.end,
                    now: size,
                });
            }
        }
        let mut stopped = false;
        for_each_line_of(path, range.clone(), |line_no, line| {
            let go_on = f(path, line_no, line)?;
            stopped = !go_on;
            Ok(go_on)
        })?;
        if stopped {
            break;
        }
    }
    Ok(())
}

/// Calls `f` with every non-empty line of the bytes `range` of a file (line
/// numbers from 1 at the start of the range; a UTF-8 byte order mark at the
/// start of the file is dropped); `f` returns `false` to stop early.
/// Returns the number of lines read, blank ones included.
pub(crate) fn for_each_line_of(
    path: &Path,
    range: std::ops::Range<u64>,
    mut f: impl FnMut(u64, Bytes) -> Result<bool, SourceError>,
) -> Result<u64, SourceError> {
    let io = |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(range.start)).map_err(io)?;
    let mut file = file.take(range.end.saturating_sub(range.start));
    let mut carry = BytesMut::new();
    let mut line_no = 0u64;
    let mut at_start = range.start == 0;
    loop {
        let mut block = Vec::with_capacity(carry.len() + READ_BLOCK);
        block.extend_from_slice(&carry);
        // Read into the block's spare capacity: no zeroing of 4 MiB a block
        // before the file's bytes overwrite it.
        let n = (&mut file)
            .take(READ_BLOCK as u64)
            .read_to_end(&mut block)
            .map_err(io)?;
        let eof = n == 0;
        let block = Bytes::from(block);
        let mut start = 0;
        if at_start && (block.len() >= 3 || eof) {
            // Editors on some systems start a UTF-8 file with a byte order mark.
            if block.starts_with(b"\xEF\xBB\xBF") {
                start = 3;
            }
            at_start = false;
        }
        while let Some(k) = memchr::memchr(b'\n', &block[start..]) {
            line_no += 1;
            let line = trim_line(block.slice(start..start + k));
            start += k + 1;
            if !line.is_empty() && !f(line_no, line)? {
                return Ok(line_no);
            }
        }
        carry = BytesMut::from(&block[start..]);
        if eof {
            if !carry.is_empty() {
                line_no += 1;
                let line = trim_line(carry.freeze());
                if !line.is_empty() && !f(line_no, line)? {
                    return Ok(line_no);
                }
            }
            return Ok(line_no);
        }
    }
}

fn trim_line(line: Bytes) -> Bytes {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(line[start], b' ' | b'\t') {
        start += 1;
    }
    line.slice(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_told_by_its_first_line() {
        let kind = |line: &str| kind_of_line(line.as_bytes());
        assert_eq!(
            kind(r#"{"cursor":{"partition":"0","offset":"1"},"events":[{"a":1}]}"#),
            Ok(FileKind::Recording)
        );
        assert_eq!(
            kind(r#"{"events":[{"a":1}],"cursor":{"partition":"0","offset":"1"}}"#),
            Ok(FileKind::Recording)
        );
        // A broken batch is still a batch; a broken event is an event.
        assert_eq!(
            kind(r#"{ "cursor" : {"partition":"0","offset":"1"},"events":[{,,}]}"#),
            Ok(FileKind::Recording)
        );
        assert_eq!(kind(r#"{"order":"A",,"n":1}"#), Ok(FileKind::Events));
        assert_eq!(kind(r#"{"order":"A","cursor":"x"}"#), Ok(FileKind::Events));
        assert_eq!(kind("42"), Ok(FileKind::Events));
        let array = kind(r#"[{"order":"A"}]"#).unwrap_err();
        assert!(array.starts_with("a JSON array: "), "{array}");
        let spread = kind("{").unwrap_err();
        assert!(
            spread.starts_with("the JSON value goes on past the end of the line"),
            "{spread}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "\u{feff}{\"a\":1}\n{\"a\":2}").unwrap();
        let mut lines = Vec::new();
        let size = std::fs::metadata(&path).unwrap().len();
        for_each_line_of(&path, 0..size, |n, line| {
            lines.push((n, String::from_utf8(line.to_vec()).unwrap()));
            Ok(true)
        })
        .unwrap();
        assert_eq!(
            lines,
            [(1, "{\"a\":1}".to_string()), (2, "{\"a\":2}".to_string())]
        );
    }
}
