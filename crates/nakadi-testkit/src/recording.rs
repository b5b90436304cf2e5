//! Recorded stream lines, read the simple way.
//!
//! This reader is deliberately independent of the engine's framing: a bug in
//! one is not shared by the other. It walks a line byte by byte, tracking
//! strings and brackets, and hands back each event's bytes exactly as they
//! were recorded, including events that are not valid JSON (an event with a
//! doubled comma must reach the engine as it is, so that the engine can
//! reject it).

use serde::Deserialize;

/// One recorded batch.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordedBatch<'a> {
    pub partition: String,
    pub offset: String,
    /// The raw bytes of every event, in order.
    pub events: Vec<&'a [u8]>,
}

#[derive(Deserialize)]
struct Cursor {
    partition: String,
    offset: String,
}

/// Why a line is not a batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordingError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("unbalanced brackets or an unterminated string")]
    Unbalanced,
    #[error("no \"cursor\" member")]
    NoCursor,
    #[error("the cursor is not {{\"partition\": ..., \"offset\": ...}}: {0}")]
    BadCursor(String),
    #[error("\"events\" is not an array")]
    EventsNotArray,
}

/// Splits one stream line into its cursor and events. A keep-alive line (no
/// `events`) gives no events.
pub fn split_line(line: &[u8]) -> Result<RecordedBatch<'_>, RecordingError> {
    let line = trim(line);
    if line.first() != Some(&b'{') || line.last() != Some(&b'}') {
        return Err(RecordingError::NotAnObject);
    }
    let mut cursor = None;
    let mut events = Vec::new();
    for (key, value) in members(&line[1..line.len() - 1])? {
        match key {
            b"\"cursor\"" => {
                let parsed: Cursor = serde_json::from_slice(value)
                    .map_err(|e| RecordingError::BadCursor(e.to_string()))?;
                cursor = Some(parsed);
            }
            b"\"events\"" => {
                if value.first() != Some(&b'[') || value.last() != Some(&b']') {
                    return Err(RecordingError::EventsNotArray);
                }
                events = elements(&value[1..value.len() - 1])?;
            }
            _ => {}
        }
    }
    let cursor = cursor.ok_or(RecordingError::NoCursor)?;
    Ok(RecordedBatch {
        partition: cursor.partition,
        offset: cursor.offset,
        events,
    })
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes
        && first.is_ascii_whitespace()
    {
        bytes = rest;
    }
    while let [rest @ .., last] = bytes
        && last.is_ascii_whitespace()
    {
        bytes = rest;
    }
    bytes
}

/// The comma-separated parts of an object's or array's inside, split at
/// commas outside strings and brackets.
fn parts(inside: &[u8]) -> Result<Vec<&[u8]>, RecordingError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in inside.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1).ok_or(RecordingError::Unbalanced)?,
            b',' if depth == 0 => {
                parts.push(trim(&inside[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_string || depth != 0 {
        return Err(RecordingError::Unbalanced);
    }
    let last = trim(&inside[start..]);
    if !last.is_empty() || !parts.is_empty() {
        parts.push(last);
    }
    Ok(parts)
}

/// Members of an object's inside as (quoted key, value) pairs.
fn members(inside: &[u8]) -> Result<Vec<(&[u8], &[u8])>, RecordingError> {
    parts(inside)?
        .into_iter()
        .filter(|part| !part.is_empty())
        .map(|part| {
            let colon = key_end(part).ok_or(RecordingError::NotAnObject)?;
            Ok((trim(&part[..colon]), trim(&part[colon + 1..])))
        })
        .collect()
}

/// Index of the colon after a member's quoted key.
fn key_end(member: &[u8]) -> Option<usize> {
    let mut escaped = false;
    let mut in_string = false;
    for (i, &b) in member.iter().enumerate() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b':') => return Some(i),
            _ => {}
        }
    }
    None
}

fn elements(inside: &[u8]) -> Result<Vec<&[u8]>, RecordingError> {
    Ok(parts(inside)?
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_as_recorded_even_when_one_is_broken() {
        let line = br#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000002"},"events":[{"a":"x,]}\"y","b":[1,{"c":2}]}, {"id":1,,"v":2} ,{"z":null}]}"#;
        let batch = split_line(line).unwrap();
        assert_eq!(batch.partition, "0");
        assert_eq!(batch.offset, "001-0001-000000000000000002");
        assert_eq!(
            batch.events,
            vec![
                &br#"{"a":"x,]}\"y","b":[1,{"c":2}]}"#[..],
                &br#"{"id":1,,"v":2}"#[..],
                &br#"{"z":null}"#[..],
            ]
        );
    }

    #[test]
    fn a_keep_alive_has_no_events() {
        let batch = split_line(br#"{"cursor":{"partition":"3","offset":"BEGIN"}}"#).unwrap();
        assert_eq!(batch.partition, "3");
        assert!(batch.events.is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_batch() {
        assert_eq!(split_line(b"[1]"), Err(RecordingError::NotAnObject));
        assert_eq!(
            split_line(br#"{"events":[]}"#),
            Err(RecordingError::NoCursor)
        );
        assert_eq!(
            split_line(br#"{"cursor":{"partition":"0","offset":"1"},"events":[{"a":1}}"#),
            Err(RecordingError::Unbalanced)
        );
        assert!(matches!(
            split_line(br#"{"cursor":{"partition":0},"events":[]}"#),
            Err(RecordingError::BadCursor(_))
        ));
    }
}
