//! Recorded batches: files holding Nakadi stream lines exactly as the streaming
//! API sends them, one batch per line, keep-alive lines included.
//!
//! A path is a file or a folder; a folder's `*.jsonl`, `*.ndjson` and `*.json`
//! files are read in name order. Within a partition offsets must grow from line
//! to line, as they do in a stream.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::framing::{self, Batch};
use super::{Offset, PartitionInfo, PartitionRange, SourceError, partition_cmp};

const READ_BLOCK: usize = 4 << 20;

/// Batches recorded in files.
#[derive(Clone, Debug)]
pub struct RecordedSource {
    root: PathBuf,
    files: Vec<PathBuf>,
}

impl RecordedSource {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
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
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("jsonl" | "ndjson" | "json")
                        )
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
        Ok(RecordedSource {
            root: path.to_path_buf(),
            files,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Oldest and newest offsets per partition, read from the cursors.
    pub async fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || scan_partitions(&files))
            .await
            .map_err(|e| SourceError::Io {
                path: "recorded batches".into(),
                source: std::io::Error::other(e),
            })?
    }

    pub fn stream(
        &self,
        ranges: &[PartitionRange],
    ) -> BoxStream<'static, Result<Batch, SourceError>> {
        let files = self.files.clone();
        let root = self.root.clone();
        let starts: HashMap<String, Offset> = ranges
            .iter()
            .map(|r| (r.partition.clone(), r.start.clone()))
            .collect();
        let (tx, rx) = mpsc::channel::<Result<Batch, SourceError>>(64);
        tokio::task::spawn_blocking(move || {
            let mut previous: HashMap<Arc<str>, Offset> = HashMap::new();
            let result = for_each_line(&files, |path, line_no, line| {
                if cursor_partition(&line).is_some_and(|p| !starts.contains_key(p)) {
                    return Ok(true); // a partition this run does not read
                }
                // The events are framed by the decoder, as it decodes them; it
                // also checks that they follow the previous batch.
                let mut batch = framing::parse_head(line)
                    .map_err(|e| recorded_error(path, line_no, &e.to_string()))?;
                let Some(start) = starts.get(&*batch.partition) else {
                    return Ok(true);
                };
                if batch.is_keep_alive() {
                    return Ok(true);
                }
                let first = first_offset(&batch);
                if let Some(last) = previous.get(&batch.partition)
                    && (!first.is_after(last) || !batch.offset.is_after(last))
                {
                    return Err(overlap_error(
                        path,
                        line_no,
                        &batch.offset,
                        &batch.partition,
                        &first,
                        last,
                    ));
                }
                previous.insert(batch.partition.clone(), batch.offset.clone());
                if !start.is_begin() && !batch.offset.is_after(start) {
                    return Ok(true); // consumed by an earlier run
                }
                batch.origin = Some(Arc::from(format!("{}:{line_no}", origin_name(&root, path))));
                Ok(tx.blocking_send(Ok(batch)).is_ok())
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// How a rejected event names its file: relative to the recording's folder,
/// so that the same event is described the same way however the path was given.
fn origin_name(root: &Path, file: &Path) -> String {
    let relative = file
        .strip_prefix(root)
        .ok()
        .filter(|r| !r.as_os_str().is_empty());
    match relative {
        Some(r) => r.display().to_string(),
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string()),
    }
}

fn recorded_error(path: &Path, line: u64, message: &str) -> SourceError {
    SourceError::Recorded {
        path: path.display().to_string(),
        line,
        message: message.to_string(),
    }
}

/// The partition named in a line's cursor, when the line starts with it (as
/// Nakadi writes lines); `None` sends the line to the full parser.
fn cursor_partition(line: &[u8]) -> Option<&str> {
    split_partition(line).map(|(partition, _)| partition)
}

/// The partition of a line that starts with its cursor, and the bytes after
/// the partition's closing quote.
fn split_partition(line: &[u8]) -> Option<(&str, &[u8])> {
    let rest = line.strip_prefix(br#"{"cursor":{"partition":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    let partition = std::str::from_utf8(&rest[..end]).ok()?;
    Some((partition, &rest[end + 1..]))
}

/// The partition and offset of a line that starts with a plain cursor, as
/// Nakadi writes low-level batches: `{"cursor":{"partition":"P","offset":"O"},...`.
fn leading_cursor(line: &[u8]) -> Option<(&str, &str)> {
    let (partition, rest) = split_partition(line)?;
    let rest = rest.strip_prefix(br#","offset":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    let offset = std::str::from_utf8(&rest[..end]).ok()?;
    rest[end + 1..]
        .starts_with(b"}")
        .then_some((partition, offset))
}

/// Files at least this large are scanned in two pieces, on two threads.
const SPLIT_BYTES: u64 = 64 << 20;

/// Oldest and newest offset per partition. The first line of a partition is
/// parsed whole (its first event gives the oldest cursor); later lines only
/// to their cursor, when it leads the line: the events of every line are
/// framed, and checked to follow the previous batch, when they are read.
fn scan_partitions(files: &[PathBuf]) -> Result<Vec<PartitionInfo>, SourceError> {
    scan_partitions_split_from(files, SPLIT_BYTES)
}

/// [`scan_partitions`], splitting files of `split_bytes` or more in two
/// pieces scanned side by side; joining the pieces in order gives what one
/// scan from the top would (the same offsets, the same first error).
fn scan_partitions_split_from(
    files: &[PathBuf],
    split_bytes: u64,
) -> Result<Vec<PartitionInfo>, SourceError> {
    let mut seen: HashMap<String, (Offset, Offset)> = HashMap::new();
    for path in files {
        let pieces = pieces_of(path, split_bytes)?;
        let scans: Vec<Result<PieceScan, SourceError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pieces
                .iter()
                .map(|range| scope.spawn(|| scan_piece(path, range.clone())))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SourceError::Io {
                            path: path.display().to_string(),
                            source: std::io::Error::other("scanning the recording failed"),
                        })
                    })
                })
                .collect()
        });
        let mut lines_before = 0;
        for scan in scans {
            let scan = scan?;
            let lines = scan.lines;
            join_piece(&mut seen, scan)
                .map_err(|(line, message)| recorded_error(path, lines_before + line, &message))?;
            lines_before += lines;
        }
    }
    let mut partitions: Vec<PartitionInfo> = seen
        .into_iter()
        .map(|(partition, (oldest, newest))| PartitionInfo {
            partition,
            oldest_available_offset: oldest,
            newest_available_offset: newest,
        })
        .collect();
    partitions.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
    Ok(partitions)
}

