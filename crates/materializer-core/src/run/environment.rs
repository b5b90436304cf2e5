//! What a run needs besides its topic: the query engine, where events come
//! from and where files go. The CLI and the HTTP API build runs through it, so
//! both take the same path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::attempt::RunRequest;
use super::progress::Progress;
use crate::config::Topic;
use crate::mapping::Engine;
use crate::sink::ephemeral::lost_output_warning;
use crate::sink::{OutputLocation, S3Settings, SinkError};
use crate::source::{
    NakadiClient, NakadiSource, RecordedSource, Source, SourceError, SubscriptionReader,
};

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
    /// Where runs hand their partitions (a cluster), when not to this process.
    pub workers: Option<Arc<dyn super::remote::PartitionWorkers>>,
}

/// Why a run of a topic could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("topic {topic}")]
    Source {
        topic: String,
        #[source]
        source: SourceError,
    },
    /// The topic's `[source] recording` cannot be read.
    #[error("topic {topic}: [source] recording in {settings}", settings = settings.display())]
    Recording {
        topic: String,
        settings: PathBuf,
        #[source]
        source: SourceError,
    },
    /// Nothing names a source and the default place holds none.
    #[error(
        "topic {topic} has no source: no Nakadi URL is set, and there is no recording at {} \
         (where a topic without a source of its own is read from)",
        looked_at.display()
    )]
    NoSource {
        topic: String,
        looked_at: PathBuf,
        /// The topic's settings file, where `[source] recording` would go.
        settings: PathBuf,
    },
    #[error("topic {topic}")]
    Output {
        topic: String,
        #[source]
        source: SinkError,
    },
}

impl SetupError {
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            SetupError::Source { source, .. } | SetupError::Recording { source, .. } => {
                source.class()
            }
            SetupError::NoSource { .. } => crate::error::ErrorClass::Config,
            SetupError::Output { source, .. } => source.class(),
        }
    }
}

impl RunEnvironment {
    /// The source of a topic's events: `recording` when given, else the
    /// topic's own (`[source] recording`), else the live Nakadi when there
    /// is one, else the topic's folder under [`Self::recordings`].
    pub fn source(&self, topic: &Topic, recording: Option<&Path>) -> Result<Source, SetupError> {
        let topic_name = || topic.name().to_string();
        if let Some(path) = recording {
            return RecordedSource::open(path)
                .map(Source::Recorded)
                .map_err(|source| SetupError::Source {
                    topic: topic_name(),
                    source,
                });
        }
        if let Some(path) = topic.recording() {
            return RecordedSource::open(&path)
                .map(Source::Recorded)
                .map_err(|source| SetupError::Recording {
                    topic: topic_name(),
                    settings: topic.dir().join(crate::config::TOPIC_FILE),
                    source,
                });
        }
        if let Some(client) = &self.nakadi {
            return Ok(Source::Nakadi(NakadiSource {
                subscription: topic.source().subscription().map(|settings| {
                    SubscriptionReader::new(
                        client.clone(),
                        topic.event_type().to_string(),
                        settings.clone(),
                    )
                }),
                client: client.clone(),
                event_type: topic.event_type().to_string(),
            }));
        }
        let path = self.recordings.join(topic.name());
        RecordedSource::open(&path)
            .map(Source::Recorded)
            .map_err(|source| match source {
                SourceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    SetupError::NoSource {
                        topic: topic_name(),
                        looked_at: path,
                        settings: topic.dir().join(crate::config::TOPIC_FILE),
                    }
                }
                source => SetupError::Source {
                    topic: topic_name(),
                    source,
                },
            })
    }

    /// A source for sample events of `topic`: as [`Self::source`], but a live
    /// Nakadi is always read with cursors, so that nothing is committed.
    pub fn sample_source(
        &self,
        topic: &Topic,
        recording: Option<&Path>,
    ) -> Result<Source, SetupError> {
        Ok(match self.source(topic, recording)? {
            Source::Nakadi(n) => Source::Nakadi(NakadiSource {
                subscription: None,
                client: n.client,
                event_type: n.event_type,
            }),
            recorded => recorded,
        })
    }

    /// Where a topic's files go.
    pub fn output(&self, topic: &Topic) -> Result<OutputLocation, SetupError> {
        let location = topic
            .output()
            .location
            .clone()
            .unwrap_or_else(|| self.output.clone());
        OutputLocation::parse(&location, &self.s3).map_err(|source| output_error(topic, source))
    }

    /// A run of `topic`, ready for [`super::execute`]. Fails when its output
    /// folder is not writable; logs a warning when the folder is thrown away
    /// with the container it runs in.
    pub fn request(
        &self,
        topic: Arc<Topic>,
        recording: Option<&Path>,
        progress: Arc<Progress>,
        cancel: CancellationToken,
    ) -> Result<RunRequest, SetupError> {
        let output = self.output(&topic)?;
        output
            .check_writable()
            .map_err(|source| output_error(&topic, source))?;
        if let Some(warning) = output.local_root.as_deref().and_then(lost_output_warning) {
            tracing::warn!(topic = %topic.name(), "{warning}");
        }
        Ok(RunRequest {
            source: Arc::new(self.source(&topic, recording)?),
            output,
            topic,
            progress,
            cancel,
            parallelism: self.parallelism.max(1),
            workers: self.workers.clone(),
        })
    }
}

fn output_error(topic: &Topic, source: SinkError) -> SetupError {
    SetupError::Output {
        topic: topic.name().to_string(),
        source,
    }
}
