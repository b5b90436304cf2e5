//! CSV encoding a warehouse bulk loader accepts as it is.
//!
//! RFC 4180 quoting: a value is quoted when it holds the delimiter, the quote, a
//! line break, or when it is an empty string, so that an empty string and NULL
//! stay apart (NULL is the unquoted null marker, empty by default). This is what
//! PostgreSQL's `COPY ... CSV` and Redshift's `COPY ... CSV` read back exactly.
//! Timestamps are written in UTC (`2024-06-04T07:50:22.311Z` by default).

use arrow::array::{Array, AsArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};

use crate::config::CsvOptions;

/// How a date or timestamp is written.
#[derive(Clone)]
enum TimeFormat {
    /// `%Y-%m-%dT%H:%M:%S%.fZ` / `%Y-%m-%d`, written without chrono's formatter.
    Standard,
    Custom(Vec<Item<'static>>),
}

/// Why rows cannot be written as CSV.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("format {format:?} is not a valid chrono format")]
    TimeFormat {
        format: String,
        #[source]
        source: chrono::format::ParseError,
    },
    #[error("cannot write {data_type} as CSV")]
    Unsupported {
        data_type: arrow::datatypes::DataType,
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl TimeFormat {
    fn parse(format: &str, standard: &str) -> Result<TimeFormat, CsvError> {
        if format == standard {
            return Ok(TimeFormat::Standard);
        }
        let items = StrftimeItems::new(format)
            .parse_to_owned()
            .map_err(|source| CsvError::TimeFormat {
                format: format.to_string(),
                source,
            })?;
        Ok(TimeFormat::Custom(items))
    }
}

/// Encodes record batches as CSV rows.
#[derive(Clone)]
pub struct CsvEncoder {
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    null: Vec<u8>,
    /// The bytes that make a text value need quotes, by value.
    special: [bool; 256],
    /// The same bytes, listed.
    special_bytes: Vec<u8>,
    /// Whether the delimiter or the quote is a byte numbers are written
    /// with (a digit, a sign, a point, an exponent): only then may a number
    /// need quotes.
    numbers_may_need_quotes: bool,
    header: bool,
    timestamp: TimeFormat,
    date: TimeFormat,
}

type CellWriter<'a> = Box<dyn Fn(usize, &mut Vec<u8>) + 'a>;

impl CsvEncoder {
    pub fn new(options: &CsvOptions) -> Result<CsvEncoder, CsvError> {
        let (delimiter, quote, escape) = (
            options.delimiter as u8,
            options.quote as u8,
            options.escape.map(|c| c as u8),
        );
        let mut special = [false; 256];
        let mut special_bytes = Vec::new();
        for b in [delimiter, quote, b'\n', b'\r'].into_iter().chain(escape) {
            if !special[b as usize] {
                special_bytes.push(b);
            }
            special[b as usize] = true;
        }
        let numbers_may_need_quotes = [delimiter, quote]
            .iter()
            .any(|b| b"0123456789+-.eE".contains(b));
        Ok(CsvEncoder {
            delimiter,
            quote,
            escape,
            special,
            special_bytes,
            numbers_may_need_quotes,
            null: options.null.as_bytes().to_vec(),
            header: options.header,
            timestamp: TimeFormat::parse(&options.timestamp_format, "%Y-%m-%dT%H:%M:%S%.fZ")?,
            date: TimeFormat::parse(&options.date_format, "%Y-%m-%d")?,
        })
    }

    /// The header line, when the dialect has one.
    pub fn header(&self, schema: &Schema, out: &mut Vec<u8>) {
        if !self.header {
            return;
        }
        for (i, field) in schema.fields().iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            self.text(field.name().as_bytes(), out);
        }
        out.push(b'\n');
    }

    /// Appends the rows of `batch`.
    pub fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), CsvError> {
        let writers: Vec<CellWriter<'_>> = batch
            .columns()
            .iter()
            .map(|column| self.cell_writer(column.as_ref()))
            .collect::<Result<_, _>>()?;
        let nulls: Vec<Option<NullBuffer>> =
            batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            for (i, write) in writers.iter().enumerate() {
                if i > 0 {
                    out.push(self.delimiter);
                }
                if nulls[i].as_ref().is_some_and(|n| n.is_null(row)) {
                    out.extend_from_slice(&self.null);
                } else {
                    write(row, out);
                }
            }
            out.push(b'\n');
        }
        Ok(())
    }

    fn needs_quotes(&self, value: &[u8]) -> bool {
        value.is_empty()
            || (!self.null.is_empty() && value == self.null.as_slice())
            || self.has_special(value)
    }

    /// Whether `value` holds a byte that needs quotes: eight bytes at a time
    /// (a byte equal to a special one is a zero byte after an xor), the rest
    /// one by one.
    fn has_special(&self, value: &[u8]) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        let mut chunks = value.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            let mut hits = 0;
            for &special in &self.special_bytes {
                let x = word ^ (ONES * u64::from(special));
                hits |= x.wrapping_sub(ONES) & !x;
            }
            if hits & HIGHS != 0 {
                return true;
            }
        }
        chunks.remainder().iter().any(|&b| self.special[b as usize])
    }

    /// Writes a text value, quoted when it must be.
    fn text(&self, value: &[u8], out: &mut Vec<u8>) {
        if !self.needs_quotes(value) {
            out.extend_from_slice(value);
            return;
        }
        out.push(self.quote);
        for &b in value {
            if b == self.quote {
                out.push(self.escape.unwrap_or(self.quote));
            } else if Some(b) == self.escape {
                out.push(b);
            }
            out.push(b);
        }
        out.push(self.quote);
    }

    /// Writes a number (never empty; special only with a dialect whose
    /// delimiter or quote is a byte of numbers).
    fn plain(&self, value: &[u8], out: &mut Vec<u8>) {
        if self.numbers_may_need_quotes
            && value
                .iter()
                .any(|&b| b == self.delimiter || b == self.quote)
        {
            self.text(value, out);
        } else {
            out.extend_from_slice(value);
        }
    }

    fn cell_writer<'a>(&'a self, column: &'a dyn Array) -> Result<CellWriter<'a>, CsvError> {
        macro_rules! integer {
            ($t:ty) => {{
                let values = column.as_primitive::<$t>();
                Box::new(move |row, out: &mut Vec<u8>| {
                    let mut buf = itoa::Buffer::new();
                    self.plain(buf.format(values.value(row)).as_bytes(), out);
                })
            }};
        }
        macro_rules! float {
            ($t:ty, $cents:expr) => {{
                let values = column.as_primitive::<$t>();
                Box::new(move |row, out: &mut Vec<u8>| {
                    let v = values.value(row) as f64;
                    if v.is_nan() {
                        out.extend_from_slice(b"NaN");
                    } else if v.is_infinite() {
                        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
                    } else if !($cents && !self.numbers_may_need_quotes && two_decimals(v, out)) {
                        let mut buf = ryu::Buffer::new();
                        self.plain(buf.format_finite(values.value(row)).as_bytes(), out);
                    }
                })
            }};
        }
        let writer: CellWriter<'a> = match column.data_type() {
            DataType::Utf8 => {
                let values = column.as_string::<i32>();
                Box::new(move |row, out| self.text(values.value(row).as_bytes(), out))
            }
            DataType::LargeUtf8 => {
                let values = column.as_string::<i64>();
                Box::new(move |row, out| self.text(values.value(row).as_bytes(), out))
            }
            DataType::Utf8View => {
                let values = column.as_string_view();
                Box::new(move |row, out| self.text(values.value(row).as_bytes(), out))
            }
            DataType::Boolean => {
                let values = column.as_boolean();
                Box::new(move |row, out| {
                    out.extend_from_slice(if values.value(row) { b"true" } else { b"false" })
                })
            }
            DataType::Int8 => integer!(Int8Type),
            DataType::Int16 => integer!(Int16Type),
            DataType::Int32 => integer!(Int32Type),
            DataType::Int64 => integer!(Int64Type),
            DataType::UInt8 => integer!(UInt8Type),
            DataType::UInt16 => integer!(UInt16Type),
            DataType::UInt32 => integer!(UInt32Type),
            DataType::UInt64 => integer!(UInt64Type),
            DataType::Float32 => float!(Float32Type, false),
            DataType::Float64 => float!(Float64Type, true),
            DataType::Date32 => {
                let values = column.as_primitive::<Date32Type>();
                Box::new(move |row, out| {
                    let days = values.value(row);
                    match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
                        Some(date) => self.write_date(date, out),
                        None => out.extend_from_slice(days.to_string().as_bytes()),
                    }
                })
            }
            DataType::Timestamp(unit, _) => {
                let unit = *unit;
                let data = column.to_data();
                let values: ScalarBuffer<i64> =
                    ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len());
                let day = std::cell::Cell::new(None);
                let standard = matches!(self.timestamp, TimeFormat::Standard);
                Box::new(move |row, out| {
                    if standard && standard_timestamp(values[row], unit, &day, out) {
                        return;
                    }
                    match to_utc(values[row], unit) {
                        Some(ts) => self.write_timestamp(ts, out),
                        None => out.extend_from_slice(values[row].to_string().as_bytes()),
                    }
                })
            }
            _ => {
                let formatter = ArrayFormatter::try_new(column, &FormatOptions::default())
                    .map_err(|source| CsvError::Unsupported {
                        data_type: column.data_type().clone(),
                        source,
                    })?;
                Box::new(move |row, out| {
                    let text = formatter.value(row).to_string();
                    self.text(text.as_bytes(), out);
                })
            }
        };
        Ok(writer)
    }

    fn write_date(&self, date: NaiveDate, out: &mut Vec<u8>) {
        match &self.date {
            TimeFormat::Standard => write_ymd(date.year(), date.month(), date.day(), out),
            TimeFormat::Custom(items) => {
                let text = date.format_with_items(items.iter()).to_string();
                self.text(text.as_bytes(), out);
            }
        }
    }

    fn write_timestamp(&self, ts: NaiveDateTime, out: &mut Vec<u8>) {
        match &self.timestamp {
            TimeFormat::Standard => {
                write_ymd(ts.year(), ts.month(), ts.day(), out);
                out.push(b'T');
                two_digits(ts.hour(), out);
                out.push(b':');
                two_digits(ts.minute(), out);
                out.push(b':');
                two_digits(ts.second(), out);
                write_fraction(ts.nanosecond() % 1_000_000_000, out);
                out.push(b'Z');
            }
            TimeFormat::Custom(items) => {
                let text = ts.format_with_items(items.iter()).to_string();
                self.text(text.as_bytes(), out);
            }
        }
    }
}

