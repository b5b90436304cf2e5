//! Write: mapped rows into MAIN and CORRECTION files, rejected events into
//! their NDJSON file, under deterministic names.

use std::sync::Arc;

use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::decode::Rejected;
use crate::sink::file::data_extension;
use crate::sink::{FileKind, ObjectWriter, PartitionedWriter, SinkError, WrittenFile};

use super::map::Mapper;
use super::{Progress, RunFailure, failpoint};

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
