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
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::framing::{self, Batch};
use super::{Offset, PartitionRange, SourceError};

const READ_BLOCK: usize = 4 << 20;

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

/// The files of a recording, in the order they are read.
fn list_files(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
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
    Ok(files)
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
            let result = for_each_line(&files, |path, line_no, line| {
                if let Some(read) = &read {
                    read.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                }
                if cursor_partition(&line).is_some_and(|p| start_of(p).is_none()) {
                    return Ok(true); // a partition this run does not read
                }
                // The events are framed by the decoder, as it decodes them; it
                // also checks that they follow the previous batch.
                let mut batch = framing::parse_head(line)
                    .map_err(|e| recorded_error(path, line_no, &e.to_string()))?;
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
                batch.origin = Some(Arc::from(format!("{}:{line_no}", origin_name(&root, path))));
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

/// Calls `f` with every non-empty line of the files' byte ranges (1-based
/// line numbers). `f` returns `false` to stop early. A file shorter than its
/// range's end (when the end is not open) is an error: the recording changed
/// under the run.
fn for_each_line(
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
}
