//! The class of every event of a partition, from the decision until the
//! partition is mapped.
//!
//! While a run's events number fewer than a share of the memory budget
//! allows (one byte each), the classes wait in memory. Beyond it they go to
//! disk as the decision makes them: a pass of the decision classifies one
//! slice of the keys, so its share of a partition is a *run* of events in
//! ascending order, and every event of the partition is in one run. A run is
//! stored as (distance to the run's previous event as a LEB128 varint, class
//! byte), about two bytes per event; the mapping reads the runs back merged
//! in event order, holding a small buffer per run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use datafusion::execution::SpillFile;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::spill_file::SpillWriter;

use super::class::Class;
use crate::run::error::ClassesError;

/// A partition's classes, in memory or in runs on disk.
#[derive(Clone, Debug)]
pub enum Classes {
    Memory(Arc<[Class]>),
    Runs(Arc<ClassRuns>),
}

/// A partition's classes as the decision makes them.
pub enum ClassesBuilder {
    /// Every event's class at its place, superseded until decided.
    Memory(Vec<Class>),
    /// Runs on disk, the file created with the first run.
    Runs {
        writer: Option<ClassRunsWriter>,
        runtime: Arc<RuntimeEnv>,
        partition: String,
        events: u64,
    },
}

impl ClassesBuilder {
    /// The classes of the `events` events of `partition`, on disk when
    /// `spill`.
    pub fn new(spill: bool, runtime: &Arc<RuntimeEnv>, partition: &str, events: u64) -> Self {
        if spill {
            ClassesBuilder::Runs {
                writer: None,
                runtime: runtime.clone(),
                partition: partition.to_string(),
                events,
            }
        } else {
            ClassesBuilder::Memory(vec![Class::Superseded; events as usize])
        }
    }

    /// Records one run: events in ascending order, with their classes.
    pub fn add(&mut self, run: &[(u64, Class)]) -> Result<(), ClassesError> {
        match self {
            ClassesBuilder::Memory(classes) => {
                let events = classes.len() as u64;
                for &(event, class) in run {
                    let slot = classes
                        .get_mut(event as usize)
                        .ok_or(ClassesError::PastTheEnd { event, events })?;
                    *slot = class;
                }
                Ok(())
            }
            ClassesBuilder::Runs {
                writer,
                runtime,
                partition,
                events,
            } => {
                if let Some(&(event, _)) = run.iter().find(|(e, _)| e >= events) {
                    return Err(ClassesError::PastTheEnd {
                        event,
                        events: *events,
                    });
                }
                let writer = match writer {
                    Some(writer) => writer,
                    None => writer.insert(ClassRunsWriter::new(runtime, partition, *events)?),
                };
                writer.add(run.iter().copied())
            }
        }
    }

    pub fn finish(self) -> Result<Classes, ClassesError> {
        Ok(match self {
            ClassesBuilder::Memory(classes) => Classes::Memory(classes.into()),
            ClassesBuilder::Runs {
                writer: Some(writer),
                ..
            } => Classes::Runs(Arc::new(writer.finish()?)),
            ClassesBuilder::Runs { events, .. } => {
                Classes::Memory(vec![Class::Superseded; events as usize].into())
            }
        })
    }
}

pub(super) fn class_byte(class: Class) -> u8 {
    match class {
        Class::Superseded => 0,
        Class::Main => 1,
        Class::Correction => 2,
        Class::Older => 3,
    }
}

pub(super) fn class_of(byte: u8) -> Option<Class> {
    match byte {
        0 => Some(Class::Superseded),
        1 => Some(Class::Main),
        2 => Some(Class::Correction),
        3 => Some(Class::Older),
        _ => None,
    }
}

/// Bytes of one run in the file.
#[derive(Clone, Copy, Debug)]
struct RunBytes {
    start: u64,
    end: u64,
}

/// Writes a partition's runs to a spill file as the decision makes them.
pub struct ClassRunsWriter {
    file: Arc<dyn SpillFile>,
    out: BufWriter<Box<dyn SpillWriter>>,
    written: u64,
    runs: Vec<RunBytes>,
    events: u64,
}

impl ClassRunsWriter {
    /// A writer for the `events` classes of `partition`.
    pub fn new(runtime: &RuntimeEnv, partition: &str, events: u64) -> Result<Self, ClassesError> {
        let file = runtime
            .disk_manager
            .create_tmp_file(&format!("classes of partition {partition}"))
            .map_err(ClassesError::Create)?;
        let handle = file.open_writer().map_err(ClassesError::Create)?;
        Ok(ClassRunsWriter {
            out: BufWriter::with_capacity(64 << 10, handle),
            file,
            written: 0,
            runs: Vec::new(),
            events,
        })
    }

