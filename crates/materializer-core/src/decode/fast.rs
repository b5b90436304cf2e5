//! One strict pass from event bytes to Arrow columns, for the common case.
//!
//! arrow-json decodes any JSON into any schema through a token tape, and its
//! tokenizer is lenient (it reads `{"a":1,,"b":2}`), so every event used to be
//! parsed twice: by serde_json to check the syntax, then by arrow-json. This
//! decoder walks each event once, checks the syntax as strictly as serde_json
//! and appends values straight into column buffers laid out by the schema.
//!
//! It only takes the plain road. When a chunk holds anything it does not
//! decode exactly as arrow-json would (a number written as a string, a
//! duplicate or escaped key, a required field missing, malformed JSON, a type
//! it does not know), it gives up on the whole chunk and the caller decodes
//! that chunk with arrow-json, which finds and describes the culprit. Rows are
//! therefore the same on either road; only the time differs.

use std::sync::Arc;

use arrow::array::builder::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayData, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    StructArray, make_array,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use arrow::datatypes::{DataType, Date32Type, FieldRef, Fields, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::source::scan::string_stop;

/// The fast road is closed for this chunk; decode it with arrow-json.
#[derive(Debug)]
pub(crate) struct GiveUp;

type Step<T = ()> = Result<T, GiveUp>;

/// Deeper events go the slow way, where they are rejected before any
/// recursive parser sees them.
const MAX_DEPTH: usize = super::MAX_NESTING;

/// Decodes chunks of events (one JSON object each) into record batches of
/// the payload schema. Events are appended one by one, or a whole events
/// array of a stream line at once; `finish` hands out the chunk.
pub struct FastDecoder {
    schema: SchemaRef,
    root: StructColumn,
    rows: usize,
}

impl FastDecoder {
    /// `None` when the schema has a type this decoder does not handle.
    pub fn new(schema: &SchemaRef) -> Option<FastDecoder> {
        Some(FastDecoder {
            schema: schema.clone(),
            root: StructColumn::new(schema.fields())?,
            rows: 0,
        })
    }

    /// Appends one event. After giving up, the chunk is spoilt: `reset`.
    pub fn append(&mut self, event: &[u8]) -> Result<(), GiveUp> {
        // arrow-json refuses bytes that are not UTF-8 anywhere in an
        // event, also in fields nobody reads: so do we.
        simdutf8::basic::from_utf8(event).map_err(|_| GiveUp)?;
        let mut cursor = Cursor { buf: event, pos: 0 };
        cursor.ws();
        self.root.object(&mut cursor, 0)?;
        cursor.ws();
        if cursor.pos != event.len() {
            return Err(GiveUp);
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends the events of the JSON array whose content starts at `from`
    /// in `line` (after its `[`), pushing the span of each event to `spans`.
    /// Returns the position after the array's `]`. After giving up, the
    /// chunk is spoilt: `reset`.
    pub fn append_array(
        &mut self,
        line: &[u8],
        from: usize,
        spans: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<usize, GiveUp> {
        simdutf8::basic::from_utf8(&line[from..]).map_err(|_| GiveUp)?;
        let mut cursor = Cursor {
            buf: line,
            pos: from,
        };
        cursor.items(b']', |c, _| {
            let start = c.pos;
            self.root.object(c, 0)?;
            spans.push(start..c.pos);
            self.rows += 1;
            Ok(())
        })?;
        Ok(cursor.pos)
    }

    /// The chunk as a record batch; `None` when its columns do not assemble
    /// (the caller decodes the chunk the other way). Starts the next chunk.
    pub fn finish(&mut self) -> Option<RecordBatch> {
        let rows = std::mem::take(&mut self.rows);
        let batch = self.assemble(rows);
        if batch.is_none() {
            self.reset();
        }
        batch
    }

    /// Drops whatever the chunk holds.
    pub fn reset(&mut self) {
        if let Some(root) = StructColumn::new(self.schema.fields()) {
            self.root = root;
        }
        self.rows = 0;
    }

    /// Decodes every event of the chunk, or gives up on all of them.
    #[cfg(test)]
    pub fn decode<'a>(
        &mut self,
        events: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Option<RecordBatch> {
        for event in events {
            if self.append(event).is_err() {
                self.reset();
                return None;
            }
        }
        self.finish()
    }

    fn assemble(&mut self, rows: usize) -> Option<RecordBatch> {
        let (columns, nulls) = self.root.finish().ok()?;
        if nulls.is_some() {
            return None;
        }
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .ok()
    }
}

/// Column buffers for one field of the schema.
enum Column {
    Int64(Vec<i64>, NullBufferBuilder),
    Float64(Vec<f64>, NullBufferBuilder),
    Boolean(BooleanBufferBuilder, NullBufferBuilder),
    Utf8(Text),
    Date32(Vec<i32>, NullBufferBuilder),
    Timestamp(Timestamps),
    Struct(StructColumn),
    List(Box<ListColumn>),
}

struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: NullBufferBuilder,
}

struct Timestamps {
    data_type: DataType,
    unit: TimeUnit,
    timezone: Tz,
    values: Vec<i64>,
    nulls: NullBufferBuilder,
    scratch: Vec<u8>,
}

struct StructColumn {
    fields: Fields,
    names: Vec<Box<[u8]>>,
    children: Vec<Column>,
    /// `stamp` of the object in which each field was last seen.
    seen: Vec<u64>,
    stamp: u64,
    nulls: NullBufferBuilder,
    /// Keys met so far (up to [`MAX_KNOWN_KEYS`]) with their field (`None`:
    /// not read), and the keys of the last object as indices into them. The
    /// objects of a topic mostly repeat their keys in one order, so a key is
    /// usually placed with one comparison, read or not.
    known: Vec<(Box<[u8]>, Option<usize>)>,
    shape: Vec<u8>,
}

/// Distinct keys an object column remembers (indices fit a byte): enough for
/// records; objects used as maps (a key per entry) soon fill it, and are then
/// placed by name alone.
const MAX_KNOWN_KEYS: usize = 256;

struct ListColumn {
    item: FieldRef,
    offsets: Vec<i32>,
    values: Column,
    nulls: NullBufferBuilder,
}

impl Column {
    fn new(data_type: &DataType) -> Option<Column> {
        let nulls = || NullBufferBuilder::new(0);
        Some(match data_type {
            DataType::Int64 => Column::Int64(Vec::new(), nulls()),
            DataType::Float64 => Column::Float64(Vec::new(), nulls()),
            DataType::Boolean => Column::Boolean(BooleanBufferBuilder::new(0), nulls()),
            DataType::Utf8 => Column::Utf8(Text {
                offsets: vec![0],
                bytes: Vec::new(),
                nulls: nulls(),
            }),
            DataType::Date32 => Column::Date32(Vec::new(), nulls()),
            DataType::Timestamp(unit, timezone) => Column::Timestamp(Timestamps {
                data_type: data_type.clone(),
                unit: *unit,
                timezone: match timezone {
                    Some(tz) => tz.parse().ok()?,
                    None => "+00:00".parse().ok()?,
                },
                values: Vec::new(),
                nulls: nulls(),
                scratch: Vec::new(),
            }),
            DataType::Struct(fields) => Column::Struct(StructColumn::new(fields)?),
            DataType::List(item) => Column::List(Box::new(ListColumn {
                item: item.clone(),
                offsets: vec![0],
                values: Column::new(item.data_type())?,
                nulls: nulls(),
            })),
            _ => return None,
        })
    }

    /// Appends the JSON value at the cursor; `null` only where `nullable`.
    fn value(&mut self, c: &mut Cursor<'_>, nullable: bool, depth: usize) -> Step {
        if c.peek()? == b'n' {
            c.literal(b"null")?;
            if !nullable {
                return Err(GiveUp);
            }
            self.null();
            return Ok(());
        }
        match self {
            Column::Int64(values, nulls) => {
                let (text, integer) = c.number()?;
                if !integer {
                    return Err(GiveUp);
                }
                values.push(parse_i64(text)?);
                nulls.append_non_null();
            }
            Column::Float64(values, nulls) => {
                let (text, _) = c.number()?;
                // Correctly rounded, as arrow-json's parser is.
                let text = std::str::from_utf8(text).map_err(|_| GiveUp)?;
                values.push(text.parse::<f64>().map_err(|_| GiveUp)?);
                nulls.append_non_null();
            }
            Column::Boolean(values, nulls) => {
                match c.peek()? {
                    b't' => {
                        c.literal(b"true")?;
                        values.append(true);
                    }
                    b'f' => {
                        c.literal(b"false")?;
                        values.append(false);
                    }
                    _ => return Err(GiveUp),
                }
                nulls.append_non_null();
            }
            Column::Utf8(text) => {
                c.string_into(&mut text.bytes)?;
                let end = i32::try_from(text.bytes.len()).map_err(|_| GiveUp)?;
                text.offsets.push(end);
                text.nulls.append_non_null();
            }
            Column::Date32(values, nulls) => {
                let mut scratch = Vec::new();
                c.string_into(&mut scratch)?;
                let text = std::str::from_utf8(&scratch).map_err(|_| GiveUp)?;
                values.push(Date32Type::parse(text).ok_or(GiveUp)?);
                nulls.append_non_null();
            }
            Column::Timestamp(ts) => {
                ts.scratch.clear();
                c.string_into(&mut ts.scratch)?;
                let text = std::str::from_utf8(&ts.scratch).map_err(|_| GiveUp)?;
                let at = string_to_datetime(&ts.timezone, text).map_err(|_| GiveUp)?;
                ts.values.push(match ts.unit {
                    TimeUnit::Second => at.timestamp(),
                    TimeUnit::Millisecond => at.timestamp_millis(),
                    TimeUnit::Microsecond => at.timestamp_micros(),
                    TimeUnit::Nanosecond => at.timestamp_nanos_opt().ok_or(GiveUp)?,
                });
                ts.nulls.append_non_null();
            }
            Column::Struct(s) => s.object(c, depth + 1)?,
            Column::List(list) => list.array(c, depth + 1)?,
        }
        Ok(())
    }

    fn null(&mut self) {
        match self {
            Column::Int64(values, nulls) => {
                values.push(0);
                nulls.append_null();
            }
            Column::Float64(values, nulls) => {
                values.push(0.0);
                nulls.append_null();
            }
            Column::Boolean(values, nulls) => {
                values.append(false);
                nulls.append_null();
            }
            Column::Utf8(text) => {
                text.offsets.push(*text.offsets.last().unwrap_or(&0));
                text.nulls.append_null();
            }
            Column::Date32(values, nulls) => {
                values.push(0);
                nulls.append_null();
            }
            Column::Timestamp(ts) => {
                ts.values.push(0);
                ts.nulls.append_null();
            }
            Column::Struct(s) => s.null(),
            Column::List(list) => {
                list.offsets.push(*list.offsets.last().unwrap_or(&0));
                list.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> Step<ArrayRef> {
        Ok(match self {
            Column::Int64(values, nulls) => Arc::new(Int64Array::new(
                ScalarBuffer::from(std::mem::take(values)),
                nulls.finish(),
            )),
            Column::Float64(values, nulls) => Arc::new(Float64Array::new(
                ScalarBuffer::from(std::mem::take(values)),
                nulls.finish(),
            )),
            Column::Boolean(values, nulls) => {
                Arc::new(BooleanArray::new(values.finish(), nulls.finish()))
            }
            Column::Utf8(text) => {
                let offsets = std::mem::replace(&mut text.offsets, vec![0]);
                Arc::new(
                    StringArray::try_new(
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        Buffer::from_vec(std::mem::take(&mut text.bytes)),
                        text.nulls.finish(),
                    )
                    .map_err(|_| GiveUp)?,
                )
            }
            Column::Date32(values, nulls) => primitive(
                DataType::Date32,
                values.len(),
                Buffer::from_vec(std::mem::take(values)),
                nulls.finish(),
            )?,
            Column::Timestamp(ts) => primitive(
                ts.data_type.clone(),
                ts.values.len(),
                Buffer::from_vec(std::mem::take(&mut ts.values)),
                ts.nulls.finish(),
            )?,
            Column::Struct(s) => {
                let (columns, nulls) = s.finish()?;
                Arc::new(
                    StructArray::try_new(s.fields.clone(), columns, nulls).map_err(|_| GiveUp)?,
                )
            }
            Column::List(list) => {
                let offsets = std::mem::replace(&mut list.offsets, vec![0]);
                let values = list.values.finish()?;
                Arc::new(
                    ListArray::try_new(
                        list.item.clone(),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        values,
                        list.nulls.finish(),
                    )
                    .map_err(|_| GiveUp)?,
                )
            }
        })
    }
}

fn primitive(
    data_type: DataType,
    len: usize,
    values: Buffer,
    nulls: Option<NullBuffer>,
) -> Step<ArrayRef> {
    let data = ArrayData::builder(data_type)
        .len(len)
        .add_buffer(values)
        .nulls(nulls)
        .build()
        .map_err(|_| GiveUp)?;
    Ok(make_array(data))
}

impl StructColumn {
    fn new(fields: &Fields) -> Option<StructColumn> {
        Some(StructColumn {
            fields: fields.clone(),
            names: fields
                .iter()
                .map(|f| f.name().as_bytes().to_vec().into_boxed_slice())
                .collect(),
            children: fields
                .iter()
                .map(|f| Column::new(f.data_type()))
                .collect::<Option<Vec<_>>>()?,
            seen: vec![0; fields.len()],
            stamp: 0,
            nulls: NullBufferBuilder::new(0),
            known: Vec::new(),
            shape: Vec::new(),
        })
    }

    /// Appends the JSON object at the cursor as one row.
    fn object(&mut self, c: &mut Cursor<'_>, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        c.eat(b'{')?;
        self.stamp += 1;
        let mut next = 0;
        c.items(b'}', |c, k| {
            let key = c.plain_key()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            match self.place(key, k, next) {
                Some(i) => {
                    if self.seen[i] == self.stamp {
                        return Err(GiveUp); // arrow-json keeps the last; leave it to it
                    }
                    self.seen[i] = self.stamp;
                    let nullable = self.fields[i].is_nullable();
                    self.children[i].value(c, nullable, depth)?;
                    next = i + 1;
                    Ok(())
                }
                None => c.skip_value(depth + 1),
            }
        })?;
        for (i, child) in self.children.iter_mut().enumerate() {
            if self.seen[i] != self.stamp {
                if !self.fields[i].is_nullable() {
                    return Err(GiveUp);
                }
                child.null();
            }
        }
        self.nulls.append_non_null();
        Ok(())
    }

    /// The field of the `k`-th key of an object (`None`: a key not read);
    /// `next` is the field after the last one placed.
    fn place(&mut self, key: &[u8], k: usize, next: usize) -> Option<usize> {
        if let Some(&known) = self.shape.get(k) {
            let (name, field) = &self.known[usize::from(known)];
            if same_key(name, key) {
                return *field;
            }
        }
        if self.known.len() == MAX_KNOWN_KEYS {
            return self.field_index(key, next); // a map, most likely
        }
        let known = match self.known.iter().position(|(name, _)| same_key(name, key)) {
            Some(known) => known,
            None => {
                let field = self.field_index(key, next);
                self.known.push((key.into(), field));
                self.known.len() - 1
            }
        };
        if let Ok(index) = u8::try_from(known) {
            if k < self.shape.len() {
                self.shape[k] = index;
            } else if k == self.shape.len() {
                self.shape.push(index);
            }
        }
        self.known[known].1
    }

    /// Fields mostly arrive in schema order: try the one after the last first.
    fn field_index(&self, key: &[u8], next: usize) -> Option<usize> {
        if self.names.get(next).is_some_and(|n| same_key(n, key)) {
            return Some(next);
        }
        self.names.iter().position(|n| same_key(n, key))
    }

    fn null(&mut self) {
        for child in &mut self.children {
            child.null();
        }
        self.nulls.append_null();
    }

    fn finish(&mut self) -> Step<(Vec<ArrayRef>, Option<NullBuffer>)> {
        let columns = self
            .children
            .iter_mut()
            .map(Column::finish)
            .collect::<Step<Vec<_>>>()?;
        Ok((columns, self.nulls.finish()))
    }
}

/// Whether two object keys are equal. Keys are short: comparing them in a
/// few word loads spares a call to `memcmp` per key of every event.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const W: usize>(s: &[u8], at: usize) -> [u8; W] {
        let mut word = [0u8; W];
        word.copy_from_slice(&s[at..at + W]);
        word
    }
    match n {
        0 => true,
        // The first, middle and last byte cover all of them.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        // Two overlapping words cover all of them.
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

impl ListColumn {
    fn array(&mut self, c: &mut Cursor<'_>, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        c.eat(b'[')?;
        let mut count: usize = 0;
        let nullable = self.item.is_nullable();
        c.items(b']', |c, _| {
            self.values.value(c, nullable, depth)?;
            count += 1;
            Ok(())
        })?;
        let last = *self.offsets.last().unwrap_or(&0);
        let count = i32::try_from(count).map_err(|_| GiveUp)?;
        self.offsets.push(last.checked_add(count).ok_or(GiveUp)?);
        self.nulls.append_non_null();
        Ok(())
    }
}

fn parse_i64(text: &[u8]) -> Step<i64> {
    // `text` is a checked JSON integer: an optional '-' and digits.
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for &d in digits {
        let digit = i64::from(d - b'0');
        value = value.checked_mul(10).ok_or(GiveUp)?;
        value = if negative {
            value.checked_sub(digit)
        } else {
            value.checked_add(digit)
        }
        .ok_or(GiveUp)?;
    }
    Ok(value)
}

/// A position in one event's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over the items of an array or object whose opening bracket is
    /// behind the cursor, through its `close`, separated by commas: `item`
    /// reads the `k`-th one, the cursor on its first byte.
    #[inline]
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self, usize) -> Step) -> Step {
        self.ws();
        if self.peek()? == close {
            self.pos += 1;
            return Ok(());
        }
        let mut k = 0;
        loop {
            self.ws();
            item(self, k)?;
            self.ws();
            match self.next()? {
                b',' => k += 1,
                b if b == close => return Ok(()),
                _ => return Err(GiveUp),
            }
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Step<u8> {
        self.buf.get(self.pos).copied().ok_or(GiveUp)
    }

    fn next(&mut self) -> Step<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn eat(&mut self, wanted: u8) -> Step {
        if self.peek()? == wanted {
            self.pos += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// A number in JSON's grammar; returns its text and whether it is an
    /// integer (no fraction, no exponent).
    fn number(&mut self) -> Step<(&'a [u8], bool)> {
        let start = self.pos;
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return Err(GiveUp),
        }
        let mut integer = true;
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            integer = false;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.buf.get(self.pos) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok((&self.buf[start..self.pos], integer))
    }

    fn digits(&mut self) {
        while self.buf.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Step {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            Err(GiveUp)
        } else {
            Ok(())
        }
    }

    /// An object key without escapes; a key with escapes goes to arrow-json.
    fn plain_key(&mut self) -> Step<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.pos;
        let stop = start + string_stop(&self.buf[start..]).ok_or(GiveUp)?;
        if self.buf[stop] != b'"' {
            return Err(GiveUp);
        }
        self.pos = stop + 1;
        Ok(&self.buf[start..stop])
    }

    /// Appends the decoded text of the string at the cursor to `out`.
    fn string_into(&mut self, out: &mut Vec<u8>) -> Step {
        self.eat(b'"')?;
        loop {
            let start = self.pos;
            let stop = start + string_stop(&self.buf[start..]).ok_or(GiveUp)?;
            out.extend_from_slice(&self.buf[start..stop]);
            self.pos = stop + 1;
            match self.buf[stop] {
                b'"' => return Ok(()),
                b'\\' => self.escape(Some(out))?,
                _ => return Err(GiveUp), // a raw control character
            }
        }
    }

    fn skip_string(&mut self) -> Step {
        self.eat(b'"')?;
        loop {
            let stop = self.pos + string_stop(&self.buf[self.pos..]).ok_or(GiveUp)?;
            self.pos = stop + 1;
            match self.buf[stop] {
                b'"' => return Ok(()),
                b'\\' => self.escape(None)?,
                _ => return Err(GiveUp),
            }
        }
    }

    /// The escape after a backslash; decoded into `out` when given.
    fn escape(&mut self, out: Option<&mut Vec<u8>>) -> Step {
        let byte = match self.next()? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                if let Some(out) = out {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
                return Ok(());
            }
            _ => return Err(GiveUp),
        };
        if let Some(out) = out {
            out.push(byte);
        }
        Ok(())
    }

    /// `XXXX` after `\u`, with the low half of a surrogate pair if one follows.
    fn unicode_escape(&mut self) -> Step<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                self.literal(b"\\u")?;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(GiveUp);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(GiveUp),
            other => other,
        };
        char::from_u32(code).ok_or(GiveUp)
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self.buf.get(self.pos..self.pos + 4).ok_or(GiveUp)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16).ok_or(GiveUp)?;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Skips any JSON value, checking its syntax.
    fn skip_value(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                self.pos += 1;
                self.items(b'}', |c, _| {
                    c.skip_string()?;
                    c.ws();
                    c.eat(b':')?;
                    c.ws();
                    c.skip_value(depth + 1)
                })
            }
            b'[' => {
                self.pos += 1;
                self.items(b']', |c, _| c.skip_value(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        let size = Fields::from(vec![
            Field::new("size", DataType::Utf8, true),
            Field::new("qty", DataType::Int64, true),
        ]);
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "meta",
                DataType::Struct(Fields::from(vec![
                    Field::new("v", DataType::Int64, false),
                    Field::new("tag", DataType::Utf8, true),
                ])),
                true,
            ),
            Field::new(
                "sizes",
                DataType::List(Arc::new(Field::new("item", DataType::Struct(size), true))),
                true,
            ),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]))
    }

    fn arrow_json(schema: &SchemaRef, events: &[&str]) -> Option<RecordBatch> {
        let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(events.len().max(1))
            .build_decoder()
            .ok()?;
        for event in events {
            decoder.decode(event.as_bytes()).ok()?;
        }
        decoder.flush().ok()?
    }

    fn fast(schema: &SchemaRef, events: &[&str]) -> Option<RecordBatch> {
        let mut decoder = FastDecoder::new(schema).expect("schema supported");
        decoder.decode(events.iter().map(|e| e.as_bytes()))
    }

    /// Events the fast road takes: the same batch as arrow-json's.
    #[test]
    fn decodes_like_arrow_json() {
        let schema = schema();
        let events = [
            r#"{"id":1,"name":"plain","price":12.5,"ok":true,"day":"2024-02-29","at":"2024-01-02T03:04:05.123456Z","meta":{"v":1,"tag":"x"},"sizes":[{"size":"M","qty":2},{"size":"L"}],"tags":["a","b"]}"#,
            r#"{"id":-2,"name":null,"price":-0.0,"ok":false,"meta":null,"sizes":[],"tags":null}"#,
            r#" { "id" : 3 , "name" : "esc \"q\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 ü€" , "price" : 1e-3 , "sizes" : null , "unknown" : {"deep":[1,{"x":null},"s\"",true,false,-1.5E+3]} } "#,
            r#"{"id":9223372036854775807,"price":1.7976931348623157e308,"meta":{"v":-9223372036854775808},"sizes":[null,{"qty":null,"size":"XL","extra":[]}],"tags":["",null]}"#,
            r#"{"at":"2024-06-01 10:00:00+02:00","id":5,"day":"1970-01-01","price":3}"#,
            r#"{"id":6}"#,
        ];
        let expected = arrow_json(&schema, &events).expect("arrow-json decodes these");
        let got = fast(&schema, &events).expect("the fast road decodes these");
        assert_eq!(got, expected);
    }

    #[test]
    fn keys_compare_as_bytes_do() {
        let keys: Vec<Vec<u8>> = (0..=20)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                let mut variants = vec![base.clone()];
                for at in 0..n {
                    let mut changed = base.clone();
                    changed[at] = b'Z';
                    variants.push(changed);
                }
                variants
            })
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(same_key(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// Keys are placed by the order the last object had; objects that change
    /// it, drop or add keys, or hold more keys than remembered still decode
    /// as arrow-json decodes them.
    #[test]
    fn key_order_changes_decode_like_arrow_json() {
        let schema = schema();
        let many_keys: String = (0..300).map(|i| format!(",\"k{i}\":{i}")).collect();
        let wide = format!(r#"{{"id":7,"meta":{{"v":1{many_keys},"tag":"w"}}}}"#);
        let events = [
            r#"{"id":1,"name":"a","x":1,"meta":{"v":1,"tag":"t"}}"#,
            r#"{"id":2,"name":"b","x":2,"meta":{"v":2,"tag":"u"}}"#,
            r#"{"name":"c","id":3,"meta":{"tag":"v","v":3},"x":3}"#,
            r#"{"id":4,"x":4,"meta":{"v":4}}"#,
            r#"{"y":0,"id":5,"name":"e","x":5,"z":[1],"meta":{"v":5,"tag":"t"}}"#,
            &wide,
            r#"{"id":8,"name":"h","x":8,"meta":{"v":8,"tag":"t"}}"#,
        ];
        let expected = arrow_json(&schema, &events).expect("arrow-json decodes these");
        assert_eq!(fast(&schema, &events).expect("decodes"), expected);
        // a duplicate key is still seen once the order is known
        let duplicate = [
            r#"{"id":1,"name":"a"}"#,
            r#"{"id":2,"name":"b","name":"c"}"#,
        ];
        assert!(fast(&schema, &duplicate).is_none());
    }

    /// Anything arrow-json might read differently, or reject, is left to it.
    #[test]
    fn gives_up_where_arrow_json_must_decide() {
        let schema = schema();
        for event in [
            r#"{"id":"5"}"#,                     // number as text
            r#"{"id":1.0}"#,                     // fraction in an integer column
            r#"{"id":1,"id":2}"#,                // duplicate key
            r#"{"i\u0064":1}"#,                  // escaped key
            r#"{"name":"x"}"#,                   // required id missing
            r#"{"id":null}"#,                    // required id null
            r#"{"id":1,"meta":{"tag":"t"}}"#,    // required meta.v missing
            r#"{"id":1,"name":5}"#,              // number in a text column
            r#"{"id":1,,"name":"a"}"#,           // malformed
            r#"{"id":1,"name":"a",}"#,           // trailing comma
            r#"{"id":01}"#,                      // leading zero
            r#"{"id":1,"x":[1,]}"#,              // malformed in a skipped field
            r#"{"id":1,"x":"\x"}"#,              // bad escape
            r#"{"id":1,"name":"\ud800"}"#,       // lone surrogate
            "{\"id\":1,\"name\":\"tab\there\"}", // raw control character
            r#"{"id":1,"at":"yesterday"}"#,      // not a timestamp
            r#"{"id":1} {"id":2}"#,              // two objects
            r#"[{"id":1}]"#,                     // not an object
            r#"{"id":1,"x":nul}"#,               // truncated literal
            r#"{"id":1"#,                        // cut short
        ] {
            assert!(fast(&schema, &[event]).is_none(), "{event}");
        }
        let invalid_utf8: &[u8] = b"{\"id\":1,\"x\":\"\xff\"}";
        let mut decoder = FastDecoder::new(&schema).expect("schema supported");
        assert!(decoder.decode([invalid_utf8].into_iter()).is_none());
        // after giving up, the next chunk starts clean
        let next = decoder
            .decode([br#"{"id":7}"#.as_slice()].into_iter())
            .expect("decodes");
        assert_eq!(next.num_rows(), 1);
    }

    #[test]
    fn unsupported_types_keep_to_arrow_json() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(10, 2),
            true,
        )]));
        assert!(FastDecoder::new(&schema).is_none());
    }
}
