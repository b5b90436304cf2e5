//! A source on disk: files holding Nakadi stream lines exactly as the
//! streaming API sends them (one batch per line, keep-alive lines included),
//! or plain events, one JSON event per line.
//!
//! A path is a file or a folder; a folder's `*.jsonl`, `*.ndjson` and `*.json`
//! files are read in name order. Each file's first line tells what it holds
//! ([`FileKind`]). Within a partition of a recording offsets must grow from
//! line to line, as they do in a stream. A file of plain events is a
//! partition of its own, named as the file, and an event's offset is its
//! place among the file's events (0, 1, ...): the same events have the same
//! offsets in every run, and lines appended to the file are read next time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::files::{FileKind, for_each_line, kind_of, list_files};
use super::framing::{self, Batch};
use super::{Offset, PartitionRange, SourceError};

/// How much of a recording a run reads: its files and their sizes when the
/// run was planned. Fixed in the plan, it makes a retried attempt read the
/// same lines however the recording grew since; what was added is the next
/// run's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingExtent {
    pub files: Vec<RecordedFile>,
}

/// One file of a [`RecordingExtent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// Relative to the recording's folder (the file's name when the
    /// recording is one file).
    pub name: String,
    pub bytes: u64,
}

impl RecordingExtent {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Batches recorded in files.
#[derive(Clone, Debug)]
pub struct RecordedSource {
    root: PathBuf,
    files: Vec<PathBuf>,
}

impl RecordedSource {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        Ok(RecordedSource {
            root: path.to_path_buf(),
            files: list_files(path)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The recording's files and their sizes now, found without reading
    /// them.
    pub fn extent(&self) -> Result<RecordingExtent, SourceError> {
        let files = list_files(&self.root)?
            .into_iter()
            .map(|path| {
                let bytes = std::fs::metadata(&path)
                    .map_err(|source| SourceError::Io {
                        path: path.display().to_string(),
                        source,
                    })?
                    .len();
                Ok(RecordedFile {
                    name: origin_name(&self.root, &path),
                    bytes,
                })
            })
            .collect::<Result<_, SourceError>>()?;
        Ok(RecordingExtent { files })
    }

    /// Batches of the given partitions, each from after its start cursor on,
    /// to the end of the files.
    pub fn stream(
        &self,
        ranges: &[PartitionRange],
    ) -> BoxStream<'static, Result<Batch, SourceError>> {
        let starts: HashMap<String, Offset> = ranges
            .iter()
            .map(|r| (r.partition.clone(), r.start.clone()))
            .collect();
        let files = self
            .files
            .iter()
            .map(|path| (path.clone(), 0..u64::MAX))
            .collect();
        self.send_batches(files, move |partition| starts.get(partition).cloned(), None)
    }

    /// Batches of every partition the recording holds up to `extent`, each
    /// from after its cursor in `starts` on (from its oldest event when it
    /// has none there). `read` counts the recording's bytes read.
    pub fn stream_extent(
        &self,
        starts: HashMap<String, Offset>,
        extent: &RecordingExtent,
        read: Arc<AtomicU64>,
    ) -> BoxStream<'static, Result<Batch, SourceError>> {
        let files = extent
            .files
            .iter()
            .map(|file| (self.path_of(&file.name), 0..file.bytes))
            .collect();
        self.send_batches(
            files,
            move |partition| Some(starts.get(partition).cloned().unwrap_or_else(Offset::begin)),
            Some(read),
        )
    }

    /// Where the file an extent names is.
    fn path_of(&self, name: &str) -> PathBuf {
        if self.root.is_dir() {
            self.root.join(name)
        } else {
            self.root.clone()
        }
    }

