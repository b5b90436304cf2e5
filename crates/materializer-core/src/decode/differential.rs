//! The decoder against a reference built on serde_json, over generated events:
//! nesting at and past the limit, numbers at the edges of their types,
//! escapes and surrogates, invalid UTF-8, duplicate keys, wrong types. Every
//! event must become the row the reference says, or be rejected when the
//! reference cannot read it; nothing may be lost or misread.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type, Schema, SchemaRef};
use bytes::Bytes;
use serde_json::Value;

use super::{MAX_NESTING, PartitionDecoder, RequiredKeys};
use crate::schema::with_system_columns;
use crate::source::framing::parse_line;
use crate::test_support::Lcg;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
        Field::new(
            "inner",
            DataType::Struct(Fields::from(vec![
                Field::new("a", DataType::Int64, true),
                Field::new("b", DataType::Utf8, true),
            ])),
            true,
        ),
    ]))
}

const INTEGERS: [&str; 14] = [
    "0",
    "-0",
    "7",
    "-12",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "1.0",
    "1.5",
    "1e3",
    "2.5e1",
    "1e400",
    "123456789012345678901234567890",
];

const FLOATS: [&str; 8] = [
    "0.1",
    "-0.0",
    "1e308",
    "2.2250738585072014e-308",
    "5e-324",
    "123456789.123456789",
    "1e400",
    "-17",
];

const STRINGS: [&str; 12] = [
    r#""plain""#,
    r#""quote \" and backslash \\""#,
    r#""tab\tnew\nline""#,
    r#""\u00e9t\u00e9""#,
    r#""\ud83d\ude00""#,
    r#""lone \ud83d surrogate""#,
    r#""lone \ude00 low""#,
    r#""Fjällräven""#,
    r#""\u0000 nul""#,
    r#""bad \x escape""#,
    r#""""#,
    "\"raw \u{1} control\"",
];

