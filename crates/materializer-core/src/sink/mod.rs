//! Sink: where a run's files go and how they are written.
//!
//! Everything goes through `object_store`: S3 in production, the local file
//! system by default. File names are deterministic ([`layout`]), so a retried
//! run rewrites the names of its failed attempt instead of adding new files.

pub mod csv;
pub mod ephemeral;
pub mod file;
pub mod layout;
pub mod location;

pub use file::{FileWriter, ObjectWriter, PartitionedWriter, WrittenFile};
pub use layout::{FileKind, TopicLayout};
pub use location::{OutputLocation, S3Settings};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("output location {location:?}: {message}")]
    Location { location: String, message: String },
    #[error(
        "the output folder {} is not writable by {user}: give this user or its group \
         write access, mount a writable volume there, or write to s3://bucket/prefix",
        folder.display()
    )]
    NotWritable {
        folder: std::path::PathBuf,
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("uploading {path}")]
    Upload {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding {path}")]
    Encode {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("output.partition_by names {column:?}, which is not an output column")]
    PartitionColumn { column: String },
}

impl SinkError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            SinkError::Location { .. } | SinkError::NotWritable { .. } => ErrorClass::Config,
            SinkError::Store { .. } | SinkError::Upload { .. } => ErrorClass::SinkUnavailable,
            SinkError::Encode { .. } => ErrorClass::Data,
            SinkError::PartitionColumn { .. } => ErrorClass::Config,
        }
    }
}
