//! What a run needs besides its topic: the query engine, where events come
//! from and where files go. The CLI and the HTTP API build runs through it, so
//! both take the same path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Progress, RunRequest};
use crate::config::{SourceMode, Topic};
use crate::mapping::Engine;
use crate::sink::{OutputLocation, S3Settings};
use crate::source::{NakadiClient, NakadiSource, RecordedSource, Source, SubscriptionReader};

/// Shared settings of all runs of a process.
#[derive(Clone)]
pub struct RunEnvironment {
    pub engine: Engine,
    /// A live Nakadi; without one, runs read recorded batches.
    pub nakadi: Option<Arc<NakadiClient>>,
    /// Folder holding one folder of recorded batches per topic.
    pub recordings: PathBuf,
    /// Default output location (a topic's `output.location` wins).
    pub output: String,
    pub s3: S3Settings,
    /// Nakadi partitions mapped at the same time.
    pub parallelism: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("topic {topic}: {message}")]
pub struct SetupError {
    pub topic: String,
    pub message: String,
}

impl RunEnvironment {
    /// The source of a topic's events: `recording` when given, else the live
    /// Nakadi when there is one, else the topic's folder of recordings.
    pub fn source(&self, topic: &Topic, recording: Option<&Path>) -> Result<Source, SetupError> {
        let setup = |message: String| SetupError {
            topic: topic.name.clone(),
            message,
        };
        match (recording, &self.nakadi) {
            (None, Some(client)) => Ok(Source::Nakadi(NakadiSource {
                subscription: match (topic.source.mode, &topic.source.subscription) {
                    (SourceMode::Subscription, Some(settings)) => Some(SubscriptionReader::new(
                        client.clone(),
                        topic.event_type.clone(),
                        settings.clone(),
                    )),
                    _ => None,
                },
                client: client.clone(),
                event_type: topic.event_type.clone(),
            })),
            (path, _) => {
                let path = path
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| self.recordings.join(&topic.name));
                RecordedSource::open(&path)
                    .map(Source::Recorded)
                    .map_err(|e| setup(e.to_string()))
            }
        }
    }

    /// Where a topic's files go.
    pub fn output(&self, topic: &Topic) -> Result<OutputLocation, SetupError> {
        let location = topic
            .output
            .location
            .clone()
            .unwrap_or_else(|| self.output.clone());
        OutputLocation::parse(&location, &self.s3).map_err(|e| SetupError {
            topic: topic.name.clone(),
            message: e.to_string(),
        })
    }

    /// A run of `topic`, ready for [`super::execute`].
    pub fn request(
        &self,
        topic: Arc<Topic>,
        recording: Option<&Path>,
        progress: Arc<Progress>,
        cancel: CancellationToken,
    ) -> Result<RunRequest, SetupError> {
        Ok(RunRequest {
            source: Arc::new(self.source(&topic, recording)?),
            output: self.output(&topic)?,
            topic,
            progress,
            cancel,
            parallelism: self.parallelism.max(1),
        })
    }
}
