//! The partition decoder's tests: rows, rejections and offsets of whole
//! decodes, of framed and unframed lines, from recordings and live streams.

use std::sync::Arc;

use super::*;
use crate::schema::with_system_columns;
use crate::source::Batch;
use crate::source::framing::parse_line;
use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;

fn schema() -> (SchemaRef, SchemaRef) {
    let payload = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "meta",
            DataType::Struct(Fields::from(vec![Field::new("v", DataType::Int64, true)])),
            true,
        ),
    ]);
    let events = with_system_columns(&payload);
    (Arc::new(payload), events)
}

fn decode(lines: &[&str], chunk: usize) -> DecodedPartition {
    decode_with(lines, chunk, parse_line, None).unwrap()
}

/// Decodes `lines` parsed by `parse` (framed whole, or just their head),
/// as lines of a recording when `origin` is given.
fn decode_with(
    lines: &[&str],
    chunk: usize,
    parse: fn(Bytes) -> Result<Batch, crate::source::FramingError>,
    origin: Option<&str>,
) -> Result<DecodedPartition, DecodeError> {
    let (payload, events) = schema();
    let mut decoder = PartitionDecoder::new(
        payload,
        events,
        Arc::from("0"),
        RequiredKeys {
            paths: vec!["id".into(), "meta.v".into()],
            deletes: None,
        },
    )
    .unwrap()
    .with_chunk_rows(chunk);
    for (n, line) in lines.iter().enumerate() {
        let mut batch = parse(Bytes::copy_from_slice(line.as_bytes())).unwrap();
        batch.origin = origin.map(|o| Arc::from(format!("{o}:{}", n + 1)));
        decoder.push(&batch)?;
    }
    decoder.finish()
}

/// Rows (as text) and rejected events (offset, reason) of a decode.
fn outcome(out: DecodedPartition) -> (Vec<String>, Vec<(String, String)>) {
    let batches = out.events.into_batches().unwrap();
    let rows = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with('+'))
        .map(str::to_string)
        .collect();
    let rejected = out
        .rejected
        .iter()
        .map(|r| (r.offset.clone(), r.reason.clone()))
        .collect();
    (rows, rejected)
}

const LINES: [&str; 5] = [
    r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"id":1,"meta":{"v":1}},{"id":2,"name":"b","meta":{"v":2}}]}"#,
    r#"{"cursor":{"partition":"0","offset":"5"},"events":[ {"id":3,"meta":{"v":3}} , {"id":4,"name":"d\u00e9","meta":{"v":4}},{"id":5,"meta":{"v":5}} ] }"#,
    r#"{"cursor":{"partition":"0","offset":"7"},"events":[{"id":"x","meta":{"v":6}},{"id":7,"meta":{}}]}"#,
    r#"{"cursor":{"partition":"0","offset":"9"},"events":[{"id":8,"meta":{"v":8}},{"id":9,"meta":{"v":9}}],"info":{"debug":"]}"}}"#,
    r#"{"cursor":{"partition":"0","offset":"10"},"events":[{"id":10,"meta":{"v":10}}]}"#,
];

/// Lines whose events the decoder frames itself give the same rows,
/// rejections and offsets as lines framed beforehand, across chunk
/// boundaries, a chunk with a bad event, and a line with more after its
/// events.
#[test]
fn unframed_lines_decode_as_framed_ones() {
    for chunk in [1, 3, 4, 100] {
        let framed = outcome(decode_with(&LINES, chunk, parse_line, None).unwrap());
        let unframed =
            outcome(decode_with(&LINES, chunk, crate::source::framing::parse_head, None).unwrap());
        assert_eq!(framed.0.len(), 8, "chunk {chunk}");
        assert_eq!(framed.1.len(), 2, "chunk {chunk}");
        assert_eq!(unframed, framed, "chunk {chunk}");
    }
}

#[test]
fn a_recorded_batch_that_overlaps_the_previous_is_an_error_naming_its_line() {
    let lines = [
        r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"id":1,"meta":{"v":1}},{"id":2,"meta":{"v":2}}]}"#,
        r#"{"cursor":{"partition":"0","offset":"3"},"events":[{"id":2,"meta":{"v":2}},{"id":3,"meta":{"v":3}}]}"#,
    ];
    let err = decode_with(
        &lines,
        100,
        crate::source::framing::parse_head,
        Some("a.jsonl"),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.starts_with("a.jsonl:2: ")
            && err.contains("overlaps the previous batch, which ended at 2"),
        "{err}"
    );
    // From a live stream, the events delivered before are dropped.
    let live = outcome(decode_with(&lines, 100, crate::source::framing::parse_head, None).unwrap());
    assert_eq!(live.0.len(), 3);
}

#[test]
fn good_events_become_rows_with_system_columns() {
    let out = decode(
        &[
            r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"id":1,"meta":{"v":1}},{"id":2,"name":"b","meta":{"v":2}}]}"#,
        ],
        8,
    );
    assert_eq!(out.rows, 2);
    assert!(out.rejected.is_empty());
    let batches = out.events.into_batches().unwrap();
    let batch = &batches[0];
    let offsets = batch.column_by_name("_offset").unwrap().as_string::<i32>();
    assert_eq!(offsets.value(0), "1");
    assert_eq!(offsets.value(1), "2");
    let seq = batch
        .column_by_name("_seq")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    assert_eq!(seq.values().to_vec(), vec![0, 1]);
}

#[test]
fn bad_events_are_rejected_alone_with_a_reason() {
    let out = decode(
        &[
            r#"{"cursor":{"partition":"0","offset":"4"},"events":[{"id":1,"meta":{"v":1}},{"id":"x","meta":{"v":1}},{"id":3,,"meta":{"v":1}},{"id":4,"meta":{"v":1}}]}"#,
            r#"{"cursor":{"partition":"0","offset":"6"},"events":[{"name":"no id","meta":{"v":1}},{"id":6,"meta":{}}]}"#,
        ],
        3,
    );
    let ids: Vec<i64> = out
        .events
        .batches()
        .map(|b| b.unwrap())
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, vec![1, 4]);
    let rejected: Vec<(&str, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.offset.as_str(), std::str::from_utf8(&r.raw).unwrap()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            ("2", r#"{"id":"x","meta":{"v":1}}"#),
            ("3", r#"{"id":3,,"meta":{"v":1}}"#),
            ("5", r#"{"name":"no id","meta":{"v":1}}"#),
            ("6", r#"{"id":6,"meta":{}}"#),
        ]
    );
    assert!(
        out.rejected[3].reason.contains("meta.v"),
        "{}",
        out.rejected[3].reason
    );
    for r in &out.rejected {
        assert!(!r.reason.is_empty());
    }
    // arrival numbers stay dense over the rows that were kept
    let seqs: Vec<u64> = out
        .events
        .batches()
        .map(|b| b.unwrap())
        .flat_map(|b| {
            b.column_by_name("_seq")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(seqs, vec![0, 1]);
}
