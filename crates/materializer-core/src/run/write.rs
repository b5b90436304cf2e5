//! Write: mapped rows into MAIN, CORRECTION and OLDER files, a partition's
//! KEYS rows into its KEYS file and its rejected events into their NDJSON
//! file, all under deterministic names.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;
use object_store::path::Path;

use super::error::RunFailure;
use super::progress::Progress;
use crate::config::Topic;
use crate::decode::{Rejected, SpoolError};
use crate::failpoint::failpoint;
use crate::sink::{
    FileKind, ObjectWriter, OutputLocation, PartitionedWriter, SinkError, TopicLayout, WrittenFile,
    format,
};

/// Writes the files of one run.
pub(crate) struct FilesWriter {
    pub topic: Arc<Topic>,
    pub location: OutputLocation,
    pub layout: TopicLayout,
    pub progress: Arc<Progress>,
    /// The run's sequence number, in the files' names.
    pub sequence: u64,
}

impl FilesWriter {
    /// Streams mapped `rows` of `partition` into its files of `kind` (one per
    /// output partition).
    pub async fn write_rows(
        &self,
        kind: FileKind,
        partition: &str,
        mut rows: SendableRecordBatchStream,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let query_error = |source: DataFusionError| RunFailure::Query {
            partition: partition.to_string(),
            source,
        };
        let sink_error = |source: SinkError| RunFailure::Sink(source);
        let layout = self.layout.clone();
        let extension = format::extension(self.topic.output());
        let (sequence, partition_name) = (self.sequence, partition.to_string());
        let path_for = Box::new(move |output_partition: &[(String, String)]| {
            layout.data_file(kind, sequence, &partition_name, output_partition, extension)
        });
        let mut writer = PartitionedWriter::new(
            self.location.store.clone(),
            self.topic.output_schema().clone(),
            self.topic.output(),
            path_for,
        )
        .map_err(sink_error)?;
        loop {
            let next = match rows.try_next().await {
                Ok(next) => next,
                Err(e) => {
                    writer.abort().await;
                    return Err(query_error(e));
                }
            };
            let Some(batch) = next else { break };
            let batch = match batch.with_schema(self.topic.output_schema().clone()) {
                Ok(b) => b,
                Err(e) => {
                    writer.abort().await;
                    return Err(query_error(e.into()));
                }
            };
            if let Err(e) = writer.write(&batch).await {
                writer.abort().await;
                return Err(sink_error(e));
            }
        }
        let files = writer.finish().await.map_err(sink_error)?;
        failpoint("first-file-written");
        Progress::add(&self.progress.files_written, files.len() as u64);
        Progress::add(
            &self.progress.bytes_written,
            files.iter().map(|f| f.bytes).sum(),
        );
        Ok(files)
    }

    /// The KEYS file of a partition: one row per version this run decided (the
    /// MAIN version of each key, each CORRECTION version), with its key parts
    /// and ordering key under the warehouse's column names, whether it deletes
    /// the key, and its kind. The warehouse replaces by key with it, whether
    /// or not the mapping made rows of the version.
    pub async fn write_keys(
        &self,
        partition: &str,
        schema: SchemaRef,
        batches: impl Iterator<Item = Result<RecordBatch, SpoolError>>,
    ) -> Result<WrittenFile, RunFailure> {
        let layout = self.layout.clone();
        let extension = format::extension(self.topic.output());
        let (sequence, partition_name) = (self.sequence, partition.to_string());
        let path_for = Box::new(move |_: &[(String, String)]| {
            layout.data_file(FileKind::Keys, sequence, &partition_name, &[], extension)
        });
        // KEYS files are never split by output partition: a version may have
        // rows in several or in none.
        let mut settings = self.topic.output().clone();
        settings.partition_by.clear();
        let mut writer =
            PartitionedWriter::new(self.location.store.clone(), schema, &settings, path_for)
                .map_err(RunFailure::Sink)?;
        for batch in batches {
            let written = match batch {
                Ok(batch) => writer.write(&batch).await.map_err(RunFailure::Sink),
                Err(e) => Err(RunFailure::KeyState(e.into())),
            };
            if let Err(e) = written {
                writer.abort().await;
                return Err(e);
            }
        }
        let mut files = writer.finish().await.map_err(RunFailure::Sink)?;
        let file = files.pop().ok_or_else(|| {
            RunFailure::Sink(SinkError::Location {
                location: self.location.url.clone(),
                message: "the KEYS file was not written".into(),
            })
        })?;
        Progress::add(&self.progress.files_written, 1);
        Progress::add(&self.progress.bytes_written, file.bytes);
        Ok(file)
    }

    /// Rejected events as NDJSON: partition, offset, origin, reason and the
    /// event exactly as it arrived (as a JSON string).
    pub async fn write_rejected(
        &self,
        partition: &str,
        rejected: &[Rejected],
    ) -> Result<WrittenFile, RunFailure> {
        let path: Path =
            self.layout
                .data_file(FileKind::Rejected, self.sequence, partition, &[], "ndjson");
        let mut writer = ObjectWriter::new(self.location.store.clone(), path.clone());
        let mut body = Vec::new();
        for r in rejected {
            let line = serde_json::json!({
                "partition": &*r.partition,
                "offset": r.offset,
                "origin": r.origin.as_deref(),
                "reason": r.reason,
                "event": String::from_utf8_lossy(&r.raw),
            });
            serde_json::to_writer(&mut body, &line).expect("json");
            body.push(b'\n');
        }
        let sink_error = |source: SinkError| RunFailure::Sink(source);
        writer.write(&body).await.map_err(sink_error)?;
        let (bytes, sha256) = writer.finish().await.map_err(sink_error)?;
        Progress::add(&self.progress.files_written, 1);
        Progress::add(&self.progress.bytes_written, bytes);
        Ok(WrittenFile {
            path,
            rows: rejected.len() as u64,
            bytes,
            sha256,
            output_partition: Vec::new(),
        })
    }
}
