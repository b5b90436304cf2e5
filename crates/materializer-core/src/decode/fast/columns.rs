//! Column buffers laid out by the schema: each appends the JSON value at the
//! cursor straight into its Arrow buffers and hands out an array at the end
//! of a chunk. Objects place their keys by the order the last object had.
//! Apart from the decoder, which only drives the root object per event.

use std::sync::Arc;

use arrow::array::builder::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayData, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    StructArray, make_array,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use arrow::datatypes::{DataType, Date32Type, FieldRef, Fields, TimeUnit};

use super::cursor::Cursor;
use super::{GiveUp, MAX_DEPTH, Step};

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

pub(super) struct StructColumn {
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
    pub(super) fn new(fields: &Fields) -> Option<StructColumn> {
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
    pub(super) fn object(&mut self, c: &mut Cursor<'_>, depth: usize) -> Step {
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

    pub(super) fn finish(&mut self) -> Step<(Vec<ArrayRef>, Option<NullBuffer>)> {
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
pub(super) fn same_key(a: &[u8], b: &[u8]) -> bool {
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
