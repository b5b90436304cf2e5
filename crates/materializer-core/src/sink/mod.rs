//! Sink: where a run's files go and how they are written.
//!
//! Everything goes through `object_store`: S3 in production, the local file
//! system by default ([`location`]). File names are deterministic
//! ([`layout`]), so a retried run rewrites the names of its failed attempt
//! instead of adding new files. A file's bytes come from its format's
//! encoder ([`format`]); [`FileWriter`] streams them to the store
//! ([`ObjectWriter`]) and [`PartitionedWriter`] splits rows by output
//! partition.

pub mod ephemeral;
mod file;
pub mod format;
pub mod layout;
pub mod location;
mod object;
mod partitioned;

pub use file::{FileWriter, WrittenFile};
pub use layout::{FileKind, TopicLayout};
pub use location::{OutputLocation, S3Settings};
pub use object::{OPEN_FILE_BYTES, ObjectWriter, PART_BYTES};
pub use partitioned::{NULL_PARTITION_VALUE, PartitionedWriter, PathForPartition};

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
