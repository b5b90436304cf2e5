//! Subscriptions: creating (or finding) them, showing and deleting them,
//! their committed cursors, the commits of their streams, and their stats.
//! The streams themselves are in [`super::subscription_stream`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::subscription_stream::holder;
use super::{Bus, lock, new_id, problem, token_for, unknown_subscription};
use crate::log::{PartitionLog, SubscriptionState};

impl Bus {
    /// The streams of `subscription` whose id a commit may still name: open
    /// ones, and closed ones within their commit timeout.
    pub fn streams_accepting_commits(&self, subscription: &str) -> usize {
        lock(&self.sessions)
            .values()
            .filter(|s| s.subscription == subscription && s.accepts_commits())
            .count()
    }

    /// The committed cursors of a subscription, by partition.
    pub fn committed(&self, subscription: &str) -> Option<BTreeMap<String, String>> {
        let subs = lock(&self.subscriptions);
        let sub = subs.get(subscription)?;
        Some(
            sub.committed
                .iter()
                .map(|((_, p), next)| (p.clone(), PartitionLog::cursor_before(*next)))
                .collect(),
        )
    }
}

#[derive(Deserialize)]
pub(super) struct NewSubscription {
    owning_application: String,
    event_types: Vec<String>,
    #[serde(default = "default_group")]
    consumer_group: String,
    #[serde(default)]
    read_from: Option<String>,
    #[serde(default)]
    initial_cursors: Option<Vec<Value>>,
}

fn default_group() -> String {
    "default".into()
}

pub(super) async fn create_subscription(
    State(bus): State<Arc<Bus>>,
    Json(wanted): Json<NewSubscription>,
) -> Response {
    if wanted.owning_application.is_empty() || wanted.event_types.is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "owning_application and event_types are required",
        );
    }
    let mut event_types = wanted.event_types.clone();
    event_types.sort();
    let mut subs = lock(&bus.subscriptions);
    if let Some(existing) = subs.values().find(|s| {
        let mut theirs = s.event_types.clone();
        theirs.sort();
        s.owning_application == wanted.owning_application
            && s.consumer_group == wanted.consumer_group
            && theirs == event_types
    }) {
        return (StatusCode::OK, Json(existing.document())).into_response();
    }
    let mut committed = BTreeMap::new();
    for name in &event_types {
        let Some(log) = bus.event_type(name) else {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("EventType \"{name}\" does not exist."),
            );
        };
        for (p, partition) in log.partition_names.iter().zip(&log.partitions) {
            let partition = lock(partition);
            let next = match wanted.read_from.as_deref().unwrap_or("end") {
                "begin" => partition.first,
                "end" => partition.end(),
                "cursors" => {
                    let given = wanted.initial_cursors.iter().flatten().find(|c| {
                        c.get("event_type").and_then(Value::as_str) == Some(name.as_str())
                            && c.get("partition").and_then(Value::as_str) == Some(p.as_str())
                    });
                    match given.and_then(|c| c.get("offset")).and_then(Value::as_str) {
                        Some(offset) => match partition.start_after(offset) {
                            Ok(next) => next,
                            Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e),
                        },
                        None => {
                            return problem(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                format!("initial_cursors miss partition {p} of {name}"),
                            );
                        }
                    }
                }
                other => {
                    return problem(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("read_from {other:?} is not supported"),
                    );
                }
            };
            committed.insert((name.clone(), p.clone()), next);
        }
    }
    let state = SubscriptionState {
        id: new_id(),
        owning_application: wanted.owning_application,
        event_types,
        consumer_group: wanted.consumer_group,
        created_at: chrono::Utc::now().to_rfc3339(),
        committed,
    };
    let document = state.document();
    subs.insert(state.id.clone(), state);
    (StatusCode::CREATED, Json(document)).into_response()
}

pub(super) async fn get_subscription(
    State(bus): State<Arc<Bus>>,
    Path(id): Path<String>,
) -> Response {
    match lock(&bus.subscriptions).get(&id) {
        Some(s) => Json(s.document()).into_response(),
        None => unknown_subscription(&id),
    }
}

pub(super) async fn delete_subscription(
    State(bus): State<Arc<Bus>>,
    Path(id): Path<String>,
) -> Response {
    match lock(&bus.subscriptions).remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => unknown_subscription(&id),
    }
}

