//! Points where a test can make a run crash.
//!
//! Built only with the `failpoints` feature (the tests enable it; a release
//! build does not): with `MATERIALIZER_FAILPOINT=<name>` the process aborts at
//! the named point of a run, as a crash there would end it. Points: `planned`,
//! `reading` (after the first batch went to a decoder), `first-file-written`,
//! `state-compacting` (a compaction of the key state wrote its first merged
//! segment), `files-written` (all files and the key state, no manifest yet),
//! `committed` (manifest written, nothing after it), `post-committed`.

/// Aborts the process when `MATERIALIZER_FAILPOINT` names this point.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::LazyLock;
    static POINT: LazyLock<Option<String>> =
        LazyLock::new(|| std::env::var("MATERIALIZER_FAILPOINT").ok());
    if POINT.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

/// Without the `failpoints` feature, nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}