    /// Appends one run: events in ascending order, with their classes.
    pub fn add(&mut self, run: impl IntoIterator<Item = (u64, Class)>) -> Result<(), ClassesError> {
        let start = self.written;
        let mut previous: Option<u64> = None;
        let mut record = [0u8; 11];
        for (event, class) in run {
            let distance = match previous {
                None => event,
                Some(p) if event > p => event - p,
                Some(_) => {
                    return Err(ClassesError::Corrupt {
                        path: describe(&self.file),
                    });
                }
            };
            previous = Some(event);
            let n = encode_varint(distance, &mut record);
            record[n] = class_byte(class);
            self.out
                .write_all(&record[..=n])
                .map_err(|source| self.write_error(source))?;
            self.written += n as u64 + 1;
        }
        if self.written > start {
            self.runs.push(RunBytes {
                start,
                end: self.written,
            });
        }
        Ok(())
    }

    pub fn finish(self) -> Result<ClassRuns, ClassesError> {
        let path = describe(&self.file);
        let write_error = |source| ClassesError::Write {
            path: path.clone(),
            source,
        };
        let mut handle = self
            .out
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        handle
            .finish()
            .map_err(|e| write_error(std::io::Error::other(e)))?;
        Ok(ClassRuns {
            file: self.file,
            runs: self.runs,
            events: self.events,
        })
    }

    fn write_error(&self, source: std::io::Error) -> ClassesError {
        ClassesError::Write {
            path: describe(&self.file),
            source,
        }
    }
}

/// A partition's classes as runs in a spill file (deleted when dropped).
pub struct ClassRuns {
    file: Arc<dyn SpillFile>,
    runs: Vec<RunBytes>,
    events: u64,
}

impl std::fmt::Debug for ClassRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassRuns")
            .field("file", &describe(&self.file))
            .field("runs", &self.runs.len())
            .field("events", &self.events)
            .finish()
    }
}

impl ClassRuns {
    /// The classes in event order: the runs merged; an event no run holds
    /// (none should be missing) is superseded.
    pub fn merged(
        self: &Arc<Self>,
    ) -> Result<impl Iterator<Item = Result<Class, ClassesError>> + Send + use<>, ClassesError>
    {
        let path = describe(&self.file);
        let read_error = |source| ClassesError::Read {
            path: path.clone(),
            source,
        };
        let file = self
            .file
            .path()
            .ok_or_else(|| read_error(std::io::ErrorKind::Unsupported.into()))
            .and_then(|p| File::open(p).map_err(read_error))?;
        let mut merged = MergedClasses {
            runs: self.clone(),
            file,
            cursors: self.runs.iter().map(|r| RunCursor::new(*r)).collect(),
            heads: BinaryHeap::with_capacity(self.runs.len()),
            next: 0,
        };
        for i in 0..merged.cursors.len() {
            merged.advance(i)?;
        }
        Ok(merged)
    }
}

/// The classes of a partition's runs, merged in event order.
struct MergedClasses {
    runs: Arc<ClassRuns>,
    file: File,
    cursors: Vec<RunCursor>,
    /// The next event of every run that has one, and the run.
    heads: BinaryHeap<Reverse<(u64, usize)>>,
    next: u64,
}

impl MergedClasses {
    /// Moves run `i` to its next event.
    fn advance(&mut self, i: usize) -> Result<(), ClassesError> {
        let corrupt = || ClassesError::Corrupt {
            path: describe(&self.runs.file),
        };
        match self.cursors[i].advance(&self.file) {
            Ok(Some(event)) => {
                self.heads.push(Reverse((event, i)));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(CursorError::Io(source)) => Err(ClassesError::Read {
                path: describe(&self.runs.file),
                source,
            }),
            Err(CursorError::Corrupt) => Err(corrupt()),
        }
    }
}

impl Iterator for MergedClasses {
    type Item = Result<Class, ClassesError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.runs.events {
            return None;
        }
        let event = self.next;
        self.next += 1;
        let Some(&Reverse((head, i))) = self.heads.peek() else {
            return Some(Ok(Class::Superseded));
        };
        if head > event {
            return Some(Ok(Class::Superseded));
        }
        if head < event {
            // Two runs name the same event, or a run goes back.
            return Some(Err(ClassesError::Corrupt {
                path: describe(&self.runs.file),
            }));
        }
        self.heads.pop();
        let class = self.cursors[i].class;
        Some(self.advance(i).map(|()| class))
    }
}

enum CursorError {
    Io(std::io::Error),
    Corrupt,
}

