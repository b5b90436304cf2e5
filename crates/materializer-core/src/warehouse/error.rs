//! How generating a topic's warehouse SQL fails.

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "topic {topic}: the mapping's output has no column {column:?} for the {what}; add it to the \
         output view or name the column in topic.toml ([warehouse] {setting})"
    )]
    MissingColumn {
        topic: String,
        what: &'static str,
        column: String,
        setting: &'static str,
    },
    #[error("topic {topic}: {message}")]
    Unsupported { topic: String, message: String },
    #[error(
        "topic {topic}: run {sequence} was committed by an earlier release, which kept no description \
         of its files; its SQL is written from the topic as it is now, which needs the topic to load \
         (its schema.json, or --nakadi-url): {reason}"
    )]
    NoShape {
        topic: String,
        sequence: u64,
        /// Why the topic does not load now.
        reason: String,
    },
}

impl WarehouseError {
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}
