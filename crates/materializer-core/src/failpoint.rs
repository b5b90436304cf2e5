//! Points where a test can make a run crash.
//!
//! Built only with the `failpoints` feature (the tests enable it; a release
//! build does not): with `MATERIALIZER_FAILPOINT=<name>` the process aborts at
//! the named point of a run, as a crash there would end it. Points: `planned`,
//! `reading` (after the first batch went to a decoder), `first-file-written`,
//! `state-compacting` (a compaction of the key state wrote its first merged
//! segment), `files-written` (all files and the key state, no manifest yet),
//! `committed` (manifest written, nothing after it), `post-committed`.
//!
//! A point can also panic instead of abort ([`panic_point`]), as a bug would:
//! `MATERIALIZER_FAILPOINT=<name>` with the points `info` (the API's `/info`
//! handler) and `run` (a run, after its plan).
//!
//! A point can also hold instead of abort ([`hold`]): with
//! `MATERIALIZER_FAILPOINT=<name>` and `MATERIALIZER_FAILPOINT_GATE=<path>`,
//! what reaches the named point creates `<path>.waiting` and waits there until
//! `<path>` exists. Points: `preview-turn` (a preview that has its turn,
//! before it starts), `commit` (a run whose files are written, before its
//! manifest), `markers` (a run whose manifest is written, before the
//! `_SUCCESS` markers and what else follows the commit), `partition-task` (a
//! cluster executor's task, before it reads its partition).

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

/// Panics when `MATERIALIZER_FAILPOINT` names this point.
#[cfg(feature = "failpoints")]
pub fn panic_point(name: &str) {
    if std::env::var("MATERIALIZER_FAILPOINT").is_ok_and(|point| point == name) {
        panic!("failpoint {name}: a panic, as a bug would make one");
    }
}

/// Without the `failpoints` feature, nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn panic_point(_name: &str) {}

/// Waits, when `MATERIALIZER_FAILPOINT` names this point, until the file
/// `MATERIALIZER_FAILPOINT_GATE` names exists; says that it waits with the
/// file of that name and `.waiting` appended.
#[cfg(feature = "failpoints")]
pub async fn hold(name: &str) {
    let held = std::env::var("MATERIALIZER_FAILPOINT").is_ok_and(|point| point == name);
    let Some(gate) = std::env::var_os("MATERIALIZER_FAILPOINT_GATE").filter(|_| held) else {
        return;
    };
    let mut waiting = gate.clone();
    waiting.push(".waiting");
    if let Err(e) = std::fs::write(&waiting, b"") {
        eprintln!(
            "failpoint {name}: {}: {e}",
            std::path::Path::new(&waiting).display()
        );
    }
    while !std::path::Path::new(&gate).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Without the `failpoints` feature, nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hold(_name: &str) {}
