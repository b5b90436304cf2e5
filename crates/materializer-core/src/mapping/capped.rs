//! Functions that make values of a requested size, capped.
//!
//! `repeat('x', 100000000)` or `range(1, 1e12)` allocate what they are asked
//! for, in one piece, before any limit of the query engine sees it. In a
//! mapping every such request is refused above [`MAX_VALUE_BYTES`] per value
//! or [`MAX_LIST_ELEMENTS`] per list (and ten times that per batch), with a
//! message naming the function; the rest of SQL is untouched.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// The largest text value a function may be asked to make.
pub const MAX_VALUE_BYTES: i64 = 1 << 20;
/// The most elements a function may be asked to put in one list.
pub const MAX_LIST_ELEMENTS: i64 = 100_000;
/// How much more one batch may ask for, in all its rows together.
const BATCH_FACTOR: i64 = 10;

/// What a capped function's size arguments mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Request {
    /// `repeat(text, count)`: bytes = length of text x count.
    Repeat,
    /// `lpad(text, length [, fill])`: up to 4 bytes per character.
    Pad,
    /// `array_repeat(element, count)`.
    ListOfCount,
    /// `array_resize(list, size [, value])`.
    ListOfSize,
    /// `range(start, stop [, step])` / `generate_series(...)` over integers.
    Series,
}

/// The functions capped, by name.
const CAPPED: [(&str, Request); 7] = [
    ("repeat", Request::Repeat),
    ("lpad", Request::Pad),
    ("rpad", Request::Pad),
    ("array_repeat", Request::ListOfCount),
    ("array_resize", Request::ListOfSize),
    ("range", Request::Series),
    ("generate_series", Request::Series),
];

