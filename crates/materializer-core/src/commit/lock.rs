//! One run per topic and output location in a process: a second one would
//! only race the first to the same commit.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use crate::sink::OutputLocation;

/// Topics running in this process, by output location: a second run of one
/// is refused up front.
static ACTIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Held while a run of a topic goes on; dropping it lets the next one start.
pub struct TopicLock(String);

fn lock_key(output: &OutputLocation, topic: &str) -> String {
    format!("{}/{topic}", output.url.trim_end_matches('/'))
}

impl TopicLock {
    /// The lock of `topic` in `output`; `None` while another run holds it.
    pub fn acquire(output: &OutputLocation, topic: &str) -> Option<TopicLock> {
        let key = lock_key(output, topic);
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        // Lazily: a lock made and dropped here would unlock the other run's.
        active.insert(key.clone()).then(|| TopicLock(key))
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
