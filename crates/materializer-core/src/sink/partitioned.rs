//! One stream of rows into one file per output partition (`partition_by`
//! columns), named by the caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::ObjectStore;
use object_store::path::Path;

use super::{FileWriter, SinkError, WrittenFile};
use crate::config::OutputSettings;

/// Names the file of an output partition (`column=value` pairs).
pub type PathForPartition = Box<dyn Fn(&[(String, String)]) -> Path + Send + Sync>;

/// Writes a stream of rows to one file per output partition (one file in all
/// when the topic is not partitioned by columns).
pub struct PartitionedWriter {
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    output: OutputSettings,
    path_for: PathForPartition,
    columns: Vec<usize>,
    writers: BTreeMap<Vec<(String, String)>, FileWriter>,
}

/// Value used in a path for NULL, as Hive writes it.
pub const NULL_PARTITION_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

impl PartitionedWriter {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        schema: SchemaRef,
        output: &OutputSettings,
        path_for: PathForPartition,
    ) -> Result<PartitionedWriter, SinkError> {
        let columns = output
            .partition_by
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .map_err(|_| SinkError::PartitionColumn {
                        column: name.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut writer = PartitionedWriter {
            store,
            schema,
            output: output.clone(),
            path_for,
            columns,
            writers: BTreeMap::new(),
        };
        if writer.columns.is_empty() {
            // Unpartitioned output always has its file, even without rows.
            writer.writer_for(Vec::new())?;
        }
        Ok(writer)
    }

    fn writer_for(&mut self, key: Vec<(String, String)>) -> Result<&mut FileWriter, SinkError> {
        if !self.writers.contains_key(&key) {
            let path = (self.path_for)(&key);
            let writer = FileWriter::create(
                self.store.clone(),
                path,
                &self.schema,
                &self.output,
                key.clone(),
            )?;
            self.writers.insert(key.clone(), writer);
        }
        Ok(self.writers.get_mut(&key).expect("inserted above"))
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.columns.is_empty() {
            return self.writer_for(Vec::new())?.write(batch).await;
        }
        for (key, rows) in self.group_rows(batch)? {
            let indices = UInt32Array::from(rows);
            let part = take_record_batch(batch, &indices).map_err(|e| SinkError::Encode {
                path: String::new(),
                source: e.into(),
            })?;
            self.writer_for(key)?.write(&part).await?;
        }
        Ok(())
    }

    /// Row indices of `batch` per output partition, in first-seen order.
    fn group_rows(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(Vec<(String, String)>, Vec<u32>)>, SinkError> {
        let options = FormatOptions::default().with_null(NULL_PARTITION_VALUE);
        let arrays: Vec<&ArrayRef> = self.columns.iter().map(|&i| batch.column(i)).collect();
        let formatters = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SinkError::Encode {
                path: String::new(),
                source: e.into(),
            })?;
        let mut groups: Vec<(Vec<(String, String)>, Vec<u32>)> = Vec::new();
        let mut index: std::collections::HashMap<Vec<String>, usize> =
            std::collections::HashMap::new();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            let slot = *index.entry(values.clone()).or_insert_with(|| {
                let key = self
                    .columns
                    .iter()
                    .zip(&values)
                    .map(|(&c, v)| (self.schema.field(c).name().clone(), v.clone()))
                    .collect();
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(row as u32);
        }
        Ok(groups)
    }

    pub async fn finish(self) -> Result<Vec<WrittenFile>, SinkError> {
        let mut files = Vec::with_capacity(self.writers.len());
        let mut writers = self.writers.into_values();
        while let Some(writer) = writers.next() {
            match writer.finish().await {
                Ok(file) => files.push(file),
                Err(e) => {
                    for rest in writers {
                        rest.abort().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(files)
    }

    pub async fn abort(self) {
        for writer in self.writers.into_values() {
            writer.abort().await;
        }
    }
}