/// Replaces the session's size-making functions by capped ones.
pub fn register(ctx: &SessionContext) {
    for (name, request) in CAPPED {
        if let Some(inner) = ctx.state().scalar_functions().get(name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(Capped {
                inner: inner.as_ref().clone(),
                request,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: ScalarUDF,
    request: Request,
}

impl Capped {
    fn refuse(&self, asked: i64, unit: &str, limit: i64) -> DataFusionError {
        DataFusionError::Execution(format!(
            "{}() was asked for {asked} {unit}; a mapping may make at most {limit} {unit} in one value",
            self.inner.name()
        ))
    }

    /// Checks what the call asks for before it is made.
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let rows = args.number_rows.max(1);
        let (per_value, unit, limit) = match self.request {
            Request::Repeat => {
                let texts = text_lengths(&args.args[0], rows)?;
                let counts = integers(&args.args[1], rows)?;
                let sizes = texts
                    .iter()
                    .zip(&counts)
                    .map(|(t, c)| t.saturating_mul(c.max(&0).to_owned()));
                (sizes.collect::<Vec<_>>(), "bytes", MAX_VALUE_BYTES)
            }
            Request::Pad => {
                let lengths = integers(&args.args[1], rows)?;
                let bytes = lengths.iter().map(|l| l.max(&0).saturating_mul(4));
                (bytes.collect(), "bytes", MAX_VALUE_BYTES)
            }
            Request::ListOfCount | Request::ListOfSize => {
                let counts = integers(&args.args[1], rows)?;
                (counts, "elements", MAX_LIST_ELEMENTS)
            }
            Request::Series => (
                series_lengths(&args.args, rows)?,
                "elements",
                MAX_LIST_ELEMENTS,
            ),
        };
        if let Some(&largest) = per_value.iter().max()
            && largest > limit
        {
            return Err(self.refuse(largest, unit, limit));
        }
        let total = per_value.iter().fold(0i64, |sum, v| sum.saturating_add(*v));
        if total > limit.saturating_mul(BATCH_FACTOR) {
            return Err(DataFusionError::Execution(format!(
                "{}() was asked for {total} {unit} in one batch of rows; at most {} are allowed",
                self.inner.name(),
                limit.saturating_mul(BATCH_FACTOR)
            )));
        }
        Ok(())
    }
}

/// The values of an argument as 64-bit integers, one per row (0 for NULL or
/// what does not convert).
fn integers(value: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    let array = value.to_array(rows)?;
    let array = cast(&array, &DataType::Int64).unwrap_or_else(|_| {
        Arc::new(arrow::array::Int64Array::from(vec![0; array.len()])) as ArrayRef
    });
    let ints = array.as_primitive::<Int64Type>();
    Ok((0..ints.len())
        .map(|i| if ints.is_null(i) { 0 } else { ints.value(i) })
        .collect())
}

/// Byte lengths of a text argument, one per row.
fn text_lengths(value: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    let array = value.to_array(rows)?;
    let array = cast(&array, &DataType::Utf8).unwrap_or(array);
    Ok(match array.data_type() {
        DataType::Utf8 => {
            let texts = array.as_string::<i32>();
            (0..texts.len())
                .map(|i| {
                    if texts.is_null(i) {
                        0
                    } else {
                        texts.value(i).len() as i64
                    }
                })
                .collect()
        }
        _ => vec![1; array.len()],
    })
}

/// Elements of `range`/`generate_series` calls, one per row. Temporal
/// series are counted by their span in days or nanoseconds over the step.
fn series_lengths(args: &[ColumnarValue], rows: usize) -> Result<Vec<i64>> {
    let (start, stop) = match args {
        [stop] => (vec![0; rows], span_points(stop, rows)?),
        [start, stop, ..] => (span_points(start, rows)?, span_points(stop, rows)?),
        [] => return Ok(vec![0; rows]),
    };
    let steps = match args.get(2) {
        Some(step) => step_sizes(step, rows)?,
        None => vec![1; rows],
    };
    Ok((0..rows)
        .map(|i| {
            let span = stop[i].saturating_sub(start[i]).saturating_abs();
            span / steps[i].max(1) + 1
        })
        .collect())
}

/// A series bound as a number on the step's scale: integers as they are,
/// dates in days, timestamps in nanoseconds.
fn span_points(value: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    let array = value.to_array(rows)?;
    let as_int = match array.data_type() {
        DataType::Date32 | DataType::Date64 => {
            cast(&array, &DataType::Date32).and_then(|a| cast(&a, &DataType::Int32))
        }
        DataType::Timestamp(_, _) => cast(
            &array,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
        )
        .and_then(|a| cast(&a, &DataType::Int64)),
        _ => Ok(array.clone()),
    };
    match as_int {
        Ok(ints) => integers(&ColumnarValue::Array(ints), rows),
        Err(_) => Ok(vec![0; rows]),
    }
}

/// A series step on the bounds' scale; an interval counts its days (a month
/// as 28) for dates and its nanoseconds for timestamps (the smaller of the
/// two readings, so that the count is never underestimated).
fn step_sizes(value: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    let array = value.to_array(rows)?;
    match array.data_type() {
        DataType::Interval(_) => {
            let mut steps = Vec::with_capacity(rows);
            for i in 0..array.len() {
                let step = match ScalarValue::try_from_array(&array, i)? {
                    ScalarValue::IntervalMonthDayNano(Some(v)) => {
                        let days = i64::from(v.months) * 28 + i64::from(v.days);
                        let nanos = days
                            .saturating_mul(86_400_000_000_000)
                            .saturating_add(v.nanoseconds);
                        days.max(1).min(nanos.max(1))
                    }
                    ScalarValue::IntervalDayTime(Some(v)) => {
                        let nanos = i64::from(v.days)
                            .saturating_mul(86_400_000_000_000)
                            .saturating_add(i64::from(v.milliseconds) * 1_000_000);
                        i64::from(v.days).max(1).min(nanos.max(1))
                    }
                    ScalarValue::IntervalYearMonth(Some(months)) => i64::from(months) * 28,
                    _ => 1,
                };
                steps.push(step.saturating_abs().max(1));
            }
            Ok(steps)
        }
        _ => Ok(integers(&ColumnarValue::Array(array), rows)?
            .into_iter()
            .map(|s| s.saturating_abs().max(1))
            .collect()),
    }
}

// Every method but `invoke_with_args` is the wrapped function's own.
impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
