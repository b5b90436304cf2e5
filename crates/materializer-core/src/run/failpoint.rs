//! Points where a test can make a run crash.

use std::sync::LazyLock;

/// Testing aid: with `MATERIALIZER_FAILPOINT=<name>` the process aborts at the
/// named point of a run, as a crash there would end it. Points: `planned`,
/// `reading` (after the first batch went to a decoder), `first-file-written`,
/// `files-written` (all files, no manifest yet), `committed` (manifest written,
/// nothing after it), `post-committed`.
pub fn failpoint(name: &str) {
    static POINT: LazyLock<Option<String>> =
        LazyLock::new(|| std::env::var("MATERIALIZER_FAILPOINT").ok());
    if POINT.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}