/// Writes `v` as `ryu` writes it when `v` is a decimal with at most two
/// fractional digits, as prices and amounts are, and says whether it did.
/// Then `cents / 100` reads back as `v`, and below 1e13 (where doubles are
/// less than 0.01 apart) no text with fewer digits does: it is the shortest
/// text, `ryu`'s, written from the integer without its search.
fn two_decimals(v: f64, out: &mut Vec<u8>) -> bool {
    if v == 0.0 || v.abs() >= 1e13 {
        return false;
    }
    let cents = (v * 100.0).round();
    if cents / 100.0 != v {
        return false;
    }
    let cents = cents as i64;
    if cents < 0 {
        out.push(b'-');
    }
    let (units, fraction) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    out.extend_from_slice(itoa::Buffer::new().format(units).as_bytes());
    out.push(b'.');
    if fraction % 10 == 0 {
        out.push(b'0' + (fraction / 10) as u8);
    } else {
        out.push(b'0' + (fraction / 10) as u8);
        out.push(b'0' + (fraction % 10) as u8);
    }
    true
}

/// The date of the last timestamp a column wrote: the days since the epoch
/// and their `YYYY-MM-DD`.
type LastDay = std::cell::Cell<Option<(i64, [u8; 10])>>;

/// Writes the timestamp `value` in `unit` as [`CsvEncoder::write_timestamp`]
/// writes it in the standard format, without a calendar for a date the
/// column wrote last (a run's events mostly share a few days); says
/// whether it did (not for years outside 0..=9999).
fn standard_timestamp(value: i64, unit: TimeUnit, last: &LastDay, out: &mut Vec<u8>) -> bool {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let (seconds, fraction) = (value.div_euclid(per_second), value.rem_euclid(per_second));
    let nanos = (fraction * (1_000_000_000 / per_second)) as u32;
    let (days, of_day) = (
        seconds.div_euclid(86_400),
        seconds.rem_euclid(86_400) as u32,
    );
    let date = match last.get() {
        Some((cached, date)) if cached == days => date,
        _ => {
            let Some(date) = i32::try_from(days + 719_163)
                .ok()
                .and_then(NaiveDate::from_num_days_from_ce_opt)
                .filter(|d| (0..=9999).contains(&d.year()))
            else {
                return false;
            };
            let mut text = Vec::with_capacity(10);
            write_ymd(date.year(), date.month(), date.day(), &mut text);
            let Ok(text) = <[u8; 10]>::try_from(text.as_slice()) else {
                return false;
            };
            last.set(Some((days, text)));
            text
        }
    };
    out.extend_from_slice(&date);
    out.push(b'T');
    two_digits(of_day / 3600, out);
    out.push(b':');
    two_digits(of_day / 60 % 60, out);
    out.push(b':');
    two_digits(of_day % 60, out);
    write_fraction(nanos, out);
    out.push(b'Z');
    true
}