fn pick<'a>(rng: &mut Lcg, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// Nested arrays `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// One event's bytes: usually an object close to the schema, sometimes broken.
fn event(rng: &mut Lcg) -> Vec<u8> {
    let mut members: Vec<String> = Vec::new();
    if !rng.chance(5) {
        let id = if rng.chance(20) {
            pick(rng, &INTEGERS).to_string()
        } else {
            (rng.below(50) as i64).to_string()
        };
        members.push(format!(r#""id":{id}"#));
    }
    if rng.chance(70) {
        members.push(format!(r#""name":{}"#, pick(rng, &STRINGS)));
    }
    if rng.chance(60) {
        members.push(format!(r#""score":{}"#, pick(rng, &FLOATS)));
    }
    if rng.chance(40) {
        let flag = ["true", "false", "null", "1", "\"true\""][rng.below(5) as usize];
        members.push(format!(r#""flag":{flag}"#));
    }
    if rng.chance(40) {
        let n = rng.below(4);
        let items: Vec<String> = (0..n).map(|_| pick(rng, &INTEGERS).to_string()).collect();
        members.push(format!(r#""tags":[{}]"#, items.join(",")));
    }
    if rng.chance(40) {
        members.push(format!(
            r#""inner":{{"a":{},"b":{}}}"#,
            pick(rng, &INTEGERS),
            pick(rng, &STRINGS)
        ));
    }
    if rng.chance(10) {
        // An unknown field, nested at, under or over the limit.
        let depth = [MAX_NESTING - 2, MAX_NESTING, MAX_NESTING + 5, 3000][rng.below(4) as usize];
        members.push(format!(r#""extra":{}"#, nested(depth)));
    }
    if rng.chance(5) && !members.is_empty() {
        // A duplicate key.
        let again = members[rng.below(members.len() as u64) as usize].clone();
        members.push(again);
    }
    let mut text = format!("{{{}}}", members.join(",")).into_bytes();
    match rng.below(40) {
        0 => text = nested(3000).into_bytes(),
        1 => text = b"[1,2]".to_vec(),
        2 => text.insert(1, b','),
        3 => {
            // Invalid UTF-8 inside a string value.
            if let Some(quote) = text.iter().rposition(|&b| b == b'"') {
                text.insert(quote, 0xff);
            }
        }
        _ => {}
    }
    text
}

/// What the reference expects of a value in a column of `data_type`:
/// `Ok(value to compare)`, or `Err` when the event must be rejected.
fn expect(value: Option<&Value>, data_type: &DataType, nullable: bool) -> Result<Value, ()> {
    let value = match value {
        None | Some(Value::Null) => return if nullable { Ok(Value::Null) } else { Err(()) },
        Some(v) => v,
    };
    match (data_type, value) {
        (DataType::Int64, Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Value::from(i));
            }
            let f = n.as_f64().ok_or(())?;
            if n.as_u64().is_some() || f.fract() != 0.0 || f.abs() >= 9.223_372_036_854_776e18 {
                return Err(());
            }
            Ok(Value::from(f as i64))
        }
        (DataType::Float64, Value::Number(n)) => Ok(Value::from(n.as_f64().ok_or(())?)),
        (DataType::Utf8, Value::String(s)) => Ok(Value::from(s.clone())),
        (DataType::Boolean, Value::Bool(b)) => Ok(Value::from(*b)),
        (DataType::List(item), Value::Array(items)) => items
            .iter()
            .map(|v| expect(Some(v), item.data_type(), true))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (DataType::Struct(fields), Value::Object(object)) => {
            let mut out = serde_json::Map::new();
            for field in fields {
                out.insert(
                    field.name().clone(),
                    expect(object.get(field.name()), field.data_type(), true)?,
                );
            }
            Ok(Value::Object(out))
        }
        _ => Err(()),
    }
}

/// The row the reference makes of an event, or `None` when it must be rejected.
/// serde_json refuses what nests deeper than 128 levels, as the decoder does.
fn reference(bytes: &[u8], schema: &Schema) -> Option<Value> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(bytes) else {
        return None;
    };
    let mut row = serde_json::Map::new();
    for field in schema.fields() {
        let value = expect(
            object.get(field.name()),
            field.data_type(),
            field.is_nullable(),
        )
        .ok()?;
        row.insert(field.name().clone(), value);
    }
    Some(Value::Object(row))
}

/// A decoded cell as the reference writes it.
fn cell(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            Value::Array((0..list.len()).map(|i| cell(list.as_ref(), i)).collect())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.name().clone(), cell(s.column(i).as_ref(), row)))
                    .collect(),
            )
        }
        other => panic!("no reference for {other}"),
    }
}

fn rows(batches: &[RecordBatch], schema: &Schema) -> Vec<Value> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let object = schema
                .fields()
                .iter()
                .map(|f| {
                    let column = batch.column_by_name(f.name()).unwrap();
                    (f.name().clone(), cell(column.as_ref(), row))
                })
                .collect();
            out.push(Value::Object(object));
        }
    }
    out
}

/// Frames `events` as one stream line (the raw bytes kept as they are).
fn line(events: &[Vec<u8>], last_offset: usize) -> Bytes {
    let mut line = format!(r#"{{"cursor":{{"partition":"0","offset":"{last_offset}"}},"events":["#)
        .into_bytes();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(event);
    }
    line.extend_from_slice(b"]}");
    Bytes::from(line)
}

#[test]
fn the_decoder_reads_what_serde_json_reads_and_rejects_the_rest() {
    let payload = schema();
    let events_schema = with_system_columns(&payload);
    let (mut total_rows, mut total_rejected) = (0, 0);
    for seed in 1..=40u64 {
        let mut rng = Lcg(seed);
        let events: Vec<Vec<u8>> = (0..120).map(|_| event(&mut rng)).collect();
        let mut decoder = PartitionDecoder::new(
            payload.clone(),
            events_schema.clone(),
            Arc::from("0"),
            RequiredKeys {
                paths: vec!["id".into()],
                deletes: None,
            },
        )
        .unwrap()
        .with_chunk_rows(1 + (seed as usize % 50));
        // Lines of a few events each, as a stream delivers them.
        let mut offset = 0;
        for chunk in events.chunks(1 + seed as usize % 7) {
            offset += chunk.len();
            let batch = parse_line(line(chunk, offset - 1)).unwrap();
            decoder.push(&batch).unwrap();
        }
        let decoded = decoder.finish().unwrap();
        let expected: Vec<Option<Value>> = events.iter().map(|e| reference(e, &payload)).collect();
        let want_rows: Vec<Value> = expected.iter().flatten().cloned().collect();
        let want_rejected: Vec<usize> = expected
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_none())
            .map(|(i, _)| i)
            .collect();
        let batches = decoded.events.into_batches().unwrap();
        let got_rows = rows(&batches, &payload);
        let got_rejected: Vec<usize> = decoded
            .rejected
            .iter()
            .map(|r| r.offset.parse::<usize>().unwrap())
            .collect();
        for (i, event) in events.iter().enumerate() {
            let rejected = got_rejected.contains(&i);
            assert_eq!(
                rejected,
                expected[i].is_none(),
                "seed {seed}, event {i}: {} (rejected: {rejected}; reasons: {:?})",
                String::from_utf8_lossy(&event[..event.len().min(300)]),
                decoded
                    .rejected
                    .iter()
                    .filter(|r| r.offset == i.to_string())
                    .map(|r| &r.reason)
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(got_rejected, want_rejected, "seed {seed}");
        assert_eq!(got_rows.len(), want_rows.len(), "seed {seed}");
        for (got, want) in got_rows.iter().zip(&want_rows) {
            assert_eq!(got, want, "seed {seed}");
        }
        assert_eq!(
            decoded.rows as usize + decoded.rejected.len(),
            events.len(),
            "seed {seed}: every event is a row or a rejection"
        );
        total_rows += got_rows.len();
        total_rejected += got_rejected.len();
    }
    // Both roads were taken, many times.
    assert!(
        total_rows > 1000 && total_rejected > 1000,
        "{total_rows} rows, {total_rejected} rejected"
    );
}
