//! Framing of Nakadi's `application/x-json-stream` bodies.
//!
//! Every line of a stream is one batch: `{"cursor":{...},"events":[...]}`.
//! Keep-alive lines carry a cursor and no `events`; subscription streams may add
//! an `info` object. The framer finds the cursor and the byte span of every event
//! without building a JSON tree: the events go on to the Arrow decoder as slices
//! of the line they arrived in. It tolerates an event that is not valid JSON as
//! long as its brackets balance, so that the decoder can reject just that event.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::cursor::Offset;
use crate::source::scan::string_stop;

/// One batch of a Nakadi stream: the cursor of its last event and the events.
#[derive(Clone, Debug)]
pub struct Batch {
    pub partition: Arc<str>,
    /// Offset of the last event of the batch (for keep-alives: the last offset
    /// delivered so far).
    pub offset: Offset,
    /// Subscription streams only: the event type and the token to commit with.
    pub event_type: Option<String>,
    pub cursor_token: Option<String>,
    /// The line the batch arrived in; `events` are spans of it.
    pub line: Bytes,
    pub events: Vec<Range<usize>>,
    /// Set by [`parse_head`]: the events are not framed yet (`events` is
    /// empty); their array starts at this position of `line`, after its `[`.
    /// The decoder frames them while it decodes them, in one pass.
    pub unframed: Option<usize>,
    /// Where the line came from, for messages about recorded files.
    pub origin: Option<Arc<str>>,
}

impl Batch {
    /// A line that carries no events (a keep-alive). Unframed batches may
    /// still turn out to have none.
    pub fn is_keep_alive(&self) -> bool {
        self.unframed.is_none() && self.events.is_empty()
    }

    /// Where the batch came from, for messages: its recorded file and line.
    pub fn origin_or_unknown(&self) -> &str {
        self.origin.as_deref().unwrap_or("a batch")
    }

    /// Frames the events of a batch from [`parse_head`].
    pub fn frame(&mut self) -> Result<(), FramingError> {
        if self.unframed.is_some() {
            self.events = parse_line(self.line.clone())?.events;
            self.unframed = None;
        }
        Ok(())
    }

    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    pub fn event_bytes(&self, i: usize) -> &[u8] {
        &self.line[self.events[i].clone()]
    }

    /// Offset of the `i`-th event: events of a partition have consecutive
    /// offsets and the cursor names the last one.
    pub fn event_offset(&self, i: usize) -> Option<Offset> {
        let after = (self.events.len() - 1 - i) as u64;
        self.offset.minus(after)
    }

    /// Keeps only the events after `start` (exclusive) up to `end` (inclusive).
    pub fn retain_between(&mut self, start: &Offset, end: &Offset) -> Result<(), TrimError> {
        if self.events.is_empty() {
            return Ok(());
        }
        let n = self.events.len();
        let first = self.event_offset(0).ok_or_else(|| TrimError::NotNumeric {
            offset: self.offset.clone(),
        })?;
        let mut keep_from = 0;
        if !start.is_begin() && !first.is_after(start) {
            // Some events were delivered before: skip up to and including `start`.
            let skip = first
                .distance_to(start)
                .ok_or_else(|| TrimError::Unplaceable {
                    offset: start.clone(),
                    batch: self.offset.clone(),
                })?
                + 1;
            keep_from = (skip as usize).min(n);
        }
        let mut keep_to = n;
        if self.offset.is_after(end) {
            let drop = end
                .distance_to(&self.offset)
                .ok_or_else(|| TrimError::Unplaceable {
                    offset: end.clone(),
                    batch: self.offset.clone(),
                })?;
            keep_to = n.saturating_sub(drop as usize);
        }
        if keep_from >= keep_to {
            self.events.clear();
        } else {
            if keep_to < n {
                self.offset = self
                    .offset
                    .minus((n - keep_to) as u64)
                    .unwrap_or(end.clone());
            }
            self.events = self.events[keep_from..keep_to].to_vec();
        }
        Ok(())
    }
}

