//! Sink: where a run's files go and how they are written.
//!
//! Everything goes through `object_store`: S3 in production, the local file
//! system by default. File names are deterministic ([`layout`]), so a retried
//! run rewrites the names of its failed attempt instead of adding new files.

pub mod csv;
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
    #[error("writing {path}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("encoding {path}: {message}")]
    Encode { path: String, message: String },
}

impl SinkError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            SinkError::Location { .. } => ErrorClass::Config,
            SinkError::Store { .. } => ErrorClass::SinkUnavailable,
            SinkError::Encode { .. } => ErrorClass::Data,
        }
    }
}