    /// Streams the batches of the files' byte ranges on a blocking thread:
    /// each line of a partition that `start_of` gives a start cursor, after
    /// that cursor. Checks that the files hold their ranges (a recording
    /// grows, it never shrinks) and that offsets advance.
    fn send_batches(
        &self,
        files: Vec<(PathBuf, std::ops::Range<u64>)>,
        start_of: impl Fn(&str) -> Option<Offset> + Send + 'static,
        read: Option<Arc<AtomicU64>>,
    ) -> BoxStream<'static, Result<Batch, SourceError>> {
        let root = self.root.clone();
        let (tx, rx) = mpsc::channel::<Result<Batch, SourceError>>(64);
        tokio::task::spawn_blocking(move || {
            let mut previous: HashMap<Arc<str>, Offset> = HashMap::new();
            let mut starts: HashMap<Arc<str>, Option<Offset>> = HashMap::new();
            let mut file: Option<OpenFile> = None;
            let result = for_each_line(&files, |path, line_no, line| {
                if let Some(read) = &read {
                    read.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                }
                if file.as_ref().is_none_or(|f| f.path != path) {
                    file = Some(OpenFile::new(&root, path, &files)?);
                }
                let Some(file) = file.as_mut() else {
                    return Ok(true);
                };
                if file.kind == FileKind::Events {
                    let Some(batch) = file.event(line_no, line, &start_of) else {
                        return Ok(true); // read by an earlier run, or not this run's
                    };
                    return Ok(tx.blocking_send(Ok(batch)).is_ok());
                }
                if cursor_partition(&line).is_some_and(|p| start_of(p).is_none()) {
                    return Ok(true); // a partition this run does not read
                }
                // The events are framed by the decoder, as it decodes them; it
                // also checks that they follow the previous batch.
                let mut batch = framing::parse_head(line)
                    .map_err(|e| recorded_error(path, line_no, &not_a_batch(&e)))?;
                let start = starts
                    .entry(batch.partition.clone())
                    .or_insert_with(|| start_of(&batch.partition));
                let Some(start) = start else {
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
                batch.origin = Some(Arc::from(format!("{}:{line_no}", file.name)));
                Ok(tx.blocking_send(Ok(batch)).is_ok())
            });
            match result {
                // Blank lines and spaces count too: the whole extent is read.
                Ok(()) => {
                    if let Some(read) = &read {
                        let total = files.iter().map(|(_, r)| r.end - r.start).sum();
                        read.fetch_max(total, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                }
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// The file whose lines are being read.
struct OpenFile {
    path: PathBuf,
    /// How messages and rejected events name it; the partition of its
    /// events when it holds plain ones.
    name: Arc<str>,
    kind: FileKind,
    /// Plain events: the offset of the next one.
    next: u64,
    /// Plain events: the partition's start cursor (`None`: not read by this run).
    start: Option<Option<Offset>>,
}

impl OpenFile {
    fn new(
        root: &Path,
        path: &Path,
        files: &[(PathBuf, std::ops::Range<u64>)],
    ) -> Result<OpenFile, SourceError> {
        let size = files
            .iter()
            .find(|(p, _)| p == path)
            .map_or(u64::MAX, |(_, range)| range.end);
        Ok(OpenFile {
            path: path.to_path_buf(),
            name: Arc::from(origin_name(root, path)),
            kind: kind_of(path, size)?,
            next: 0,
            start: None,
        })
    }

    /// The batch of one plain event: the line's, unless an earlier run read
    /// it or the run does not read this file's partition.
    fn event(
        &mut self,
        line_no: u64,
        line: Bytes,
        start_of: &impl Fn(&str) -> Option<Offset>,
    ) -> Option<Batch> {
        let offset = Offset::new(self.next.to_string());
        self.next += 1;
        let start = self
            .start
            .get_or_insert_with(|| start_of(&self.name))
            .as_ref()?;
        if !start.is_begin() && !offset.is_after(start) {
            return None;
        }
        Some(Batch {
            partition: self.name.clone(),
            offset,
            event_type: None,
            cursor_token: None,
            // One event, the whole line.
            events: std::iter::once(0..line.len()).collect(),
            line,
            unframed: None,
            origin: Some(Arc::from(format!("{}:{line_no}", self.name))),
        })
    }
}

/// Why a line of a recording is not a batch, and what a batch looks like.
fn not_a_batch(error: &framing::FramingError) -> String {
    format!(
        "not a recorded batch ({error}): the file's first line is a batch, so every line must be \
         one, `{{\"cursor\":{{\"partition\":...,\"offset\":...}},\"events\":[...]}}`; plain events \
         (one JSON event per line) go in files of their own"
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::fs::File;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) {
        let mut f = File::create(dir.join(name)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn batches_of_a_partition_after_its_start_from_a_folder() {
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

    /// A stream up to an extent reads the files as far as it says, every
    /// partition (from `BEGIN` without a start cursor), and counts the bytes.
    #[tokio::test]
    async fn a_stream_reads_the_extent_of_every_partition_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let line = |p: u32, offset: u32, x: u32| {
            format!(
                r#"{{"cursor":{{"partition":"{p}","offset":"001-0001-{offset:018}"}},"events":[{{"x":{x}}}]}}"#
            ) + "\n"
        };
        write(dir.path(), "a.jsonl", &(line(0, 0, 1) + &line(1, 0, 2)));
        write(dir.path(), "b.jsonl", &(line(0, 1, 3) + &line(2, 0, 4)));
        let source = RecordedSource::open(dir.path()).unwrap();
        let extent = source.extent().unwrap();
        let names: Vec<&str> = extent.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.jsonl", "b.jsonl"]);
        // The recording grows after the plan: the stream stops where it was.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("b.jsonl"))
            .unwrap()
            .write_all(line(0, 2, 5).as_bytes())
            .unwrap();
        write(dir.path(), "c.jsonl", &line(3, 0, 6));
        let starts = HashMap::from([("0".to_string(), Offset::new("001-0001-000000000000000000"))]);
        let read = Arc::new(AtomicU64::new(0));
        let batches: Vec<Batch> = source
            .stream_extent(starts, &extent, read.clone())
            .map(|b| b.unwrap())
            .collect()
            .await;
        let seen: Vec<(String, String)> = batches
            .iter()
            .map(|b| (b.partition.to_string(), b.offset.as_str().to_string()))
            .collect();
        assert_eq!(
            seen,
            [
                ("1".to_string(), "001-0001-000000000000000000".to_string()),
                ("0".to_string(), "001-0001-000000000000000001".to_string()),
                ("2".to_string(), "001-0001-000000000000000000".to_string()),
            ]
        );
        assert_eq!(read.load(Ordering::Relaxed), extent.bytes());
        assert_eq!(batches[1].origin.as_deref(), Some("b.jsonl:1"));
        // A recording cut shorter than its extent is refused.
        write(dir.path(), "b.jsonl", &line(0, 1, 3));
        let cut: Vec<Result<Batch, SourceError>> = source
            .stream_extent(HashMap::new(), &extent, Arc::new(AtomicU64::new(0)))
            .collect()
            .await;
        let err = cut.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(
            err.contains("b.jsonl holds") && err.contains("planned when it held"),
            "{err}"
        );
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
        let batches = read_all(&source, "2").await;
        let err = batches.last().unwrap().as_ref().unwrap_err().to_string();
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
        let source = RecordedSource::open(dir.path()).unwrap();
        let batches = read_all(&source, "5").await;
        let err = batches.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(
            err.contains(":2:") && err.contains("overlaps the previous batch"),
            "{err}"
        );
    }

    /// Everything the stream of `source` gives up to its extent now, from
    /// the cursors in `starts`.
    async fn read_extent(
        source: &RecordedSource,
        starts: &[(&str, &str)],
    ) -> Vec<Result<Batch, SourceError>> {
        let starts = starts
            .iter()
            .map(|(p, o)| (p.to_string(), Offset::new(*o)))
            .collect();
        let extent = source.extent().unwrap();
        source
            .stream_extent(starts, &extent, Arc::new(AtomicU64::new(0)))
            .collect()
            .await
    }

    /// (partition, offset, origin, event) of each batch.
    fn seen(batches: &[Result<Batch, SourceError>]) -> Vec<(String, String, String, String)> {
        batches
            .iter()
            .map(|b| {
                let mut b = b.as_ref().unwrap().clone();
                b.frame().unwrap();
                (
                    b.partition.to_string(),
                    b.offset.as_str().to_string(),
                    b.origin.as_deref().unwrap_or_default().to_string(),
                    String::from_utf8(b.event_bytes(0).to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_file_of_plain_events_is_a_partition_numbered_by_its_events() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "orders.jsonl",
            "{\"id\":1}\n\n  {\"id\":2}\r\n{\"id\":3,,}\n",
        );
        // A recording beside it keeps its own partitions and offsets.
        write(
            dir.path(),
            "stream.jsonl",
            r#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000000"},"events":[{"id":9}]}"#,
        );
        let source = RecordedSource::open(dir.path()).unwrap();
        let first = read_extent(&source, &[]).await;
        let row = |p: &str, o: &str, at: &str, e: &str| {
            (p.to_string(), o.to_string(), at.to_string(), e.to_string())
        };
        // A blank line is not an event; a broken one is (the decoder rejects it).
        assert_eq!(
            seen(&first),
            [
                row("orders.jsonl", "0", "orders.jsonl:1", r#"{"id":1}"#),
                row("orders.jsonl", "1", "orders.jsonl:3", r#"{"id":2}"#),
                row("orders.jsonl", "2", "orders.jsonl:4", r#"{"id":3,,}"#),
                row(
                    "0",
                    "001-0001-000000000000000000",
                    "stream.jsonl:1",
                    r#"{"id":9}"#
                ),
            ]
        );
        // Lines appended later come after the cursor the first run ended at.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("orders.jsonl"))
            .unwrap()
            .write_all(b"{\"id\":4}\n")
            .unwrap();
        let next = read_extent(
            &source,
            &[("orders.jsonl", "2"), ("0", "001-0001-000000000000000000")],
        )
        .await;
        assert_eq!(
            seen(&next),
            [row("orders.jsonl", "3", "orders.jsonl:5", r#"{"id":4}"#)]
        );
    }

    /// The error the stream of a folder holding `text` in `a.jsonl` ends with.
    async fn error_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.jsonl", text);
        let source = RecordedSource::open(dir.path()).unwrap();
        let batches = read_extent(&source, &[]).await;
        let last = batches.last().unwrap().as_ref();
        last.map(|_| "no error".to_string())
            .unwrap_or_else(|e| e.to_string())
            .replace(&dir.path().display().to_string(), "DIR")
    }

    #[tokio::test]
    async fn files_that_are_neither_events_nor_batches_are_refused_with_their_line() {
        assert_eq!(
            error_of("\n[{\"id\":1},\n{\"id\":2}]\n").await,
            "DIR/a.jsonl:2: a JSON array: a source file holds one JSON event per line (NDJSON), \
             or recorded Nakadi batches; write each event on a line of its own"
        );
        assert_eq!(
            error_of("{\n  \"id\": 1\n}\n").await,
            "DIR/a.jsonl:1: the JSON value goes on past the end of the line: a source file holds \
             one JSON event per line (NDJSON), or recorded Nakadi batches; write each event on a \
             line of its own"
        );
        assert_eq!(
            error_of(concat!(
                r#"{"cursor":{"partition":"0","offset":"1"},"events":[{}]}"#,
                "\n",
                r#"{"id":2}"#,
                "\n"
            ))
            .await,
            "DIR/a.jsonl:2: not a recorded batch (batch has no cursor (at byte 0)): the file's \
             first line is a batch, so every line must be one, \
             `{\"cursor\":{\"partition\":...,\"offset\":...},\"events\":[...]}`; plain events (one \
             JSON event per line) go in files of their own"
        );
    }
}
