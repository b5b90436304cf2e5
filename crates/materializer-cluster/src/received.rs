//! The key rows a decide task receives, kept on disk as they arrive: every
//! partition's keys of a bucket may be far more than memory holds, and the
//! order they are decided in is only known once all have arrived.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::sync::Arc;

use arrow::error::ArrowError;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::spill_file::SpillFile;
use datafusion::execution::spill_file::SpillWriter;

use materializer_core::decode::SpoolError;
use materializer_core::run::remote::KeyRows;

/// Where a batch of key rows came from: the partition, the execution of
/// the keys step that read it (its origin), and its number in that
/// execution's output.
pub(crate) type Place = (u32, u64, u64);

/// Key batches being received.
pub(crate) struct ReceivedKeys {
    runtime: Arc<RuntimeEnv>,
    file: Option<(
        Arc<dyn SpillFile>,
        FileWriter<BufWriter<Box<dyn SpillWriter>>>,
    )>,
    /// Per bucket: each batch's place and its number in the file.
    places: BTreeMap<u32, Vec<(Place, usize)>>,
    written: usize,
}

impl ReceivedKeys {
    pub(crate) fn new(runtime: Arc<RuntimeEnv>) -> ReceivedKeys {
        ReceivedKeys {
            runtime,
            file: None,
            places: BTreeMap::new(),
            written: 0,
        }
    }

    /// Keeps `batch`, of `bucket`, from `place`.
    pub(crate) fn push(&mut self, bucket: u32, place: Place, batch: &RecordBatch) -> Result<()> {
        let (_, writer) = match &mut self.file {
            Some(file) => file,
            None => {
                let file = self
                    .runtime
                    .disk_manager
                    .create_tmp_file("key rows a decide task received")?;
                let out = BufWriter::with_capacity(1 << 20, file.open_writer()?);
                let writer = FileWriter::try_new(out, &batch.schema())?;
                self.file.insert((file, writer))
            }
        };
        writer.write(batch)?;
        self.places
            .entry(bucket)
            .or_default()
            .push((place, self.written));
        self.written += 1;
        Ok(())
    }

    /// Everything received: per bucket, the numbers of its batches in the
    /// order they are decided in (each partition's in the order it read
    /// them, from one execution of the keys step).
    pub(crate) fn finish(self) -> Result<Received> {
        let file = match self.file {
            Some((file, mut writer)) => {
                writer.finish()?;
                let mut out = writer
                    .into_inner()?
                    .into_inner()
                    .map_err(|e| DataFusionError::IoError(e.into_error()))?;
                out.finish()?;
                Some(file)
            }
            None => None,
        };
        let buckets = self
            .places
            .into_iter()
            .map(|(bucket, mut places)| {
                places.sort_by_key(|(place, _)| *place);
                // The same output may be listed twice.
                places.dedup_by_key(|(place, _)| *place);
                let batches =
                    crate::steps::one_origin_each(places, |(place, _)| (place.0, place.1))
                        .into_iter()
                        .map(|(_, number)| number)
                        .collect();
                (bucket, batches)
            })
            .collect();
        Ok(Received { file, buckets })
    }
}

/// Key batches received, on disk.
pub(crate) struct Received {
    file: Option<Arc<dyn SpillFile>>,
    pub(crate) buckets: BTreeMap<u32, Vec<usize>>,
}

impl Received {
    /// The key rows of `bucket`, read back batch by batch.
    pub(crate) fn keys_of(&self, bucket: u32) -> Result<KeyRows> {
        let numbers = self.buckets.get(&bucket).cloned().unwrap_or_default();
        let Some(file) = self.file.clone() else {
            return Ok(Box::new(std::iter::empty()));
        };
        let path = file.path().ok_or_else(|| {
            DataFusionError::Internal("the received key rows' file has no path".into())
        })?;
        let reader = FileReader::try_new(BufReader::new(File::open(path)?), None)?;
        Ok(Box::new(ReadBack {
            reader,
            numbers: numbers.into_iter(),
            path: path.display().to_string(),
            _file: file,
        }))
    }
}

/// A bucket's batches, by number, from the file.
struct ReadBack {
    reader: FileReader<BufReader<File>>,
    numbers: std::vec::IntoIter<usize>,
    path: String,
    /// Keeps the file until the batches are read.
    _file: Arc<dyn SpillFile>,
}

impl Iterator for ReadBack {
    type Item = std::result::Result<RecordBatch, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        let number = self.numbers.next()?;
        let read = self.reader.set_index(number).and_then(|()| {
            self.reader.next().unwrap_or_else(|| {
                Err(ArrowError::IpcError(format!(
                    "batch {number} is not in the file"
                )))
            })
        });
        Some(read.map_err(|source| SpoolError::Read {
            path: self.path.clone(),
            source,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn values(rows: KeyRows) -> Vec<Vec<i64>> {
        rows.map(|b| {
            let b = b.unwrap();
            let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            column.values().to_vec()
        })
        .collect()
    }

    /// Batches arriving in any order, some twice (an output listed twice)
    /// and one partition's from two executions of the keys step, come back
    /// per bucket in partition and read order, from the first execution.
    #[test]
    fn a_bucket_comes_back_in_order_from_one_execution() {
        let runtime = Arc::new(RuntimeEnv::default());
        let mut received = ReceivedKeys::new(runtime);
        // bucket, (partition, origin, seq), values
        let arriving: [(u32, Place, &[i64]); 8] = [
            (3, (1, 50, 1), &[12]),
            (3, (0, 70, 0), &[1]),
            (5, (0, 70, 0), &[100]),
            (3, (1, 50, 0), &[11]),
            (3, (1, 90, 0), &[99]), // partition 1 again, another execution
            (3, (0, 70, 1), &[2]),
            (3, (1, 50, 1), &[12]), // listed twice
            (3, (0, 70, 2), &[3, 4]),
        ];
        for (bucket, place, keys) in arriving {
            received.push(bucket, place, &batch(keys)).unwrap();
        }
        let received = received.finish().unwrap();
        assert_eq!(received.buckets.keys().copied().collect::<Vec<_>>(), [3, 5]);
        assert_eq!(
            values(received.keys_of(3).unwrap()),
            [vec![1], vec![2], vec![3, 4], vec![11], vec![12]]
        );
        assert_eq!(values(received.keys_of(5).unwrap()), [vec![100]]);
        assert!(values(received.keys_of(7).unwrap()).is_empty());
    }
}