/// `.` and the fraction of a second, in 3, 6 or 9 digits as it needs (none
/// for a whole second).
fn write_fraction(nanos: u32, out: &mut Vec<u8>) {
    if nanos == 0 {
        return;
    }
    out.push(b'.');
    let (value, digits) = if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    // Zero-padded to `digits`, without a formatter.
    let mut value = value;
    let start = out.len();
    out.resize(start + digits, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A timestamp value in `unit` since the epoch, as UTC date and time.
fn to_utc(value: i64, unit: TimeUnit) -> Option<NaiveDateTime> {
    let dt = match unit {
        TimeUnit::Second => DateTime::from_timestamp(value, 0)?,
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(value)?,
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(value)?,
        TimeUnit::Nanosecond => DateTime::from_timestamp_nanos(value),
    };
    Some(dt.naive_utc())
}

fn two_digits(v: u32, out: &mut Vec<u8>) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn write_ymd(year: i32, month: u32, day: u32, out: &mut Vec<u8>) {
    if (0..=9999).contains(&year) {
        let y = year as u32;
        out.extend_from_slice(&[
            b'0' + (y / 1000) as u8,
            b'0' + (y / 100 % 10) as u8,
            b'0' + (y / 10 % 10) as u8,
            b'0' + (y % 10) as u8,
        ]);
    } else {
        out.extend_from_slice(format!("{year:+05}").as_bytes());
    }
    out.push(b'-');
    two_digits(month, out);
    out.push(b'-');
    two_digits(day, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::timestamp_type;
    use arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Field;
    use std::sync::Arc;

    fn encode(options: &CsvOptions, batch: &RecordBatch) -> String {
        let encoder = CsvEncoder::new(options).unwrap();
        let mut out = Vec::new();
        encoder.header(&batch.schema(), &mut out);
        encoder.encode(batch, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", timestamp_type(), true),
            Field::new("price", DataType::Float64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(-3), Some(4)])),
            Arc::new(StringArray::from(vec![
                Some("plain"),
                Some(""),
                None,
                Some("a \"b\", c\nd"),
            ])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(1_717_487_422_311_000),
                    Some(0),
                    None,
                    Some(1_717_487_422_000_001),
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(vec![
                Some(49.95),
                Some(f64::NAN),
                None,
                Some(3.0),
            ])),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn nulls_are_empty_and_empty_strings_are_quoted() {
        let text = encode(&CsvOptions::default(), &batch());
        assert_eq!(
            text,
            "id,name,at,price\n\
             1,plain,2024-06-04T07:50:22.311Z,49.95\n\
             ,\"\",1970-01-01T00:00:00Z,NaN\n\
             -3,,,\n\
             4,\"a \"\"b\"\", c\nd\",2024-06-04T07:50:22.000001Z,3.0\n"
        );
    }

    #[test]
    fn a_special_byte_anywhere_in_a_long_value_makes_it_quoted() {
        let encoder = CsvEncoder::new(&CsvOptions {
            escape: Some('\\'),
            ..CsvOptions::default()
        })
        .unwrap();
        for len in 1..40 {
            let plain = "é".repeat(len);
            assert!(!encoder.needs_quotes(plain.as_bytes()), "{plain}");
            for special in [b',', b'"', b'\n', b'\r', b'\\'] {
                for at in 0..len {
                    let mut value = vec![b'a'; len];
                    value[at] = special;
                    assert!(encoder.needs_quotes(&value), "{value:?}");
                }
            }
        }
    }

    #[test]
    fn amounts_are_written_as_ryu_writes_them() {
        let ryu = |v: f64| ryu::Buffer::new().format_finite(v).to_string();
        let mut checked = 0;
        let mut check = |v: f64| {
            let mut out = Vec::new();
            if two_decimals(v, &mut out) {
                assert_eq!(String::from_utf8(out).unwrap(), ryu(v), "{v:?}");
                checked += 1;
            } else {
                assert!(out.is_empty());
            }
        };
        for cents in -300_000i64..300_000 {
            check(cents as f64 / 100.0);
        }
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let magnitude = 10f64.powi((x % 16) as i32 - 3);
            check((x >> 11) as f64 / (1u64 << 53) as f64 * magnitude);
            check(((x >> 20) % 10_000_000_000_000) as f64 / 100.0);
        }
        for v in [
            0.1 + 0.2,
            1e13,
            9_999_999_999_999.99,
            1e-3,
            0.01,
            -0.01,
            123.456,
            5e-324,
        ] {
            check(v);
        }
        assert!(checked > 600_000, "{checked}");
        // Not amounts: left to ryu.
        for v in [0.1 + 0.2, 123.456, 1e13, 0.001, -0.0, 0.0] {
            assert!(!two_decimals(v, &mut Vec::new()), "{v:?}");
        }
    }

    #[test]
    fn numbers_are_quoted_when_the_delimiter_is_one_of_their_bytes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(-3), Some(12)])),
            Arc::new(Float64Array::from(vec![Some(49.95), Some(1e20)])),
        ];
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let minus = CsvOptions {
            delimiter: '-',
            header: false,
            ..CsvOptions::default()
        };
        assert_eq!(encode(&minus, &batch), "\"-3\"-49.95\n12-1e20\n");
        let point = CsvOptions {
            delimiter: '.',
            header: false,
            ..CsvOptions::default()
        };
        assert_eq!(encode(&point, &batch), "-3.\"49.95\"\n12.1e20\n");
    }

    /// The standard timestamp written from the day of the value before is
    /// the text chrono's calendar gives, for every unit, before and after
    /// the epoch, across days and years, and out of range.
    #[test]
    fn timestamps_from_the_last_day_are_the_calendars() {
        let encoder = CsvEncoder::new(&CsvOptions::default()).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let per_second: i64 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            let day = LastDay::new(None);
            let mut value: i64 = 1_717_487_422 * per_second;
            for k in 0..200_000u64 {
                value = match k % 4 {
                    // Mostly close to the one before, as events are.
                    0 | 1 => value.saturating_add((next() % 7_000_000) as i64 - 3_000_000),
                    2 => (next() as i64) % (300 * 365 * 86_400 * per_second.min(1_000_000)),
                    _ => (next() % 10) as i64 * per_second + (next() % 1000) as i64,
                };
                if k % 1000 == 0 {
                    value =
                        [i64::MIN, i64::MAX, -1, 0, -86_400 * per_second][(k / 1000 % 5) as usize];
                }
                let mut fast = Vec::new();
                let wrote = standard_timestamp(value, unit, &day, &mut fast);
                let mut calendar = Vec::new();
                match to_utc(value, unit) {
                    Some(ts) => encoder.write_timestamp(ts, &mut calendar),
                    None => calendar.extend_from_slice(value.to_string().as_bytes()),
                }
                if wrote {
                    assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&calendar),
                        "{value} {unit:?}"
                    );
                } else {
                    assert!(fast.is_empty(), "{value} {unit:?}");
                }
            }
        }
    }

    #[test]
    fn dialect_options_apply() {
        let options = CsvOptions {
            delimiter: '|',
            escape: Some('\\'),
            null: "\\N".into(),
            header: false,
            timestamp_format: "%Y-%m-%d %H:%M:%S".into(),
            ..CsvOptions::default()
        };
        let text = encode(&options, &batch());
        assert_eq!(
            text,
            "1|plain|2024-06-04 07:50:22|49.95\n\
             \\N|\"\"|1970-01-01 00:00:00|NaN\n\
             -3|\\N|\\N|\\N\n\
             4|\"a \\\"b\\\", c\nd\"|2024-06-04 07:50:22|3.0\n"
        );
    }
}
