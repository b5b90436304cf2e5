//! One run per topic and output location in a process.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use super::RunFailure;
use crate::sink::OutputLocation;

/// Topics running in this process, by output location: a second run of one
/// is refused up front.
static ACTIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

pub(super) struct TopicLock(String);

fn lock_key(output: &OutputLocation, topic: &str) -> String {
    format!("{}/{topic}", output.url.trim_end_matches('/'))
}

impl TopicLock {
    pub(super) fn acquire(output: &OutputLocation, topic: &str) -> Result<TopicLock, RunFailure> {
        let key = lock_key(output, topic);
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if !active.insert(key.clone()) {
            return Err(RunFailure::AlreadyRunning);
        }
        Ok(TopicLock(key))
    }
}

impl Drop for TopicLock {
    fn drop(&mut self) {
        ACTIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// Whether a topic has a run to `output` in this process now.
pub fn is_running(output: &OutputLocation, topic: &str) -> bool {
    ACTIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&lock_key(output, topic))
}
