//! The server's data: event types with their partitions of events, and
//! subscriptions with their committed positions.
//!
//! Positions are event numbers within a partition; offsets are the numbers in
//! Nakadi's format, `001-0001-<number, 18 digits>`. A cursor names the last
//! event read, so reading "after offset n" starts at event n + 1, and `BEGIN`
//! starts at the oldest event still held.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::Value;

/// A partition as `GET /event-types/{name}/partitions` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionInfo {
    pub partition: String,
    pub oldest_available_offset: String,
    pub newest_available_offset: String,
}

/// Nakadi's offset of event `n`.
pub fn offset_of(n: u64) -> String {
    format!("001-0001-{n:018}")
}

/// The event number an offset names; `None` for `BEGIN`.
pub fn number_of(offset: &str) -> Result<Option<u64>, String> {
    let text = offset.trim();
    if text.eq_ignore_ascii_case("BEGIN") {
        return Ok(None);
    }
    let digits = text.rsplit('-').next().unwrap_or(text);
    let prefix_ok = text == digits || text.starts_with("001-0001-");
    match digits.parse::<u64>() {
        Ok(n) if prefix_ok => Ok(Some(n)),
        _ => Err(format!("offset {text:?} is not an offset of this server")),
    }
}

/// One partition: the events still held, from event number `first` on.
#[derive(Default)]
pub struct PartitionLog {
    pub first: u64,
    pub events: Vec<Bytes>,
}

impl PartitionLog {
    /// Number of the next event to be appended.
    pub fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    /// Events from number `from` on, at most `limit`.
    pub fn read(&self, from: u64, limit: usize) -> Vec<Bytes> {
        if from < self.first || from >= self.end() {
            return Vec::new();
        }
        let start = (from - self.first) as usize;
        let stop = (start + limit).min(self.events.len());
        self.events[start..stop].to_vec()
    }

    /// The first event to read after `offset` (a cursor), or why it cannot be read.
    pub fn start_after(&self, offset: &str) -> Result<u64, String> {
        match number_of(offset)? {
            None => Ok(self.first),
            Some(n) if n + 1 < self.first => Err(format!(
                "offset {offset} is no longer available: the oldest available offset is {}",
                offset_of(self.first)
            )),
            Some(n) if n >= self.end() => Err(format!(
                "offset {offset} is beyond the newest available offset {}",
                if self.end() == 0 {
                    "BEGIN".to_string()
                } else {
                    offset_of(self.end() - 1)
                }
            )),
            Some(n) => Ok(n + 1),
        }
    }

    /// The cursor naming the event before `next`.
    pub fn cursor_before(next: u64) -> String {
        if next == 0 {
            "BEGIN".into()
        } else {
            offset_of(next - 1)
        }
    }

    pub fn info(&self, partition: &str) -> PartitionInfo {
        PartitionInfo {
            partition: partition.to_string(),
            oldest_available_offset: offset_of(self.first),
            newest_available_offset: if self.end() == 0 {
                "BEGIN".to_string()
            } else {
                offset_of(self.end() - 1)
            },
        }
    }

    /// Drops the events before number `before` (retention).
    pub fn expire_before(&mut self, before: u64) {
        let drop = before
            .saturating_sub(self.first)
            .min(self.events.len() as u64) as usize;
        self.events.drain(..drop);
        self.first += drop as u64;
    }
}

/// How a published event finds its partition, as the event type's
/// `partition_strategy` says (Nakadi's default: `random`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionStrategy {
    /// Any partition, at random: a key's events spread over all of them.
    Random,
    /// The partition the values of these fields hash to (paths relative to
    /// `data` for data change events): a key's events stay in one.
    Hash(Vec<String>),
    /// The partition the publisher names in `metadata.partition`.
    UserDefined,
}

