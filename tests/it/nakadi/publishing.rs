//! Publishing to the Nakadi-compatible server over HTTP: each event type's
//! partition strategy places the events as Nakadi does (`random` by default,
//! `hash` on the partition key fields, `user_defined` where the publisher
//! says), and a batch with an event that cannot be placed is refused whole.

use std::collections::{BTreeMap, BTreeSet};

use nakadi_testkit::Bus;
use serde_json::{Value, json};

use crate::support::Workspace;

const PARTITIONS: usize = 4;

/// The article event type under `name` with `strategy` (and the article as
/// the hash key when it is `hash`).
fn event_type(ws: &Workspace, name: &str, strategy: Option<&str>) -> Value {
    let mut doc: Value = serde_json::from_str(
        &std::fs::read_to_string(ws.sql().join(super::TOPIC).join("schema.json")).unwrap(),
    )
    .unwrap();
    let object = doc.as_object_mut().unwrap();
    object.insert("name".into(), name.into());
    object.remove("partition_key_fields");
    object.remove("partition_strategy");
    if let Some(strategy) = strategy {
        object.insert("partition_strategy".into(), strategy.into());
    }
    if strategy == Some("hash") {
        object.insert("partition_key_fields".into(), json!(["article_id"]));
    }
    doc
}

fn article(n: u64, article: u64, partition: Option<&str>) -> Value {
    let mut event = json!({
        "metadata": {
            "eid": format!("00000000-0000-4000-8000-{n:012x}"),
            "occurred_at": "2024-06-03T10:00:00.000Z"
        },
        "article_id": article,
        "brand": "Nike",
        "model": "Air",
        "version": n,
        "available_qty": 1
    });
    if let Some(partition) = partition {
        event["metadata"]["partition"] = partition.into();
    }
    event
}

async fn publish(url: &str, name: &str, events: &[Value]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/event-types/{name}/events"))
        .json(events)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Per article, the partitions its events are in, as the server stored them
/// (with `metadata.partition` telling the same).
fn placement(bus: &Bus, name: &str) -> BTreeMap<u64, BTreeSet<String>> {
    let mut placed: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let partition = p.to_string();
        for event in bus.events_in(name, &partition).unwrap() {
            assert_eq!(event["metadata"]["partition"], partition.as_str());
            let article = event["article_id"].as_u64().unwrap();
            placed.entry(article).or_default().insert(partition.clone());
        }
    }
    placed
}

#[tokio::test]
async fn events_go_where_the_partition_strategy_says() {
    let ws = Workspace::new();
    let bus = Bus::new(None, PARTITIONS);
    for (name, strategy) in [
        ("articles.default", None),
        ("articles.random", Some("random")),
        ("articles.hash", Some("hash")),
        ("articles.user", Some("user_defined")),
    ] {
        bus.add_event_type(event_type(&ws, name, strategy), PARTITIONS)
            .unwrap();
    }
    // Random, yet the same at every run of the test.
    bus.seed_partitions(3);
    let (address, _server) = bus.start("127.0.0.1:0").await.unwrap();
    let url = format!("http://{address}");
    // Ten articles, twenty events each, naming partition 0: only the
    // user_defined strategy takes the publisher's word.
    let events: Vec<Value> = (0..200)
        .map(|n| article(n, 1000 + n % 10, Some("0")))
        .collect();

    for name in ["articles.default", "articles.random"] {
        assert_eq!(publish(&url, name, &events).await.0, 200, "{name}");
        let placed = placement(&bus, name);
        let used: BTreeSet<&String> = placed.values().flatten().collect();
        assert_eq!(used.len(), PARTITIONS, "{name}: {placed:?}");
        assert!(
            placed.values().all(|p| p.len() > 1),
            "{name}: an article's events spread over the partitions: {placed:?}"
        );
    }

    assert_eq!(publish(&url, "articles.hash", &events).await.0, 200);
    let placed = placement(&bus, "articles.hash");
    assert!(placed.values().all(|p| p.len() == 1), "{placed:?}");
    assert!(placed.values().flatten().collect::<BTreeSet<_>>().len() > 1);

    assert_eq!(publish(&url, "articles.user", &events).await.0, 200);
    let placed = placement(&bus, "articles.user");
    assert!(placed.values().all(|p| p.iter().eq(["0"])), "{placed:?}");

    // A batch with an event naming no partition, and one naming a partition
    // that does not exist, is refused whole; the others are aborted.
    let before = bus.events_in("articles.user", "1").unwrap().len();
    let refused = [
        article(500, 1, Some("1")),
        article(501, 1, None),
        article(502, 1, Some("7")),
    ];
    let (status, items) = publish(&url, "articles.user", &refused).await;
    assert_eq!(status, 422, "{items}");
    let statuses: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["publishing_status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["aborted", "failed", "failed"]);
    assert!(
        items[1]["detail"]
            .as_str()
            .unwrap()
            .contains("metadata.partition is required"),
        "{items}"
    );
    assert!(
        items[2]["detail"]
            .as_str()
            .unwrap()
            .contains("partition \"7\", which does not exist"),
        "{items}"
    );
    assert_eq!(items[1]["eid"], "00000000-0000-4000-8000-0000000001f5");
    assert_eq!(
        bus.events_in("articles.user", "1").unwrap().len(),
        before,
        "nothing of a refused batch is published"
    );

    // An event type that asks for `hash` without keys is refused.
    let response = reqwest::Client::new()
        .post(format!("{url}/event-types"))
        .json(
            &event_type(&ws, "articles.broken", Some("hash"))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("partition_key_fields");
                    o
                }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("needs partition_key_fields"),
        "{problem}"
    );
}
