//! A topic of the tests' own (one row per order line, test orders filtered
//! out, deletes) and a data change event type: the ODS and the history
//! mirror the source, with and without history, deletes included.

use std::collections::BTreeMap;

use super::{Rng, Row, TOPIC, json_rows, load_recorded_runs, micros};
use crate::servers::postgres;
use crate::support::Workspace;

/// A topic of this test's own: one row per order line with plain `unnest`
/// (an order whose newest version has no lines has no row), test orders
/// filtered out, and `status = 'deleted'` deleting the order.
pub(super) const LINES_TOPIC: &str = "order-lines";

pub(super) fn write_lines_topic(ws: &Workspace, partition_by: bool, history: bool) {
    let dir = ws.sql().join(LINES_TOPIC);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        ws.sql().join(TOPIC).join("schema.json"),
        dir.join("schema.json"),
    )
    .unwrap();
    let partitions = if partition_by {
        "partition_by = [\"status\"]\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("topic.toml"),
        format!(
            "event_type = \"shop.order-placed\"\npartitioning_key = \"order_number\"\n\
             ordering_key = \"metadata.occurred_at\"\ndelete_when = \"status = 'deleted'\"\n\n\
             [output]\nformat = \"csv\"\n{partitions}\n[warehouse]\nhistory = {history}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("mapping.sql"),
        "CREATE VIEW lines AS\n\
         SELECT order_number, status, metadata.occurred_at AS occurred_at, unnest(items) AS item\n\
         FROM events WHERE status <> 'test';\n\n\
         CREATE VIEW output AS\n\
         SELECT order_number, status, occurred_at, item.sku AS sku, item.quantity AS quantity\n\
         FROM lines;\n",
    )
    .unwrap();
}

/// One arrival of one version of one order.
#[derive(Clone)]
pub(super) struct Arrival {
    pub(super) order: String,
    pub(super) partition: u32,
    /// Milliseconds into the day: the ordering key.
    pub(super) at: u64,
    status: &'static str,
    /// `None`: `items` is null.
    pub(super) items: Option<Vec<(String, u64)>>,
}

impl Arrival {
    fn occurred_at(&self) -> String {
        let (h, m, s, ms) = (
            self.at / 3_600_000,
            self.at / 60_000 % 60,
            self.at / 1000 % 60,
            self.at % 1000,
        );
        format!("2024-06-03T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }

    pub(super) fn json(&self, eid: u64) -> String {
        let items = match &self.items {
            None => serde_json::Value::Null,
            Some(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q, "unit_price": {"amount": 1.5, "currency": "EUR"}, "discounts": []}))
                    .collect(),
            ),
        };
        serde_json::json!({
            "metadata": {"eid": format!("00000000-0000-4000-8000-{eid:012x}"), "occurred_at": self.occurred_at(), "event_type": "shop.order-placed"},
            "order_number": self.order,
            "status": self.status,
            "placed_at": "2024-06-03T07:59:00.000Z",
            "customer": {"id": "C-1"},
            "items": items,
        })
        .to_string()
    }
}

/// Versions of orders over `runs` runs: empty and null arrays, test orders,
/// deletes, late deletes, redeliveries, late versions across run boundaries;
/// each order in one of two partitions, as a hash partition strategy keeps it.
fn line_runs(orders: usize, runs: usize, seed: u64) -> Vec<Vec<Arrival>> {
    generate_line_runs(orders, runs, seed, Spread::ByOrder)
}

/// How arrivals fall on partitions.
#[derive(Clone, Copy)]
pub(super) enum Spread {
    /// An order's arrivals in one of two partitions (a hash strategy).
    ByOrder,
    /// Every arrival in any of `partitions` partitions (the random strategy);
    /// with `distinct_copies`, a redelivered version carries other rows than
    /// its first copy, so that which copy wins shows.
    Random {
        partitions: u32,
        distinct_copies: bool,
    },
}