/// Where the merge is in one run.
struct RunCursor {
    /// The file's bytes of the run not read yet.
    position: u64,
    end: u64,
    buffer: Vec<u8>,
    at: usize,
    event: Option<u64>,
    class: Class,
}

/// Bytes read from a run at once.
const RUN_BUFFER: u64 = 4 << 10;

impl RunCursor {
    fn new(run: RunBytes) -> RunCursor {
        RunCursor {
            position: run.start,
            end: run.end,
            buffer: Vec::new(),
            at: 0,
            event: None,
            class: Class::Superseded,
        }
    }

    /// The run's next event (its class in `class`); `None` at the run's end.
    fn advance(&mut self, file: &File) -> Result<Option<u64>, CursorError> {
        let mut distance = 0u64;
        let mut shift = 0;
        loop {
            let Some(byte) = self.byte(file)? else {
                return match shift {
                    0 => Ok(None),
                    _ => Err(CursorError::Corrupt),
                };
            };
            if shift > 63 {
                return Err(CursorError::Corrupt);
            }
            distance |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let class = self
            .byte(file)?
            .and_then(class_of)
            .ok_or(CursorError::Corrupt)?;
        let event = match self.event {
            None => distance,
            Some(previous) => previous.checked_add(distance).ok_or(CursorError::Corrupt)?,
        };
        self.event = Some(event);
        self.class = class;
        Ok(Some(event))
    }

    fn byte(&mut self, file: &File) -> Result<Option<u8>, CursorError> {
        if self.at == self.buffer.len() {
            if self.position == self.end {
                return Ok(None);
            }
            let n = (self.end - self.position).min(RUN_BUFFER) as usize;
            self.buffer.resize(n, 0);
            file.read_exact_at(&mut self.buffer, self.position)
                .map_err(CursorError::Io)?;
            self.position += n as u64;
            self.at = 0;
        }
        let byte = self.buffer[self.at];
        self.at += 1;
        Ok(Some(byte))
    }
}

/// Writes `value` as a LEB128 varint; returns its length.
fn encode_varint(mut value: u64, out: &mut [u8; 11]) -> usize {
    let mut n = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[n] = byte;
            return n + 1;
        }
        out[n] = byte | 0x80;
        n += 1;
    }
}

fn describe(file: &Arc<dyn SpillFile>) -> String {
    file.path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(in the spill store)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

    fn runs_of(runtime: &RuntimeEnv, events: u64, runs: &[Vec<(u64, Class)>]) -> Arc<ClassRuns> {
        let mut writer = ClassRunsWriter::new(runtime, "0", events).unwrap();
        for run in runs {
            writer.add(run.iter().copied()).unwrap();
        }
        Arc::new(writer.finish().unwrap())
    }

    #[test]
    fn runs_on_disk_read_back_merged_in_event_order() {
        let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
        let classes = [
            Class::Main,
            Class::Correction,
            Class::Older,
            Class::Superseded,
        ];
        let events = 20_000u64;
        // Every event in one of 7 runs, each ascending; far apart events
        // take several varint bytes.
        let expected: Vec<Class> = (0..events)
            .map(|e| classes[(e * 7 / 3 % 4) as usize])
            .collect();
        let runs: Vec<Vec<(u64, Class)>> = (0..7u64)
            .map(|r| {
                (0..events)
                    .filter(|e| (e * 2654435761) % 7 == r)
                    .map(|e| (e, expected[e as usize]))
                    .collect()
            })
            .collect();
        let read: Vec<Class> = runs_of(&runtime, events, &runs)
            .merged()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read, expected);
        // An event no run holds reads as superseded.
        let sparse = runs_of(
            &runtime,
            4,
            &[vec![(1, Class::Main)], vec![(3, Class::Older)]],
        );
        let read: Vec<Class> = sparse.merged().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            read,
            [
                Class::Superseded,
                Class::Main,
                Class::Superseded,
                Class::Older
            ]
        );
    }

    #[test]
    fn a_run_that_goes_back_or_names_an_event_twice_is_an_error() {
        let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
        let mut writer = ClassRunsWriter::new(&runtime, "0", 4).unwrap();
        let err = writer
            .add([(2, Class::Main), (1, Class::Main)])
            .unwrap_err();
        assert!(matches!(err, ClassesError::Corrupt { .. }), "{err}");
        let twice = runs_of(
            &runtime,
            4,
            &[vec![(1, Class::Main)], vec![(1, Class::Older)]],
        );
        let read: Vec<Result<Class, ClassesError>> = twice.merged().unwrap().collect();
        assert!(read.iter().any(Result::is_err), "{read:?}");
    }
}
