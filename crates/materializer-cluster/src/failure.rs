//! A failure's class across the cluster: Ballista hands the driver a task's
//! error as text (formatted with `{:?}`, quotes escaped), so the class and
//! the message travel in a marker of hex digits no formatting changes.

use datafusion::common::DataFusionError;
use materializer_core::ErrorClass;
use materializer_core::run::remote::RemoteFailure;

const OPEN: &str = "[materializer-failure:";
const CLOSE: char = ']';

/// The error a task returns for `failure`: a source or output location
/// that is unavailable is an I/O error, which Ballista retries on another
/// try of the task; anything else fails the job at once.
pub(crate) fn to_task_error(failure: &RemoteFailure) -> DataFusionError {
    let marked = format!(
        "{}{OPEN}{}:{}{CLOSE}",
        failure.message,
        failure.class.slug(),
        hex::encode(failure.message.as_bytes())
    );
    match failure.class {
        ErrorClass::SourceUnavailable | ErrorClass::SinkUnavailable => {
            DataFusionError::IoError(std::io::Error::other(marked))
        }
        _ => DataFusionError::Execution(marked),
    }
}

/// The failure a task reported, found in the text of a job's error.
pub(crate) fn from_job_error(text: &str) -> Option<RemoteFailure> {
    let start = text.find(OPEN)? + OPEN.len();
    let rest = &text[start..];
    let end = rest.find(CLOSE)?;
    let (slug, digits) = rest[..end].split_once(':')?;
    let class = ErrorClass::ALL.into_iter().find(|c| c.slug() == slug)?;
    let message = String::from_utf8(hex::decode(digits).ok()?).ok()?;
    Some(RemoteFailure { class, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_survives_the_debug_formatting_of_a_job_error() {
        let failure = RemoteFailure {
            class: ErrorClass::Data,
            message: "topic \"t\": partition 0, offset 7:\n cast('paid' AS INT) ü".into(),
        };
        let error = to_task_error(&failure);
        assert!(matches!(error, DataFusionError::Execution(_)));
        let text = format!("Job abc failed: Task failed due to runtime execution error: {error:?}");
        let back = from_job_error(&text).expect("the marker is found");
        assert_eq!(back.class, ErrorClass::Data);
        assert_eq!(back.message, failure.message);
    }

    #[test]
    fn an_unavailable_source_is_an_io_error_ballista_retries() {
        let failure = RemoteFailure {
            class: ErrorClass::SourceUnavailable,
            message: "Nakadi refused".into(),
        };
        assert!(matches!(
            to_task_error(&failure),
            DataFusionError::IoError(_)
        ));
    }

    #[test]
    fn text_without_a_marker_is_not_a_reported_failure() {
        assert!(from_job_error("Job x failed: executor lost").is_none());
        assert!(from_job_error("[materializer-failure:data:0g]").is_none());
    }
}