/// What scanning a piece of a file found.
struct PieceScan {
    /// Lines in the piece (all of them, blank ones included).
    lines: u64,
    /// Per partition, in order of first appearance.
    partitions: Vec<(String, PartitionScan)>,
    /// Where each partition is in `partitions`.
    index: HashMap<String, usize>,
    /// The first line that is wrong whatever came before the piece.
    error: Option<(u64, String)>,
}

/// A partition as one piece saw it.
struct PartitionScan {
    /// Its first line in the piece, which only the pieces before can check.
    head: LineHead,
    newest: Offset,
}

struct LineHead {
    line: u64,
    /// The cursor's offset, when the line starts with its cursor.
    leading: Option<Offset>,
    /// (cursor, first event's offset, whether it has events), or why the line
    /// does not parse (an error only if the partition is new there).
    parsed: Result<(Offset, Offset, bool), framing::FramingError>,
}

/// The byte ranges to scan `path` in: two halves split after a newline, or
/// the whole file.
fn pieces_of(path: &Path, split_bytes: u64) -> Result<Vec<std::ops::Range<u64>>, SourceError> {
    let io = |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size < split_bytes.max(2) {
        return Ok(std::iter::once(0..size).collect());
    }
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(size / 2)).map_err(io)?;
    let mut at = size / 2;
    let mut window = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut window).map_err(io)?;
        if n == 0 {
            return Ok(std::iter::once(0..size).collect());
        }
        if let Some(k) = memchr::memchr(b'\n', &window[..n]) {
            let split = at + k as u64 + 1;
            return Ok(vec![0..split, split..size]);
        }
        at += n as u64;
    }
}

