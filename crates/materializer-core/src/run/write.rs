//! Write: mapped rows into MAIN and CORRECTION files, rejected events into
//! their NDJSON file, under deterministic names.

use std::sync::Arc;

use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::decode::{Rejected, Spooled};
use crate::sink::file::data_extension;
use crate::sink::{FileKind, ObjectWriter, PartitionedWriter, SinkError, WrittenFile};

use super::map::Mapper;
use super::{Progress, RunFailure};
use crate::failpoint::failpoint;

/// KEYS column: whether the version deletes its key.
pub const KEYS_DELETED: &str = "deleted";
/// KEYS column: `main` (the key's newest version in the run), `correction`
/// (a late version) or `older` (an older version kept for the history).
pub const KEYS_KIND: &str = "kind";

impl Mapper {
    /// Applies the mapping to `events` and streams the rows into files.
    pub(super) async fn write_mapped(
        &self,
        kind: FileKind,
        sequence: u64,
        partition: &str,
        events: Arc<StreamingTable>,
    ) -> Result<Vec<WrittenFile>, RunFailure> {
        let query_error = |source: DataFusionError| RunFailure::Query {
            partition: partition.to_string(),
            source,
        };
        let sink_error = |source: SinkError| RunFailure::Sink(source);
        let ctx = self.engine.session();
        let frame = self.topic.mapping().apply(&ctx, events).await?;
        let mut stream = crate::mapping::engine::execute(frame)
            .await
            .map_err(query_error)?;
        let layout = self.ledger.layout().clone();
        let extension = data_extension(self.topic.output());
        let partition_name = partition.to_string();
        let path_for = Box::new(move |output_partition: &[(String, String)]| {
            layout.data_file(kind, sequence, &partition_name, output_partition, extension)
        });
        let mut writer = PartitionedWriter::new(
            self.ledger.location().store.clone(),
            self.topic.output_schema().clone(),
            self.topic.output(),
            path_for,
        )
        .map_err(sink_error)?;
        loop {
            let next = match stream.try_next().await {
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
        let progress = &self.progress;
        Progress::add(&progress.files_written, files.len() as u64);
        Progress::add(&progress.bytes_written, files.iter().map(|f| f.bytes).sum());
        Ok(files)
    }

    /// The KEYS file of a partition: one row per version this run decided (the
    /// MAIN version of each key, each CORRECTION version), with its key parts
    /// and ordering key under the warehouse's column names, whether it deletes
    /// the key, and its kind. The warehouse replaces by key with it, whether
    /// or not the mapping made rows of the version.
    pub(super) async fn write_keys(
        &self,
        partition: &str,
        keys: &Spooled,
    ) -> Result<WrittenFile, RunFailure> {
        let schema = keys.schema().clone();
        let layout = self.ledger.layout().clone();
        let extension = data_extension(self.topic.output());
        let (sequence, partition_name) = (self.sequence, partition.to_string());
        let path_for = Box::new(move |_: &[(String, String)]| {
            layout.data_file(FileKind::Keys, sequence, &partition_name, &[], extension)
        });
        // KEYS files are never split by output partition: a version may have
        // rows in several or in none.
        let mut settings = self.topic.output().clone();
        settings.partition_by.clear();
        let mut writer = PartitionedWriter::new(
            self.ledger.location().store.clone(),
            schema,
            &settings,
            path_for,
        )
        .map_err(RunFailure::Sink)?;
        for batch in keys.batches() {
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
                location: self.ledger.location().url.clone(),
                message: "the KEYS file was not written".into(),
            })
        })?;
        Progress::add(&self.progress.files_written, 1);
        Progress::add(&self.progress.bytes_written, file.bytes);
        Ok(file)
    }

    /// Rejected events as NDJSON: partition, offset, origin, reason and the
    /// event exactly as it arrived (as a JSON string).
    pub(super) async fn write_rejected(
        &self,
        sequence: u64,
        partition: &str,
        rejected: &[Rejected],
    ) -> Result<WrittenFile, RunFailure> {
        let path: Path =
            self.ledger
                .layout()
                .data_file(FileKind::Rejected, sequence, partition, &[], "ndjson");
        let mut writer = ObjectWriter::new(self.ledger.location().store.clone(), path.clone());
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