/// [`line_runs`] with arrivals spread over partitions as `spread` says.
pub(super) fn generate_line_runs(
    orders: usize,
    runs: usize,
    seed: u64,
    spread: Spread,
) -> Vec<Vec<Arrival>> {
    let mut rng = Rng(seed);
    let mut per_run: Vec<Vec<Arrival>> = vec![Vec::new(); runs];
    for o in 0..orders {
        let order = format!("ORD-{o:05}");
        let partition = (o % 2) as u32;
        let first_run = o * runs / orders;
        let count = 1 + rng.next(5) as usize;
        let mut at = 8 * 3_600_000 + rng.next(1000);
        let mut versions = Vec::new();
        for _ in 0..count {
            at += 1 + rng.next(5000);
            let status = ["placed", "paid", "shipped", "test", "deleted"][rng.next(5) as usize];
            let items = match rng.next(6) {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(
                    (0..1 + rng.next(3))
                        .map(|i| (format!("SKU-{i}-{}", rng.next(30)), 1 + rng.next(4)))
                        .collect(),
                ),
            };
            versions.push(Arrival {
                order: order.clone(),
                partition,
                at,
                status,
                items,
            });
        }
        let mut arrivals: Vec<(usize, Arrival)> =
            versions.iter().cloned().map(|v| (first_run, v)).collect();
        match rng.next(6) {
            0 if arrivals.len() > 1 => arrivals.swap(0, 1),
            1 if arrivals.len() > 1 && first_run + 1 < runs => {
                // An older version (perhaps a delete) arrives a run or more later.
                arrivals[0].0 = first_run + 1 + rng.next((runs - first_run - 1) as u64) as usize;
            }
            2 => {
                let mut again = arrivals[rng.next(arrivals.len() as u64) as usize].1.clone();
                if let Spread::Random {
                    distinct_copies: true,
                    ..
                } = spread
                    && let Some(items) = &mut again.items
                {
                    for (_, quantity) in items {
                        *quantity += 10;
                    }
                }
                let run = first_run + rng.next((runs - first_run) as u64) as usize;
                arrivals.push((run, again));
            }
            3 if first_run + 1 < runs => {
                let last = arrivals.len() - 1;
                arrivals[last].0 = first_run + 1;
            }
            _ => {}
        }
        for (run, mut arrival) in arrivals {
            if let Spread::Random { partitions, .. } = spread {
                arrival.partition = rng.next(u64::from(partitions)) as u32;
            }
            per_run[run].push(arrival);
        }
    }
    per_run
}