/// Scans one piece of a file: every partition's lines after its first one
/// in the piece are checked here, as a scan from the top would check them.
fn scan_piece(path: &Path, range: std::ops::Range<u64>) -> Result<PieceScan, SourceError> {
    let mut scan = PieceScan {
        lines: 0,
        partitions: Vec::new(),
        index: HashMap::new(),
        error: None,
    };
    let lines = for_each_line_of(path, range, |line_no, line| {
        let leading = leading_cursor(&line);
        if let Some((partition, offset)) = leading
            && let Some(newest) = scan.newest_of(partition)
        {
            let offset = Offset::new(offset);
            if let Some(message) = overlap(partition, &offset, None, newest) {
                return stop_at(&mut scan, line_no, message);
            }
            *newest = offset;
            return Ok(true);
        }
        let leading =
            leading.map(|(partition, offset)| (partition.to_string(), Offset::new(offset)));
        let batch = match (framing::parse_line(line), &leading) {
            (Ok(batch), _) => batch,
            // Whether this is an error depends on the pieces before.
            (Err(e), Some((partition, offset))) => {
                let head = LineHead {
                    line: line_no,
                    leading: Some(offset.clone()),
                    parsed: Err(e),
                };
                scan.start(partition.clone(), head, offset.clone());
                return Ok(true);
            }
            (Err(e), None) => return stop_at(&mut scan, line_no, e.to_string()),
        };
        let first = first_offset(&batch);
        let has_events = !batch.events.is_empty();
        match scan.newest_of(&batch.partition) {
            None => {
                let head = LineHead {
                    line: line_no,
                    leading: leading.map(|(_, offset)| offset),
                    parsed: Ok((batch.offset.clone(), first, has_events)),
                };
                scan.start(batch.partition.to_string(), head, batch.offset.clone());
            }
            Some(newest) => {
                let first_event = has_events.then_some(&first);
                if let Some(message) = overlap(&batch.partition, &batch.offset, first_event, newest)
                {
                    return stop_at(&mut scan, line_no, message);
                }
                *newest = batch.offset.clone();
            }
        }
        Ok(true)
    })?;
    scan.lines = lines;
    Ok(scan)
}

impl PieceScan {
    /// The newest offset the piece has of `partition` so far.
    fn newest_of(&mut self, partition: &str) -> Option<&mut Offset> {
        let i = *self.index.get(partition)?;
        Some(&mut self.partitions[i].1.newest)
    }

    /// Records the first line of `partition` in the piece.
    fn start(&mut self, partition: String, head: LineHead, newest: Offset) {
        self.index.insert(partition.clone(), self.partitions.len());
        self.partitions
            .push((partition, PartitionScan { head, newest }));
    }
}

/// Why a batch of `partition` with this cursor (and first event, when it has
/// events) cannot follow a batch that ended at `newest`; `None` when it can.
fn overlap(
    partition: &str,
    cursor: &Offset,
    first_event: Option<&Offset>,
    newest: &Offset,
) -> Option<String> {
    let goes_back = cursor.nakadi_cmp(newest) == std::cmp::Ordering::Less
        || first_event.is_some_and(|first| !first.is_after(newest));
    goes_back
        .then(|| framing::overlap_message(cursor, partition, first_event.unwrap_or(cursor), newest))
}

/// Ends a piece's scan at a line that is wrong whatever came before.
fn stop_at(scan: &mut PieceScan, line: u64, message: String) -> Result<bool, SourceError> {
    scan.error = Some((line, message));
    Ok(false)
}