pub(super) async fn get_cursors(State(bus): State<Arc<Bus>>, Path(id): Path<String>) -> Response {
    let subs = lock(&bus.subscriptions);
    let Some(sub) = subs.get(&id) else {
        return unknown_subscription(&id);
    };
    let items: Vec<Value> = sub
        .committed
        .iter()
        .map(|((et, p), next)| {
            json!({"partition": p, "offset": PartitionLog::cursor_before(*next), "event_type": et, "cursor_token": token_for(*next)})
        })
        .collect();
    Json(json!({ "items": items })).into_response()
}

#[derive(Deserialize)]
pub(super) struct CommitBody {
    items: Vec<CommitCursor>,
}

#[derive(Deserialize)]
struct CommitCursor {
    partition: String,
    offset: String,
    event_type: String,
    #[serde(default)]
    cursor_token: Option<String>,
}

pub(super) async fn commit_cursors(
    State(bus): State<Arc<Bus>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CommitBody>,
) -> Response {
    let Some(stream_id) = headers
        .get("X-Nakadi-StreamId")
        .and_then(|v| v.to_str().ok())
    else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "X-Nakadi-StreamId header is missing",
        );
    };
    let sent_next = {
        let sessions = lock(&bus.sessions);
        let usable = sessions
            .get(stream_id)
            .filter(|s| s.subscription == id && s.accepts_commits());
        match usable {
            Some(s) => s.sent_next.clone(),
            None => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Session with stream id {stream_id} not found"),
                );
            }
        }
    };
    let mut subs = lock(&bus.subscriptions);
    let Some(sub) = subs.get_mut(&id) else {
        return unknown_subscription(&id);
    };
    let mut results = Vec::new();
    let mut all_committed = true;
    for cursor in body.items {
        if cursor.cursor_token.as_deref().unwrap_or("").is_empty() {
            return problem(StatusCode::UNPROCESSABLE_ENTITY, "cursor_token is required");
        }
        let key = (cursor.event_type.clone(), cursor.partition.clone());
        let Some(&committed) = sub.committed.get(&key) else {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "partition {} of {} is not part of this subscription",
                    cursor.partition, cursor.event_type
                ),
            );
        };
        let next = match crate::log::number_of(&cursor.offset) {
            Ok(Some(n)) => n + 1,
            Ok(None) => 0,
            Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e),
        };
        if next > sent_next.get(&key).copied().unwrap_or(0) {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "cursor {} of partition {} was not sent to stream {stream_id}",
                    cursor.offset, cursor.partition
                ),
            );
        }
        let result = if next > committed {
            sub.committed.insert(key, next);
            "committed"
        } else {
            all_committed = false;
            "outdated"
        };
        results.push(json!({
            "cursor": {"partition": cursor.partition, "offset": cursor.offset, "event_type": cursor.event_type, "cursor_token": cursor.cursor_token},
            "result": result,
        }));
    }
    drop(subs);
    bus.changed.notify_waiters();
    if all_committed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::OK, Json(json!({ "items": results }))).into_response()
    }
}

pub(super) async fn get_stats(State(bus): State<Arc<Bus>>, Path(id): Path<String>) -> Response {
    let Some(sub) = lock(&bus.subscriptions).get(&id).cloned() else {
        return unknown_subscription(&id);
    };
    let sessions = lock(&bus.sessions);
    let mut per_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, next) in &sub.committed {
        let (event_type, partition) = key;
        let active = holder(&sessions, &id, key);
        let end = bus
            .event_type(event_type)
            .and_then(|log| {
                log.index_of(partition)
                    .map(|i| lock(&log.partitions[i]).end())
            })
            .unwrap_or(0);
        let mut entry = json!({
            "partition": partition,
            "state": if active.is_some() { "assigned" } else { "unassigned" },
            "unconsumed_events": end.saturating_sub(*next),
        });
        if let Some(stream_id) = active {
            entry["stream_id"] = json!(stream_id);
            entry["assignment_type"] = json!("auto");
        }
        per_type.entry(event_type.clone()).or_default().push(entry);
    }
    let items: Vec<Value> = per_type
        .into_iter()
        .map(|(event_type, partitions)| json!({"event_type": event_type, "partitions": partitions}))
        .collect();
    Json(json!({ "items": items })).into_response()
}