impl PartitionStrategy {
    /// The strategy an event type document declares, checked as Nakadi
    /// checks it: `hash` needs `partition_key_fields`, the others take none.
    pub fn of(document: &Value) -> Result<PartitionStrategy, String> {
        let fields: Vec<String> = document
            .get("partition_key_fields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let strategy = document
            .get("partition_strategy")
            .and_then(Value::as_str)
            .unwrap_or("random");
        match strategy {
            "hash" if fields.is_empty() => Err(
                "partition_strategy \"hash\" needs partition_key_fields: the fields whose values \
                 choose an event's partition"
                    .into(),
            ),
            "hash" => Ok(PartitionStrategy::Hash(fields)),
            "random" | "user_defined" if !fields.is_empty() => Err(format!(
                "partition_key_fields are only taken with partition_strategy \"hash\", not \
                 {strategy:?}"
            )),
            "random" => Ok(PartitionStrategy::Random),
            "user_defined" => Ok(PartitionStrategy::UserDefined),
            other => Err(format!(
                "unknown partition_strategy {other:?}: random (the default), hash or user_defined"
            )),
        }
    }
}

/// An event type and its partitions.
pub struct EventTypeLog {
    pub name: String,
    /// The event type document as `GET /event-types/{name}` serves it.
    pub document: Value,
    pub partition_names: Vec<String>,
    pub partitions: Vec<Mutex<PartitionLog>>,
    pub strategy: PartitionStrategy,
}

impl EventTypeLog {
    pub fn new(document: Value, partitions: usize) -> Result<EventTypeLog, String> {
        let name = document
            .get("name")
            .and_then(Value::as_str)
            .ok_or("an event type needs a name")?
            .to_string();
        let strategy = PartitionStrategy::of(&document)?;
        let partitions = partitions.max(1);
        Ok(EventTypeLog {
            name,
            document,
            partition_names: (0..partitions).map(|p| p.to_string()).collect(),
            partitions: (0..partitions)
                .map(|_| Mutex::new(PartitionLog::default()))
                .collect(),
            strategy,
        })
    }

    pub fn index_of(&self, partition: &str) -> Option<usize> {
        self.partition_names.iter().position(|p| p == partition)
    }

    pub fn category(&self) -> &str {
        self.document
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or("undefined")
    }

    pub fn infos(&self) -> Vec<PartitionInfo> {
        self.partitions
            .iter()
            .zip(&self.partition_names)
            .map(|(log, name)| log.lock().unwrap_or_else(|e| e.into_inner()).info(name))
            .collect()
    }
}

/// A subscription and the positions it has committed.
#[derive(Clone, Debug)]
pub struct SubscriptionState {
    pub id: String,
    pub owning_application: String,
    pub event_types: Vec<String>,
    pub consumer_group: String,
    pub created_at: String,
    /// Per (event type, partition): the next event number after the committed cursor.
    pub committed: BTreeMap<(String, String), u64>,
}

impl SubscriptionState {
    pub fn document(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "owning_application": self.owning_application,
            "event_types": self.event_types,
            "consumer_group": self.consumer_group,
            "created_at": self.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_strategy_is_read_as_nakadi_reads_it() {
        let doc = |extra: serde_json::Value| {
            let mut doc = serde_json::json!({"name": "t"});
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            doc
        };
        assert_eq!(
            PartitionStrategy::of(&doc(serde_json::json!({}))),
            Ok(PartitionStrategy::Random)
        );
        assert_eq!(
            PartitionStrategy::of(&doc(serde_json::json!({
                "partition_strategy": "hash", "partition_key_fields": ["a.b"]
            }))),
            Ok(PartitionStrategy::Hash(vec!["a.b".into()]))
        );
        assert_eq!(
            PartitionStrategy::of(&doc(
                serde_json::json!({"partition_strategy": "user_defined"})
            )),
            Ok(PartitionStrategy::UserDefined)
        );
        let hash_without_fields =
            PartitionStrategy::of(&doc(serde_json::json!({"partition_strategy": "hash"})));
        assert!(
            hash_without_fields
                .unwrap_err()
                .contains("needs partition_key_fields")
        );
        let fields_without_hash = PartitionStrategy::of(&doc(serde_json::json!({
            "partition_key_fields": ["a"]
        })));
        assert!(
            fields_without_hash
                .unwrap_err()
                .contains("only taken with partition_strategy \"hash\"")
        );
        let unknown = PartitionStrategy::of(&doc(serde_json::json!({"partition_strategy": "x"})));
        assert!(
            unknown
                .unwrap_err()
                .contains("unknown partition_strategy \"x\"")
        );
    }

    #[test]
    fn cursors_name_the_last_event_read() {
        let mut log = PartitionLog {
            first: 0,
            events: (0..5)
                .map(|i| Bytes::from(format!("{{\"n\":{i}}}")))
                .collect(),
        };
        assert_eq!(log.start_after("BEGIN"), Ok(0));
        assert_eq!(log.start_after(&offset_of(2)), Ok(3));
        assert_eq!(log.start_after(&offset_of(4)), Ok(5));
        assert!(
            log.start_after(&offset_of(5))
                .unwrap_err()
                .contains("beyond")
        );
        log.expire_before(3);
        assert_eq!(log.first, 3);
        assert_eq!(log.start_after(&offset_of(2)), Ok(3));
        assert!(
            log.start_after(&offset_of(0))
                .unwrap_err()
                .contains("no longer available")
        );
        assert_eq!(log.read(3, 10).len(), 2);
        assert_eq!(log.info("0").oldest_available_offset.as_str(), offset_of(3));
    }
}