/// Adds a piece's partitions to what the pieces before it found, checking
/// each partition's first line in the piece against them. The error is the
/// piece's first wrong line (its number within the piece).
fn join_piece(
    seen: &mut HashMap<String, (Offset, Offset)>,
    scan: PieceScan,
) -> Result<(), (u64, String)> {
    let mut errors: Vec<(u64, String)> = scan.error.into_iter().collect();
    for (partition, part) in scan.partitions {
        let head = part.head;
        match seen.get_mut(&partition) {
            Some((_, newest)) => {
                let wrong = match (&head.leading, &head.parsed) {
                    (Some(offset), _) => overlap(&partition, offset, None, newest),
                    (None, Ok((cursor, first, has_events))) => {
                        overlap(&partition, cursor, has_events.then_some(first), newest)
                    }
                    (None, Err(error)) => Some(error.to_string()),
                };
                match wrong {
                    Some(message) => errors.push((head.line, message)),
                    None => *newest = part.newest,
                }
            }
            None => match head.parsed {
                Ok((_, first, has_events)) => {
                    // The offset before the first recorded event is the oldest cursor.
                    let oldest = first
                        .minus(u64::from(has_events))
                        .unwrap_or_else(Offset::begin);
                    seen.insert(partition, (oldest, part.newest));
                }
                Err(error) => errors.push((head.line, error.to_string())),
            },
        }
    }
    match errors.into_iter().min_by_key(|(line, _)| *line) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Offset of a batch's first event (its cursor when it has none, or when its
/// events are not framed yet).
fn first_offset(batch: &Batch) -> Offset {
    if batch.events.is_empty() {
        batch.offset.clone()
    } else {
        batch
            .event_offset(0)
            .unwrap_or_else(|| batch.offset.clone())
    }
}

fn overlap_error(
    path: &Path,
    line_no: u64,
    offset: &Offset,
    partition: &str,
    first: &Offset,
    previous: &Offset,
) -> SourceError {
    recorded_error(
        path,
        line_no,
        &framing::overlap_message(offset, partition, first, previous),
    )
}

/// Calls `f` with every non-empty line of the files (1-based line numbers).
/// `f` returns `false` to stop early.
fn for_each_line(
    files: &[PathBuf],
    mut f: impl FnMut(&Path, u64, Bytes) -> Result<bool, SourceError>,
) -> Result<(), SourceError> {
    for path in files {
        let mut stopped = false;
        for_each_line_of(path, 0..u64::MAX, |line_no, line| {
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
/// numbers from 1 at the start of the range); `f` returns `false` to stop
/// early. Returns the number of lines read, blank ones included.
fn for_each_line_of(
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
    loop {
        let mut block = BytesMut::with_capacity(carry.len() + READ_BLOCK);
        block.extend_from_slice(&carry);
        let filled = block.len();
        block.resize(filled + READ_BLOCK, 0);
        let n = read_full(&mut file, &mut block[filled..]).map_err(io)?;
        block.truncate(filled + n);
        let eof = n == 0;
        let block = block.freeze();
        let mut start = 0;
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

fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    while total < buf.len() {
        match file.read(&mut buf[total..])? {
            0 => break,
            n => total += n,
        }
    }
    Ok(total)
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
    use futures::StreamExt;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) {
        let mut f = File::create(dir.join(name)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn partitions_and_batches_from_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            concat!(
                r#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000001"},"events":[{"x":1},{"x":2}]}"#,
                "\n\n",
                r#"{"cursor":{"partition":"1","offset":"001-0001-000000000000000000"},"events":[{"x":3}]}"#,
                "\r\n",
                r#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000001"}}"#,
                "\n"
            ),
        );
        write(
            dir.path(),
            "b.jsonl",
            r#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000002"},"events":[{"x":4}]}"#,
        );
        let source = RecordedSource::open(dir.path()).unwrap();
        let parts = source.partitions().await.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].partition, "0");
        assert_eq!(
            parts[0].newest_available_offset.as_str(),
            "001-0001-000000000000000002"
        );
        assert!(parts[1].oldest_available_offset.is_begin());

        let ranges = vec![PartitionRange {
            partition: "0".into(),
            start: Offset::new("001-0001-000000000000000001"),
            end: Offset::new("001-0001-000000000000000002"),
        }];
        let mut batches: Vec<Batch> = source.stream(&ranges).map(|b| b.unwrap()).collect().await;
        assert_eq!(batches.len(), 1);
        // Lines that start with their cursor come unframed; the decoder frames them.
        assert!(batches[0].unframed.is_some());
        batches[0].frame().unwrap();
        assert_eq!(batches[0].event_bytes(0), br#"{"x":4}"#);
        assert_eq!(batches[0].origin.as_deref(), Some("b.jsonl:1"));
    }

    /// The batches read from partition 0, from the beginning to `end`.
    async fn read_all(source: &RecordedSource, end: &str) -> Vec<Result<Batch, SourceError>> {
        let ranges = [PartitionRange {
            partition: "0".into(),
            start: Offset::begin(),
            end: Offset::new(end),
        }];
        source.stream(&ranges).collect().await
    }

    #[tokio::test]
    async fn a_broken_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            "{\"cursor\":{\"partition\":\"0\",\"offset\":\"1\"},\"events\":[{}]}\n{\"cursor\":{\"partition\":\"0\",\"offset\":\"2\"},\"events\":[{\n",
        );
        let source = RecordedSource::open(dir.path()).unwrap();
        // The cursors are fine; the events of line 2 are not. They are framed
        // by the decoder, and the line's origin says where they came from.
        let partitions = source.partitions().await.unwrap();
        assert_eq!(partitions[0].newest_available_offset, Offset::new("2"));
        let batches = read_all(&source, "2").await;
        let mut second = batches[1].as_ref().unwrap().clone();
        assert_eq!(second.origin.as_deref(), Some("a.jsonl:2"));
        assert!(second.unframed.is_some());
        assert!(second.frame().is_err());
        // A line that does not start with its cursor is parsed whole at once.
        write(
            dir.path(),
            "a.jsonl",
            "{\"cursor\":{\"partition\":\"0\",\"offset\":\"1\"},\"events\":[{}]}\n{\"events\":[{},\"cursor\":{\"partition\":\"0\",\"offset\":\"2\"}}\n",
        );
        let err = source.partitions().await.unwrap_err().to_string();
        assert!(err.contains("a.jsonl:2:"), "{err}");
    }

    #[tokio::test]
    async fn batches_whose_cursors_do_not_advance_are_refused_when_read() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            "{\"cursor\":{\"partition\":\"0\",\"offset\":\"5\"},\"events\":[{},{}]}\n{\"cursor\":{\"partition\":\"0\",\"offset\":\"5\"},\"events\":[{}]}\n",
        );
        let source = RecordedSource::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let batches = read_all(&source, "5").await;
        let err = batches.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(
            err.contains("a.jsonl:2:") && err.contains("overlaps the previous batch"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn offsets_going_back_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            "{\"cursor\":{\"partition\":\"0\",\"offset\":\"5\"},\"events\":[{}]}\n{\"cursor\":{\"partition\":\"0\",\"offset\":\"4\"},\"events\":[{}]}\n",
        );
        let err = RecordedSource::open(dir.path())
            .unwrap()
            .partitions()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2:") && err.contains("overlaps the previous batch"),
            "{err}"
        );
    }

    /// Lines of a recording of three partitions: batches of two events, a
    /// keep-alive line now and then, a blank line, lines written without a
    /// leading cursor.
    fn recording_lines() -> Vec<String> {
        let mut next = [0u64; 3];
        let mut lines = Vec::new();
        for i in 0..30u64 {
            let p = (i * 7 % 3) as usize;
            let line = if i % 11 == 5 {
                format!(
                    r#"{{"cursor":{{"partition":"{p}","offset":"001-0001-{:018}"}}}}"#,
                    next[p]
                )
            } else {
                next[p] += 2;
                let events = format!(r#"[{{"x":{i}}},{{"x":{}}}]"#, i + 100);
                if i % 4 == 3 {
                    format!(
                        r#"{{"events":{events},"cursor":{{"offset":"001-0001-{:018}","partition":"{p}"}}}}"#,
                        next[p]
                    )
                } else {
                    format!(
                        r#"{{"cursor":{{"partition":"{p}","offset":"001-0001-{:018}"}},"events":{events}}}"#,
                        next[p]
                    )
                }
            };
            lines.push(line);
            if i == 17 {
                lines.push(String::new());
            }
        }
        lines
    }

    /// Scanned in two pieces, a file gives what one scan from the top gives:
    /// the same offsets, or the same first error, wherever a line goes wrong.
    #[test]
    fn a_file_scanned_in_two_pieces_gives_what_one_scan_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let both = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let files = vec![path.clone()];
            let whole = scan_partitions_split_from(&files, u64::MAX).map_err(|e| e.to_string());
            let pieces = scan_partitions_split_from(&files, 1).map_err(|e| e.to_string());
            assert_eq!(pieces_of(&path, 1).unwrap().len(), 2);
            (whole, pieces)
        };
        let lines = recording_lines();
        let (whole, pieces) = both(&(lines.join("\n") + "\n"));
        assert_eq!(whole.as_ref().map(Vec::len), Ok(3));
        assert_eq!(pieces, whole);
        let mut errors_in_the_second_piece = 0;
        for broken in 0..lines.len() {
            if lines[broken].is_empty() {
                continue;
            }
            // An offset going back, a line cut short.
            for change in [
                lines[broken].replacen(r#""offset":"0"#, r#""offset":""#, 1),
                lines[broken][..lines[broken].len() / 2].to_string(),
            ] {
                let mut changed = lines.clone();
                changed[broken] = change;
                let (whole, pieces) = both(&(changed.join("\n") + "\n"));
                assert_eq!(pieces, whole, "line {}", broken + 1);
                if whole.is_err() && broken >= lines.len() / 2 {
                    errors_in_the_second_piece += 1;
                }
            }
        }
        assert!(
            errors_in_the_second_piece > 10,
            "{errors_in_the_second_piece}"
        );
    }
}