/// The partitions `arrivals` fall on, in partition order.
fn partitions_of(arrivals: &[Arrival]) -> Vec<u32> {
    let mut partitions: Vec<u32> = arrivals.iter().map(|a| a.partition).collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

pub(super) fn line_records(
    arrivals: &[Arrival],
    offsets: &mut BTreeMap<u32, u64>,
    eid: &mut u64,
) -> Vec<String> {
    let mut lines = Vec::new();
    for partition in partitions_of(arrivals) {
        let events: Vec<String> = arrivals
            .iter()
            .filter(|a| a.partition == partition)
            .map(|a| {
                *eid += 1;
                a.json(*eid)
            })
            .collect();
        for chunk in events.chunks(5) {
            let next = offsets.entry(partition).or_insert(0);
            *next += chunk.len() as u64;
            lines.push(format!(
                r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{:018}"}},"events":[{}]}}"#,
                *next - 1,
                chunk.join(",")
            ));
        }
    }
    lines
}

/// (order, status, occurred_at µs, sku, quantity) rows of a version, as the
/// mapping makes them: one per line, none for a test order or no lines.
fn version_rows(a: &Arrival) -> Vec<Row> {
    if a.status == "test" {
        return Vec::new();
    }
    a.items
        .iter()
        .flatten()
        .map(|(sku, q)| {
            vec![
                Some(a.order.clone()),
                Some(a.status.to_string()),
                Some(micros(&a.occurred_at())),
                Some(sku.clone()),
                Some(q.to_string()),
            ]
        })
        .collect()
}

/// Per order, its distinct versions by ordering key. Of equal ones the last
/// counts: the last to arrive, run after run; within a run, of the partition
/// that sorts last (partitions have no order between them; the README fixes
/// this one).
pub(super) fn versions_by_order(runs: &[Vec<Arrival>]) -> BTreeMap<String, BTreeMap<u64, Arrival>> {
    let mut orders: BTreeMap<String, BTreeMap<u64, Arrival>> = BTreeMap::new();
    for run in runs {
        // Within a run, arrival order is per partition, as recorded.
        for partition in partitions_of(run) {
            for a in run.iter().filter(|a| a.partition == partition) {
                orders
                    .entry(a.order.clone())
                    .or_default()
                    .insert(a.at, a.clone());
            }
        }
    }
    orders
}

/// The ODS the raw events call for: every order's newest version's rows.
pub(super) fn expected_ods(runs: &[Vec<Arrival>]) -> Vec<Row> {
    let mut rows: Vec<Row> = versions_by_order(runs)
        .values()
        .filter_map(|versions| versions.values().next_back())
        .filter(|newest| newest.status != "deleted")
        .flat_map(version_rows)
        .collect();
    rows.sort();
    rows
}

/// The history the raw events call for: every version's rows, valid until
/// the next version of its order (the newest current), a delete as a row of
/// its own.
pub(super) fn expected_history(runs: &[Vec<Arrival>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for versions in versions_by_order(runs).values() {
        let ats: Vec<u64> = versions.keys().copied().collect();
        for (i, version) in versions.values().enumerate() {
            let valid_to = ats.get(i + 1).map(|next| {
                let to = Arrival {
                    at: *next,
                    ..version.clone()
                };
                micros(&to.occurred_at())
            });
            // A delete is a row of its own: the key and the ordering key.
            let deleted = version.status == "deleted";
            let version_rows = if deleted {
                vec![vec![
                    Some(version.order.clone()),
                    None,
                    Some(micros(&version.occurred_at())),
                    None,
                    None,
                ]]
            } else {
                version_rows(version)
            };
            for mut row in version_rows {
                row.push(Some(micros(&version.occurred_at())));
                row.push(valid_to.clone());
                row.push(Some(deleted.to_string()));
                row.push(Some(valid_to.is_none().to_string()));
                rows.push(row);
            }
        }
    }
    rows.sort();
    rows
}

/// Asserts equal sorted rows, naming (at most ten of) those that differ.
pub(super) fn same_rows(got: &[Row], want: &[Row], what: &str) {
    let missing: Vec<&Row> = want.iter().filter(|r| !got.contains(r)).take(10).collect();
    let extra: Vec<&Row> = got.iter().filter(|r| !want.contains(r)).take(10).collect();
    assert!(
        got == want,
        "{what}: {} rows, {} expected; missing {missing:?}; not expected {extra:?}",
        got.len(),
        want.len()
    );
}

pub(super) fn table_rows(database: &str, table: &str, history: bool) -> Vec<Row> {
    let range = if history {
        ", (extract(epoch FROM valid_from) * 1000000)::bigint::text, \
         (extract(epoch FROM valid_to) * 1000000)::bigint::text, deleted::text, is_current::text"
    } else {
        ""
    };
    let json = postgres()
        .psql(
            database,
            &format!(
                "SELECT coalesce(json_agg(json_build_array(order_number, status, \
                 (extract(epoch FROM occurred_at) * 1000000)::bigint::text, sku, quantity::text{range})), '[]') FROM {table};"
            ),
        )
        .unwrap();
    json_rows(&json)
}

pub(super) async fn load_line_runs(ws: &Workspace, runs: &[Vec<Arrival>], label: &str) -> String {
    let (mut offsets, mut eid) = (BTreeMap::new(), 0);
    let recorded: Vec<Vec<String>> = runs
        .iter()
        .map(|run| line_records(run, &mut offsets, &mut eid))
        .collect();
    load_recorded_runs(ws, LINES_TOPIC, &recorded, label)
        .await
        .0
}

#[tokio::test]
async fn the_ods_and_the_history_mirror_the_source_with_empty_versions_filters_and_deletes() {
    for (seed, partition_by) in [(3, false), (11, false), (29, true)] {
        let ws = Workspace::new();
        write_lines_topic(&ws, partition_by, true);
        let runs = line_runs(300, 5, seed);
        let database = load_line_runs(&ws, &runs, &format!("lines_{seed}")).await;
        let ods = table_rows(&database, "order_lines_ods", false);
        same_rows(&ods, &expected_ods(&runs), &format!("seed {seed}: ODS"));
        let history = table_rows(&database, "order_lines_history", true);
        same_rows(
            &history,
            &expected_history(&runs),
            &format!("seed {seed}: history"),
        );
        // The stream had what it claims: deletes, test orders, orders whose
        // newest version has no line, late versions across runs.
        let newest: Vec<Arrival> = versions_by_order(&runs)
            .values()
            .filter_map(|v| v.values().next_back().cloned())
            .collect();
        assert!(newest.iter().any(|a| a.status == "deleted"), "seed {seed}");
        // Versions older than one of their order that an earlier run committed.
        let mut committed_before: BTreeMap<&str, u64> = BTreeMap::new();
        let mut late_across_runs = 0;
        for run in &runs {
            late_across_runs += run
                .iter()
                .filter(|a| {
                    committed_before
                        .get(a.order.as_str())
                        .is_some_and(|&c| a.at < c)
                })
                .count();
            for a in run {
                let newest = committed_before.entry(&a.order).or_insert(a.at);
                *newest = (*newest).max(a.at);
            }
        }
        assert!(
            late_across_runs > 0,
            "seed {seed}: no late version across runs"
        );
        assert!(newest.iter().any(|a| a.status == "test"), "seed {seed}");
        assert!(
            newest
                .iter()
                .any(|a| a.status != "deleted" && a.items.as_ref().is_none_or(Vec::is_empty)),
            "seed {seed}"
        );
        let versions_in_ods = postgres()
            .psql(&database, "SELECT count(*) FROM order_lines_ods_versions;")
            .unwrap();
        assert_eq!(
            versions_in_ods.trim().parse::<usize>().unwrap(),
            newest.len(),
            "seed {seed}: every order's version is known, rows or not"
        );
    }
}

/// Without history, runs write no OLDER files, the setup makes no history
/// tables, and the ODS is the same.
#[tokio::test]
async fn without_history_the_ods_is_the_same_and_no_history_is_kept() {
    let ws = Workspace::new();
    write_lines_topic(&ws, false, false);
    let runs = line_runs(200, 4, 5);
    let database = load_line_runs(&ws, &runs, "lines_no_history").await;
    let ods = table_rows(&database, "order_lines_ods", false);
    same_rows(&ods, &expected_ods(&runs), "ODS without history");
    let tables = postgres()
        .psql(
            &database,
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
             WHERE table_name LIKE 'order_lines%';",
        )
        .unwrap();
    assert_eq!(
        tables.trim(),
        "order_lines_correction,order_lines_keys,order_lines_load_start,order_lines_loaded_runs,\
         order_lines_main,order_lines_ods,order_lines_ods_versions,order_lines_winners"
    );
    let older: Vec<String> = ws
        .out_files()
        .into_iter()
        .filter(|f| f.contains("/older/"))
        .collect();
    assert!(older.is_empty(), "{older:?}");
}

/// The `catalog-items` topic of a data change event type (`settings`
/// added to its topic.toml) and two runs of its events: creates, updates,
/// deletes, a key deleted then created again, a late delete.
fn catalog_items(ws: &Workspace, settings: &str) -> Vec<Vec<String>> {
    let dir = ws.sql().join("catalog-items");
    std::fs::create_dir_all(&dir).unwrap();
    let payload = serde_json::json!({
        "type": "object",
        "required": ["sku"],
        "properties": {"sku": {"type": "string"}, "title": {"type": "string"}}
    });
    std::fs::write(
        dir.join("schema.json"),
        serde_json::json!({
            "name": "catalog.item-changed",
            "category": "data",
            "schema": {"type": "json_schema", "schema": payload.to_string()}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("topic.toml"),
        format!(
            "event_type = \"catalog.item-changed\"\npartitioning_key = \"data.sku\"\n\
         ordering_key = \"metadata.occurred_at\"\n{settings}\n[output]\nformat = \"csv\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("mapping.sql"),
        "CREATE VIEW output AS\n\
         SELECT data.sku AS sku, data.title AS title, metadata.occurred_at AS occurred_at\n\
         FROM events;\n",
    )
    .unwrap();
    let event = |n: u64, op: &str, sku: &str, title: &str, minute: u64| {
        serde_json::json!({
            "metadata": {
                "eid": format!("00000000-0000-4000-8000-{n:012x}"),
                "occurred_at": format!("2024-06-03T10:{minute:02}:00Z"),
                "event_type": "catalog.item-changed"
            },
            "data_op": op,
            "data_type": "catalog.item",
            "data": {"sku": sku, "title": title}
        })
        .to_string()
    };
    let batch = |offset: u64, events: &[String]| {
        format!(
            r#"{{"cursor":{{"partition":"0","offset":"001-0001-{offset:018}"}},"events":[{}]}}"#,
            events.join(",")
        )
    };
    vec![
        vec![batch(
            4,
            &[
                event(1, "C", "A", "apple", 1),
                event(2, "U", "A", "apple v2", 2),
                event(3, "C", "B", "banana", 1),
                event(4, "D", "B", "", 3),
                event(5, "C", "C", "cherry", 1),
            ],
        )],
        vec![batch(
            7,
            &[
                // C is deleted, then created again.
                event(6, "D", "C", "", 2),
                event(7, "C", "C", "cherry again", 4),
                // A late delete of A: older than A's newest version.
                event(8, "D", "A", "", 0),
            ],
        )],
    ]
}

/// A data change event type deletes on `data_op = 'D'` without any setting:
/// a delete ends its key, a late delete (an older version arriving after a
/// newer one) corrects the past and leaves the newer state in the ODS.
#[tokio::test]
async fn data_change_events_delete_on_data_op_d() {
    let ws = Workspace::new();
    let runs = catalog_items(&ws, "");
    let (database, _) = load_recorded_runs(&ws, "catalog-items", &runs, "catalog_items").await;
    let ods = postgres()
        .psql(
            &database,
            "SELECT string_agg(sku || '=' || title, ',' ORDER BY sku) FROM catalog_items_ods;",
        )
        .unwrap();
    assert_eq!(ods.trim(), "A=apple v2,C=cherry again");
    let history = postgres()
        .psql(
            &database,
            "SELECT string_agg(sku || '=' || title || '@' || to_char(valid_from, 'MI') || '-' || \
             coalesce(to_char(valid_to, 'MI'), 'now'), ',' ORDER BY sku, valid_from) \
             FROM catalog_items_history;",
        )
        .unwrap();
    assert_eq!(
        history.trim(),
        "A=apple@01-02,A=apple v2@02-now,B=banana@01-03,C=cherry@01-02,C=cherry again@04-now"
    );
    // When was a key deleted: one query. A late delete of A took its place
    // before A's versions; B stays deleted; C was deleted, then created again.
    let deletes = postgres()
        .psql(
            &database,
            "SELECT string_agg(sku || '@' || to_char(valid_from, 'MI') || '-' || \
             coalesce(to_char(valid_to, 'MI'), 'now') || (CASE WHEN is_current THEN ' current' ELSE '' END), \
             ',' ORDER BY sku) FROM catalog_items_history WHERE deleted;",
        )
        .unwrap();
    assert_eq!(deletes.trim(), "A@00-01,B@03-now current,C@02-04");
    let current = postgres()
        .psql(
            &database,
            "SELECT string_agg(sku || '=' || coalesce(title, '(deleted)'), ',' ORDER BY sku) \
             FROM catalog_items_history WHERE is_current;",
        )
        .unwrap();
    assert_eq!(current.trim(), "A=apple v2,B=(deleted),C=cherry again");
    let keys = ws.read_out_sorted("catalog-items/keys/run=0000000002/keys-0000000002-p0.csv");
    assert_eq!(
        keys,
        "sku,occurred_at,deleted,kind\n\
         A,2024-06-03T10:00:00Z,true,correction\n\
         C,2024-06-03T10:02:00Z,true,older\n\
         C,2024-06-03T10:04:00Z,false,main\n"
    );
}

/// `delete_when = "false"` turns the data change default off: a `D` event
/// is a version like any other, its row in MAIN, no KEYS row deleting;
/// without the setting the same events delete B (no MAIN row, its newest
/// KEYS row deleting).
#[tokio::test]
async fn delete_when_false_turns_the_data_op_default_off() {
    for (settings, main, deleted) in [
        ("", vec!["A=apple v2", "C=cherry"], vec!["B"]),
        (
            "delete_when = \"false\"\n",
            vec!["A=apple v2", "B=", "C=cherry"],
            vec![],
        ),
    ] {
        let ws = Workspace::new();
        let runs = catalog_items(&ws, settings);
        ws.record("catalog-items", &runs[0]);
        ws.run("catalog-items").await.unwrap();
        let out = crate::support::committed(&ws.local_output(), "catalog-items").await;
        let skus: Vec<String> = out
            .main
            .iter()
            .map(|row| {
                let field = |i: usize| row[i].clone().unwrap_or_default();
                format!("{}={}", field(0), field(1))
            })
            .collect();
        assert_eq!(skus, main, "{settings:?}");
        // KEYS: sku, occurred_at, deleted, kind.
        let deleting: Vec<String> = out
            .keys
            .iter()
            .filter(|row| row[2].as_deref() == Some("true"))
            .map(|row| row[0].clone().unwrap())
            .collect();
        assert_eq!(deleting, deleted, "{settings:?}: {:?}", out.keys);
    }
}
