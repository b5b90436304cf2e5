//! What the engine's errors have in common: a class that tells a scheduler
//! what to do about them, and a way to print one with all its causes.
//!
//! Every module has its own error enum that keeps its sources. An error's own
//! message never repeats its source's: [`Report`] prints the whole chain,
//! `outer: inner: innermost`, so that each cause appears once.

use std::fmt;

/// What kind of failure an error is. The command line exits with
/// [`ErrorClass::exit_code`]; the HTTP API names the class in the `type` of
/// its problem documents, so schedulers can retry the right things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// A flag, a setting or a topic's files are wrong: fix them, then run again.
    Config,
    /// The events could not be read: Nakadi unreachable or refusing after
    /// every retry, recordings missing. Retrying later may succeed.
    SourceUnavailable,
    /// The output location could not be read or written. Retrying later may succeed.
    SinkUnavailable,
    /// Another run of the topic holds it or committed first. Retry later.
    Conflict,
    /// The events cannot be processed as configured: an expired cursor,
    /// a query that fails on them, a recording that is not a stream.
    Data,
    /// The run was stopped on request; nothing of it is committed.
    Stopped,
    /// A failure the engine did not expect (a bug).
    Internal,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Config,
        ErrorClass::SourceUnavailable,
        ErrorClass::SinkUnavailable,
        ErrorClass::Conflict,
        ErrorClass::Data,
        ErrorClass::Stopped,
        ErrorClass::Internal,
    ];

    /// The process exit code of a command that failed this way.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Internal => 1,
            ErrorClass::Config => 2,
            ErrorClass::SourceUnavailable => 3,
            ErrorClass::SinkUnavailable => 4,
            ErrorClass::Conflict => 5,
            ErrorClass::Data => 6,
            ErrorClass::Stopped => 130,
        }
    }

    /// A short name: `source-unavailable`.
    pub fn slug(self) -> &'static str {
        match self {
            ErrorClass::Config => "config",
            ErrorClass::SourceUnavailable => "source-unavailable",
            ErrorClass::SinkUnavailable => "sink-unavailable",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Data => "data",
            ErrorClass::Stopped => "stopped",
            ErrorClass::Internal => "internal",
        }
    }

    /// A title for people.
    pub fn title(self) -> &'static str {
        match self {
            ErrorClass::Config => "Configuration error",
            ErrorClass::SourceUnavailable => "Event source unavailable",
            ErrorClass::SinkUnavailable => "Output location unavailable",
            ErrorClass::Conflict => "Another run holds the topic",
            ErrorClass::Data => "The events cannot be processed",
            ErrorClass::Stopped => "Run stopped",
            ErrorClass::Internal => "Internal error",
        }
    }

    /// What to do about it, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            ErrorClass::Config => {
                "Fix the flag, setting or topic file the message names, then run again; retrying as is fails the same way."
            }
            ErrorClass::SourceUnavailable => {
                "Nakadi (or the recordings) could not be read; retry later, or check the URL, the token and the network."
            }
            ErrorClass::SinkUnavailable => {
                "The output location could not be written; retry later, or check the location, its credentials and its space."
            }
            ErrorClass::Conflict => {
                "Another run of the topic was running or committed first; retry later (the next run continues where the committed one ended)."
            }
            ErrorClass::Data => {
                "The events cannot be processed as configured; read the message, fix the mapping or the source, then run again."
            }
            ErrorClass::Stopped => {
                "The run was stopped before its commit; nothing of it is visible and the next run redoes it."
            }
            ErrorClass::Internal => {
                "An unexpected failure; retrying may help, and the message is worth reporting."
            }
        }
    }

    /// Whether running again without changing anything may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::SourceUnavailable
                | ErrorClass::SinkUnavailable
                | ErrorClass::Conflict
                | ErrorClass::Stopped
                | ErrorClass::Internal
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// An error with all its causes: `outer: inner: innermost`. A cause whose
/// text the error before it already ends with (errors that repeat their
/// source in their own message) is said once.
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !said.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            said = text;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The whole chain of `error` as one line.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    Report(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("topic t")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("partition 0")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn a_report_names_every_cause_once() {
        let error = Outer(Inner(std::io::Error::other("disk full")));
        assert_eq!(report(&error), "topic t: partition 0: disk full");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("Arrow error: {0}")]
    struct Repeating(#[source] std::io::Error);

    #[test]
    fn a_cause_the_error_repeats_is_said_once() {
        let error = Outer(Inner(std::io::Error::other("disk full")));
        assert_eq!(report(&error), "topic t: partition 0: disk full");
        let error = Repeating(std::io::Error::other("Cast error: 'a' is no number"));
        assert_eq!(report(&error), "Arrow error: Cast error: 'a' is no number");
    }

    #[test]
    fn exit_codes_are_distinct() {
        let mut codes: Vec<u8> = ErrorClass::ALL.iter().map(|c| c.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorClass::ALL.len());
        assert!(!codes.contains(&0));
    }
}
