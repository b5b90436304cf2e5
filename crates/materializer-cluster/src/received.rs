//! What a task receives through a shuffle, kept on disk as it arrives: a
//! decide task's key rows (every partition's keys of its buckets) and a
//! write task's shares (every bucket's decisions about its partition) may
//! be far more than memory holds, and the order they are used in is only
//! known once all have arrived.
//!
//! Each payload is kept as the bytes it travelled as, under its group (a
//! bucket, a partition) and its place: `(a, origin, b)`, where `a` is what
//! one execution of the step before produced (a partition's keys, a
//! bucket's decisions), `origin` names that execution and `b` orders its
//! output. Read back, a group's payloads come in place order, from one
//! execution of each `a`, each once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::spill_file::{SpillFile, SpillWriter};

/// Where a payload came from: `(a, origin, b)`.
pub(crate) type Place = (u32, u64, u64);

/// A payload's bytes in the file.
#[derive(Clone, Copy, Debug)]
struct Span {
    offset: u64,
    len: u64,
}

/// Payloads being received.
pub(crate) struct Receiving {
    runtime: Arc<RuntimeEnv>,
    label: &'static str,
    file: Option<(Arc<dyn SpillFile>, BufWriter<Box<dyn SpillWriter>>)>,
    groups: BTreeMap<u32, Vec<(Place, Span)>>,
    written: u64,
}

impl Receiving {
    /// `label` says what is received, for the spill file's name.
    pub(crate) fn new(runtime: Arc<RuntimeEnv>, label: &'static str) -> Receiving {
        Receiving {
            runtime,
            label,
            file: None,
            groups: BTreeMap::new(),
            written: 0,
        }
    }

    /// Keeps `bytes`, of `group`, from `place`.
    pub(crate) fn push(&mut self, group: u32, place: Place, bytes: &[u8]) -> Result<()> {
        let (_, out) = match &mut self.file {
            Some(file) => file,
            None => {
                let file = self.runtime.disk_manager.create_tmp_file(self.label)?;
                let out = BufWriter::with_capacity(1 << 20, file.open_writer()?);
                self.file.insert((file, out))
            }
        };
        out.write_all(bytes)?;
        let span = Span {
            offset: self.written,
            len: bytes.len() as u64,
        };
        self.written += span.len;
        self.groups.entry(group).or_default().push((place, span));
        Ok(())
    }

    /// Everything received, each group's payloads chosen and in order.
    pub(crate) fn finish(self) -> Result<Received> {
        let file = match self.file {
            Some((file, out)) => {
                let mut out = out
                    .into_inner()
                    .map_err(|e| DataFusionError::IoError(e.into_error()))?;
                out.finish()?;
                Some(file)
            }
            None => None,
        };
        let groups = self
            .groups
            .into_iter()
            .map(|(group, mut places)| {
                places.sort_by_key(|(place, _)| *place);
                // The same output may be listed twice.
                places.dedup_by_key(|(place, _)| *place);
                (group, one_origin_each(places))
            })
            .collect();
        Ok(Received { file, groups })
    }
}

/// The payloads (sorted by place) from the first origin of each `a`: one
/// execution's output of each partition (or bucket), however many
/// executions the shuffle handed on.
fn one_origin_each<T>(items: Vec<(Place, T)>) -> Vec<(Place, T)> {
    let mut chosen: BTreeMap<u32, u64> = BTreeMap::new();
    for ((a, origin, _), _) in &items {
        chosen.entry(*a).or_insert(*origin);
    }
    items
        .into_iter()
        .filter(|((a, origin, _), _)| chosen.get(a) == Some(origin))
        .collect()
}

/// Payloads received, on disk.
pub(crate) struct Received {
    file: Option<Arc<dyn SpillFile>>,
    groups: BTreeMap<u32, Vec<(Place, Span)>>,
}

impl Received {
    /// The groups that received something.
    pub(crate) fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.groups.keys().copied()
    }

    /// The payloads of `group`, with their places, read back one by one.
    pub(crate) fn read(&self, group: u32) -> Result<Payloads> {
        let spans = self.groups.get(&group).cloned().unwrap_or_default();
        let file = match (&self.file, spans.is_empty()) {
            (Some(file), false) => file.clone(),
            _ => {
                return Ok(Payloads {
                    source: None,
                    spans: Vec::new().into_iter(),
                    path: String::new(),
                });
            }
        };
        let path = file.path().ok_or_else(|| {
            DataFusionError::Internal("the file of received payloads has no path".into())
        })?;
        let reader = File::open(path)?;
        Ok(Payloads {
            path: path.display().to_string(),
            source: Some((reader, file)),
            spans: spans.into_iter(),
        })
    }
}

/// A group's payloads, read back.
pub(crate) struct Payloads {
    /// The file, and what keeps it until the payloads are read.
    source: Option<(File, Arc<dyn SpillFile>)>,
    spans: std::vec::IntoIter<(Place, Span)>,
    path: String,
}

impl Payloads {
    /// The file they are read from, for messages.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

impl Iterator for Payloads {
    type Item = Result<(Place, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (place, span) = self.spans.next()?;
        let (reader, _) = self.source.as_mut()?;
        let mut bytes = vec![0; span.len as usize];
        let read = reader
            .seek(SeekFrom::Start(span.offset))
            .and_then(|_| reader.read_exact(&mut bytes));
        Some(read.map(|()| (place, bytes)).map_err(DataFusionError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads arriving in any order, some twice (an output listed twice)
    /// and one `a`'s from two executions, come back per group in place
    /// order, from the first execution, each once.
    #[test]
    fn a_group_comes_back_in_order_from_one_execution() {
        let runtime = Arc::new(RuntimeEnv::default());
        let mut receiving = Receiving::new(runtime, "test payloads");
        let arriving: [(u32, Place, &str); 8] = [
            (3, (1, 50, 1), "p1 second"),
            (3, (0, 70, 0), "p0 first"),
            (5, (0, 70, 0), "other group"),
            (3, (1, 50, 0), "p1 first"),
            (3, (1, 90, 0), "p1 again, another execution"),
            (3, (0, 70, 1), "p0 second"),
            (3, (1, 50, 1), "p1 second"),
            (3, (0, 70, 2), "p0 third"),
        ];
        for (group, place, text) in arriving {
            receiving.push(group, place, text.as_bytes()).unwrap();
        }
        let received = receiving.finish().unwrap();
        let texts = |group| -> Vec<String> {
            received
                .read(group)
                .unwrap()
                .map(|p| String::from_utf8(p.unwrap().1).unwrap())
                .collect()
        };
        assert_eq!(received.groups().collect::<Vec<_>>(), [3, 5]);
        assert_eq!(
            texts(3),
            ["p0 first", "p0 second", "p0 third", "p1 first", "p1 second"]
        );
        assert_eq!(texts(5), ["other group"]);
        assert!(texts(7).is_empty());
    }
}