/// Why a batch is refused when its first event is not after the last event
/// of the partition's previous batch.
pub fn overlap_message(
    offset: &Offset,
    partition: &str,
    first: &Offset,
    previous: &Offset,
) -> String {
    format!(
        "batch {offset} of partition {partition} (first event {first}) overlaps the previous batch, which ended at {previous}"
    )
}

/// Why a batch cannot be trimmed to a range of offsets.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrimError {
    #[error("offset {offset} is not numeric")]
    NotNumeric { offset: Offset },
    #[error("cannot place offset {offset} in batch {batch}")]
    Unplaceable { offset: Offset, batch: Offset },
}

/// A line that is not a Nakadi batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message} (at byte {position})")]
pub struct FramingError {
    pub message: String,
    pub position: usize,
}

#[derive(Deserialize)]
struct RawCursor {
    partition: String,
    offset: String,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    cursor_token: Option<String>,
}

/// Parses the head of a stream line: its cursor, when the line starts with
/// `{"cursor":{...},"events":[` as Nakadi writes it, leaving the events to be
/// framed by whoever reads them next; any other line is parsed whole.
pub fn parse_head(line: Bytes) -> Result<Batch, FramingError> {
    match leading_events(&line) {
        Some((cursor, events_at)) => Ok(Batch {
            partition: Arc::from(cursor.partition),
            offset: Offset::new(cursor.offset),
            event_type: cursor.event_type,
            cursor_token: cursor.cursor_token,
            line,
            events: Vec::new(),
            unframed: Some(events_at),
            origin: None,
        }),
        None => parse_line(line),
    }
}

/// The cursor of a line that opens with it and then with the events array,
/// and the position after the array's `[`.
fn leading_events(line: &[u8]) -> Option<(RawCursor, usize)> {
    let mut scanner = Scanner { buf: line, pos: 0 };
    scanner.skip_ws();
    scanner.expect(b'{').ok()?;
    scanner.field_named(b"cursor")?;
    let span = scanner.value().ok()?;
    let cursor: RawCursor = serde_json::from_slice(&line[span]).ok()?;
    scanner.skip_ws();
    scanner.expect(b',').ok()?;
    scanner.field_named(b"events")?;
    scanner.expect(b'[').ok()?;
    Some((cursor, scanner.pos))
}

/// Parses one stream line (without its line terminator).
pub fn parse_line(line: Bytes) -> Result<Batch, FramingError> {
    let mut scanner = Scanner { buf: &line, pos: 0 };
    let mut cursor: Option<RawCursor> = None;
    let mut events = Vec::new();
    scanner.skip_ws();
    scanner.expect(b'{')?;
    scanner.skip_ws();
    if scanner.peek() == Some(b'}') {
        return Err(scanner.error("batch has no cursor"));
    }
    loop {
        scanner.skip_ws();
        let key = scanner.string()?;
        scanner.skip_ws();
        scanner.expect(b':')?;
        scanner.skip_ws();
        match &line[key.start + 1..key.end - 1] {
            b"cursor" => {
                let span = scanner.value()?;
                let parsed: RawCursor =
                    serde_json::from_slice(&line[span.clone()]).map_err(|e| FramingError {
                        message: format!("cursor is not valid: {e}"),
                        position: span.start,
                    })?;
                cursor = Some(parsed);
            }
            b"events" => {
                if scanner.peek() == Some(b'n') {
                    scanner.value()?; // "events": null
                } else {
                    scanner.events(&mut events)?;
                }
            }
            _ => {
                scanner.value()?; // info, metadata, anything newer
            }
        }
        scanner.skip_ws();
        match scanner.next() {
            Some(b',') => continue,
            Some(b'}') => break,
            _ => return Err(scanner.error("expected ',' or '}' after a batch field")),
        }
    }
    scanner.skip_ws();
    if scanner.pos != line.len() {
        return Err(scanner.error("unexpected data after the batch"));
    }
    let cursor = cursor.ok_or_else(|| FramingError {
        message: "batch has no cursor".into(),
        position: 0,
    })?;
    Ok(Batch {
        partition: Arc::from(cursor.partition),
        offset: Offset::new(cursor.offset),
        event_type: cursor.event_type,
        cursor_token: cursor.cursor_token,
        line,
        events,
        unframed: None,
        origin: None,
    })
}

struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn error(&self, message: &str) -> FramingError {
        FramingError {
            message: message.to_string(),
            position: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, wanted: u8) -> Result<(), FramingError> {
        if self.peek() == Some(wanted) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", wanted as char)))
        }
    }

    /// `"name":` (with any whitespace around), up to the value.
    fn field_named(&mut self, name: &[u8]) -> Option<()> {
        self.skip_ws();
        let key = self.string().ok()?;
        if key.len() != name.len() + 2 || &self.buf[key.start + 1..key.end - 1] != name {
            return None;
        }
        self.skip_ws();
        self.expect(b':').ok()?;
        self.skip_ws();
        Some(())
    }

    /// A string at the current position; returns its span including the quotes.
    fn string(&mut self) -> Result<Range<usize>, FramingError> {
        let start = self.pos;
        self.expect(b'"')?;
        self.pos = self.string_end(self.pos)?;
        Ok(start..self.pos)
    }

    /// Position after the closing quote of a string whose body starts at `from`.
    /// Control characters are stepped over: judging the event is the decoder's job.
    fn string_end(&self, from: usize) -> Result<usize, FramingError> {
        let not_closed = || FramingError {
            message: "string is not closed".into(),
            position: from,
        };
        let mut i = from;
        loop {
            i += string_stop(&self.buf[i..]).ok_or_else(not_closed)?;
            match self.buf[i] {
                b'"' => return Ok(i + 1),
                b'\\' => {
                    i += 2;
                    if i > self.buf.len() {
                        return Err(not_closed());
                    }
                }
                _ => i += 1,
            }
        }
    }

    /// Skips one JSON value, returning its span. Objects and arrays are
    /// followed by bracket matching only; their content is judged later.
    fn value(&mut self) -> Result<Range<usize>, FramingError> {
        let start = self.pos;
        match self.peek() {
            None => Err(self.error("value expected")),
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                self.nested()?;
                Ok(start..self.pos)
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.error("value expected"));
                }
                Ok(start..self.pos)
            }
        }
    }

    fn nested(&mut self) -> Result<(), FramingError> {
        let mut closers: Vec<u8> = Vec::with_capacity(16);
        let start = self.pos;
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            match b {
                b'"' => {
                    self.pos = self.string_end(self.pos + 1)?;
                    continue;
                }
                b'{' => closers.push(b'}'),
                b'[' => closers.push(b']'),
                b'}' | b']' => {
                    if closers.pop() != Some(b) {
                        return Err(self.error("brackets do not match"));
                    }
                    if closers.is_empty() {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err(FramingError {
            message: "object or array is not closed (line cut short?)".into(),
            position: start,
        })
    }

    fn events(&mut self, spans: &mut Vec<Range<usize>>) -> Result<(), FramingError> {
        self.expect(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            spans.push(self.value()?);
            self.skip_ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                _ => return Err(self.error("expected ',' or ']' between events")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Batch, FramingError> {
        parse_line(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn batch_with_events_gives_cursor_and_spans() {
        let b = parse(
            r#"{"cursor":{"partition":"3","offset":"001-0001-000000000000000012"},"events":[{"a":1},{"b":"x]}"}]}"#,
        )
        .unwrap();
        assert_eq!(&*b.partition, "3");
        assert_eq!(b.offset.as_str(), "001-0001-000000000000000012");
        assert_eq!(b.event_count(), 2);
        assert_eq!(b.event_bytes(0), br#"{"a":1}"#);
        assert_eq!(b.event_bytes(1), br#"{"b":"x]}"}"#);
        assert_eq!(
            b.event_offset(0).unwrap().as_str(),
            "001-0001-000000000000000011"
        );
    }

    #[test]
    fn keep_alive_has_no_events_and_fields_may_come_in_any_order() {
        let b =
            parse(r#"{"info":{"debug":"x"},"cursor":{"partition":"0","offset":"BEGIN"}}"#).unwrap();
        assert_eq!(b.event_count(), 0);
        assert!(b.offset.is_begin());
    }

    #[test]
    fn subscription_cursor_keeps_token_and_type() {
        let b = parse(
            r#"{"cursor":{"partition":"0","offset":"5","event_type":"t","cursor_token":"abc"},"events":[{}]}"#,
        )
        .unwrap();
        assert_eq!(b.cursor_token.as_deref(), Some("abc"));
        assert_eq!(b.event_type.as_deref(), Some("t"));
    }

    #[test]
    fn an_invalid_event_with_balanced_brackets_is_still_framed() {
        let b = parse(r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"a":1,,},{"a":2}]}"#)
            .unwrap();
        assert_eq!(b.event_bytes(0), br#"{"a":1,,}"#);
    }

    #[test]
    fn truncated_lines_are_errors() {
        let err = parse(r#"{"cursor":{"partition":"0","offset":"2"},"events":[{"a":1},{"a""#)
            .unwrap_err();
        assert!(err.message.contains("not closed"), "{err}");
        assert!(parse(r#"{"events":[]}"#).is_err());
        assert!(parse(r#"{"cursor":{"partition":"0"}}"#).is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn a_head_leaves_the_events_to_frame_later() {
        let line = r#"{"cursor":{"partition":"3","offset":"9","cursor_token":"t"}, "events" : [{"a":"]"},{"b":[1]}]}"#;
        let mut batch = parse_head(Bytes::from(line)).unwrap();
        assert_eq!((&*batch.partition, batch.offset.as_str()), ("3", "9"));
        assert_eq!(batch.cursor_token.as_deref(), Some("t"));
        assert!(!batch.is_keep_alive() && batch.events.is_empty());
        assert_eq!(&line[batch.unframed.unwrap()..][..7], r#"{"a":"]"#);
        batch.frame().unwrap();
        assert_eq!(batch.event_count(), 2);
        assert_eq!(batch.event_bytes(1), br#"{"b":[1]}"#);
        // Anything else is framed whole at once.
        for other in [
            r#"{"events":[{}],"cursor":{"partition":"0","offset":"1"}}"#,
            r#"{"cursor":{"partition":"0","offset":"1"}}"#,
            r#"{"cursor":{"partition":"0","offset":"1"},"events":null}"#,
        ] {
            let batch = parse_head(Bytes::from(other)).unwrap();
            assert!(batch.unframed.is_none(), "{other}");
        }
        assert!(
            parse_head(Bytes::from(
                r#"{"cursor":{"partition":"0","offset":"1"},"events":[{"#
            ))
            .is_ok()
        );
        assert!(parse_head(Bytes::from(r#"{"cursor":{"partition":"0"},"events":[]}"#)).is_err());
    }

    #[test]
    fn retain_between_cuts_both_ends() {
        let mut b = parse(
            r#"{"cursor":{"partition":"0","offset":"001-0001-000000000000000014"},"events":[{"n":10},{"n":11},{"n":12},{"n":13},{"n":14}]}"#,
        )
        .unwrap();
        b.retain_between(
            &Offset::new("001-0001-000000000000000011"),
            &Offset::new("001-0001-000000000000000013"),
        )
        .unwrap();
        assert_eq!(b.event_count(), 2);
        assert_eq!(b.event_bytes(0), br#"{"n":12}"#);
        assert_eq!(b.offset.as_str(), "001-0001-000000000000000013");
    }

    #[test]
    fn retain_between_begin_keeps_everything_up_to_end() {
        let mut b =
            parse(r#"{"cursor":{"partition":"0","offset":"4"},"events":[{},{},{}]}"#).unwrap();
        b.retain_between(&Offset::begin(), &Offset::new("9"))
            .unwrap();
        assert_eq!(b.event_count(), 3);
        b.retain_between(&Offset::new("4"), &Offset::new("9"))
            .unwrap();
        assert_eq!(b.event_count(), 0);
    }
}
