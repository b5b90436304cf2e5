//! How reading or writing a topic's plans and manifests fails.

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{action} {path}")]
    Store {
        action: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{action} {path}")]
    Local {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {message}")]
    Corrupt {
        path: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "run {seq} of this topic was committed by another process first; this attempt's output is not visible"
    )]
    LostRace { seq: u64 },
}

impl LedgerError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            LedgerError::Store { .. } | LedgerError::Local { .. } => ErrorClass::SinkUnavailable,
            LedgerError::Corrupt { .. } => ErrorClass::Data,
            LedgerError::LostRace { .. } => ErrorClass::Conflict,
        }
    }
}
