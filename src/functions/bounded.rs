//! Functions whose output can be far larger than their input — `repeat`, `lpad`, `rpad`,
//! `array_repeat`, `array_resize`, `range`, `generate_series` — are wrapped so that a call that
//! would build more than [`OUTPUT_BYTES_MAX`] for one batch is refused with SQLSTATE 54000
//! (program_limit_exceeded) before it allocates. Without this, `array_repeat(x, 2147483647)`
//! allocated until the kernel killed the server (found by `tests/postgres_differential.rs`).
//! PostgreSQL refuses such values too (its limit is 1 GB per value).
//!
//! The estimate is an upper bound computed from the arguments alone; the wrapped function then
//! runs unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl};
use datafusion::prelude::SessionContext;

use crate::error::EddyError;

/// The most bytes one call may build for one batch.
pub const OUTPUT_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes × n.
    Repeat,
    /// `lpad`/`rpad(text, n [, fill])`: n characters of up to 4 bytes.
    Pad,
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(array, n [, value])`: n elements.
    ArrayResize,
    /// `range`/`generate_series(start, stop [, step])`: (stop − start) / step elements.
    Series,
}

/// The functions wrapped, by name.
const WRAPPED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// Replaces each function of [`WRAPPED`] registered in `ctx` (and its aliases) with its bounded
/// form.
pub fn register(ctx: &SessionContext) {
    for (name, growth) in WRAPPED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                growth: *growth,
            }));
        }
    }
}

/// A function and the bound on what it may build.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

/// The integer argument `i` as Int64 values; `None` when it is missing or not an integer.
fn ints(args: &[ColumnarValue], i: usize, rows: usize) -> Result<Option<ArrayRef>> {
    let Some(a) = args.get(i) else {
        return Ok(None);
    };
    let a = a.to_array(rows)?;
    if !a.data_type().is_integer() {
        return Ok(None);
    }
    Ok(Some(cast(&a, &DataType::Int64)?))
}

/// Sum over rows of `max(n, 0) × per_row(row)` for the Int64 array `n`.
fn sum_counts(n: &ArrayRef, per_row: impl Fn(usize) -> u64) -> u64 {
    let n = n.as_primitive::<Int64Type>();
    (0..n.len())
        .filter(|&r| n.is_valid(r))
        .map(|r| (n.value(r).max(0) as u64).saturating_mul(per_row(r)))
        .fold(0u64, u64::saturating_add)
}

/// Bytes of one element of `data_type` in Arrow (at least 1; 16 for variable-sized ones).
fn element_bytes(data_type: &DataType) -> u64 {
    data_type
        .primitive_width()
        .map(|w| w.max(1) as u64)
        .unwrap_or(16)
}

/// Nanoseconds a series argument stands for (integers as themselves, dates in days,
/// timestamps in their unit), for spans.
fn instants(a: &ArrayRef) -> Result<Option<ArrayRef>> {
    let ns_per: i64 = match a.data_type() {
        t if t.is_integer() => 1,
        DataType::Date32 => 86_400_000_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1,
        _ => return Ok(None),
    };
    let v = cast(a, &DataType::Int64)?;
    let v = v.as_primitive::<Int64Type>();
    Ok(Some(Arc::new(
        v.unary::<_, Int64Type>(|x| x.saturating_mul(ns_per)),
    )))
}

impl Bounded {
    /// An upper bound on the bytes this call builds.
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        Ok(match self.growth {
            Growth::Repeat => {
                let Some(n) = ints(args, 1, rows)? else {
                    return Ok(0);
                };
                let text = args[0].to_array(rows)?;
                let len = |r: usize| -> u64 {
                    match text.data_type() {
                        DataType::Utf8 => text.as_string::<i32>().value(r).len() as u64,
                        DataType::LargeUtf8 => text.as_string::<i64>().value(r).len() as u64,
                        DataType::Utf8View => text.as_string_view().value(r).len() as u64,
                        _ => 16,
                    }
                };
                sum_counts(&n, |r| if text.is_valid(r) { len(r) } else { 0 })
            }
            Growth::Pad => match ints(args, 1, rows)? {
                Some(n) => sum_counts(&n, |_| 4),
                None => 0,
            },
            Growth::ArrayRepeat => match ints(args, 1, rows)? {
                Some(n) => {
                    let element = args[0].to_array(rows)?;
                    let per = match element.data_type().primitive_width() {
                        Some(w) => w.max(1) as u64,
                        None => {
                            (element.get_array_memory_size() / element.len().max(1)) as u64 + 16
                        }
                    };
                    sum_counts(&n, |_| per)
                }
                None => 0,
            },
            Growth::ArrayResize => match ints(args, 1, rows)? {
                Some(n) => {
                    let per = match args[0].data_type() {
                        DataType::List(f)
                        | DataType::LargeList(f)
                        | DataType::FixedSizeList(f, _) => element_bytes(f.data_type()),
                        _ => 16,
                    };
                    sum_counts(&n, |_| per)
                }
                None => 0,
            },
            Growth::Series => self.series_estimate(args, rows)?,
        })
    }

    /// (stop − start) / |step| + 1 elements of 8 bytes, per row; a step of one month counts as
    /// 28 days, a missing step as 1 (integers) or a day (dates).
    fn series_estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let (start, stop) = match args {
            [stop] => (None, stop.to_array(rows)?),
            [start, stop, ..] => (Some(start.to_array(rows)?), stop.to_array(rows)?),
            [] => return Ok(0),
        };
        let Some(stop) = instants(&stop)? else {
            return Ok(0);
        };
        let start = match start {
            Some(s) => match instants(&s)? {
                Some(s) => Some(s),
                None => return Ok(0),
            },
            None => None,
        };
        let default_step: i64 = if matches!(args[0].data_type(), DataType::Date32) {
            86_400_000_000_000
        } else {
            1
        };
        let step: Option<ArrayRef> = match args.get(2) {
            None => None,
            Some(s) => {
                let s = s.to_array(rows)?;
                match s.data_type() {
                    t if t.is_integer() => Some(cast(&s, &DataType::Int64)?),
                    DataType::Interval(_) => {
                        let s = cast(
                            &s,
                            &DataType::Interval(
                                datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
                            ),
                        )?;
                        let s = s.as_primitive::<IntervalMonthDayNanoType>();
                        Some(Arc::new(s.unary::<_, Int64Type>(|v| {
                            (i64::from(v.months) * 28 + i64::from(v.days))
                                .saturating_mul(86_400_000_000_000)
                                .saturating_add(v.nanoseconds)
                        })))
                    }
                    _ => return Ok(0),
                }
            }
        };
        let stop = stop.as_primitive::<Int64Type>();
        let mut total = 0u64;
        for r in 0..rows {
            let from = match &start {
                Some(s) if s.is_null(r) => continue,
                Some(s) => s.as_primitive::<Int64Type>().value(r),
                None => 0,
            };
            if stop.is_null(r) {
                continue;
            }
            let step = match &step {
                Some(s) if s.is_null(r) => continue,
                Some(s) => s.as_primitive::<Int64Type>().value(r),
                None => default_step,
            };
            if step == 0 {
                continue; // the function says what is wrong with a zero step
            }
            let span = (i128::from(stop.value(r)) - i128::from(from)) / i128::from(step);
            let count = u64::try_from(span.max(0) + 1).unwrap_or(u64::MAX);
            total = total.saturating_add(count.saturating_mul(8));
        }
        Ok(total)
    }
}

impl ScalarUDFImpl for Bounded {
    super::forward_to_inner!();

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.estimate(&args.args, args.number_rows)?;
        if bytes > OUTPUT_BYTES_MAX {
            return Err(DataFusionError::External(Box::new(EddyError::Data {
                code: "54000",
                message: format!(
                    "{} would build about {bytes} bytes for {} rows, more than the {} bytes \
                     one call may build (PostgreSQL's limit is 1 GB per value)",
                    self.name(),
                    args.number_rows,
                    OUTPUT_BYTES_MAX
                ),
            })));
        }
        let mut args = args;
        if self.growth == Growth::Pad {
            // A negative length is an empty string, as in PostgreSQL; DataFusion's pads
            // sized a buffer from it and panicked (capacity overflow).
            if let Some(n) = args.args.get_mut(1) {
                *n = not_negative(n)?;
            }
        }
        self.inner.invoke_with_args(args)
    }
}

/// `n` (an integer argument) with negative values replaced by 0.
fn not_negative(n: &ColumnarValue) -> Result<ColumnarValue> {
    let ColumnarValue::Array(a) = n else {
        return Ok(match n {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(v))) if *v < 0 => {
                ColumnarValue::Scalar(ScalarValue::Int64(Some(0)))
            }
            other => other.clone(),
        });
    };
    if a.data_type() != &DataType::Int64 {
        return Ok(n.clone());
    }
    let clamped: datafusion::arrow::array::Int64Array =
        a.as_primitive::<Int64Type>().unary(|v| v.max(0));
    Ok(ColumnarValue::Array(Arc::new(clamped)))
}
