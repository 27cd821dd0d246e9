//! Result rows to the wire, in PostgreSQL's output formats.
//!
//! arrow-pg encodes every cell; this module takes over the cells whose text it renders unlike
//! PostgreSQL (found by `tests/postgres_differential.rs`):
//! - `float4`/`float8` in text: PostgreSQL writes `3`, `1e+300`, `1e-05`, `Infinity`, `-0`
//!   (shortest round-trip digits, exponent from 10^15 / below 10^-4); pgwire wrote `3.0`,
//!   `1e300`, `inf`, `0`. `extra_float_digits` ≤ 0 rounds to 15 (6) + it digits, as `%g` does.
//! - `timestamp`, `timestamptz`, `time` in text: the fraction only when there is one, trailing
//!   zeros dropped, micro-second precision, `+00` on `timestamptz` (the session zone is UTC),
//!   ` BC` for years before 1; `date` likewise.
//! - NULL intervals, in either format: arrow-pg sent them as `00:00:00`.
//!
//! Everything else, and values inside arrays and records, goes through arrow-pg unchanged.

use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

/// How one column's cells are written.
#[derive(Clone, Copy)]
enum Cell {
    /// By arrow-pg.
    ArrowPg,
    /// By arrow-pg, except NULL (written here).
    NullHere,
    /// `float8` text (`true`: `float4`).
    Float { single: bool },
    /// `timestamp` text, values in this unit; `true`: with time zone.
    Timestamp(TimeUnit, bool),
    /// `time` text.
    Time,
    /// `date` text.
    Date,
}

fn cell_kind(data_type: &DataType, format: FieldFormat) -> Cell {
    let text = format == FieldFormat::Text;
    match data_type {
        DataType::Interval(_) => Cell::NullHere,
        DataType::Float16 | DataType::Float32 if text => Cell::Float { single: true },
        DataType::Float64 if text => Cell::Float { single: false },
        DataType::Timestamp(unit, tz) if text => Cell::Timestamp(*unit, tz.is_some()),
        DataType::Time32(_) | DataType::Time64(_) if text => Cell::Time,
        DataType::Date32 | DataType::Date64 if text => Cell::Date,
        _ => Cell::ArrowPg,
    }
}

/// The rows of `batch` as `DataRow`s for `fields` (one per column, as
/// `arrow_schema_to_pg_fields` made them).
pub fn encode_batch(
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> impl Iterator<Item = PgWireResult<DataRow>> {
    let kinds: Vec<Cell> = batch
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(c, f)| cell_kind(c.data_type(), f.format()))
        .collect();
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut text = String::new();
    (0..batch.num_rows()).map(move |row| {
        let schema = batch.schema_ref();
        for (col, kind) in kinds.iter().enumerate() {
            let array = batch.column(col);
            let field = &fields[col];
            let by_arrow_pg = match kind {
                Cell::ArrowPg => true,
                Cell::NullHere => array.is_valid(row),
                _ => false,
            };
            let written = !by_arrow_pg
                && (array.is_null(row) || {
                    text.clear();
                    match *kind {
                        Cell::Float { single } => {
                            let extra = field.format_options().extra_float_digits;
                            float_text(array, row, single, extra, &mut text);
                            true
                        }
                        Cell::Timestamp(unit, tz) => {
                            timestamp_text(array, row, unit, tz, &mut text)
                        }
                        Cell::Time => time_text(array, row, &mut text),
                        Cell::Date => date_text(array, row, &mut text),
                        Cell::ArrowPg | Cell::NullHere => false,
                    }
                });
            if !written {
                // Also values out of chrono's range: arrow-pg says what it can.
                arrow_pg::encoder::encode_value(
                    &mut encoder,
                    array,
                    row,
                    schema.field(col),
                    field,
                )?;
            } else if array.is_null(row) {
                encoder.encode_field(&None::<&str>)?;
            } else {
                encoder.encode_field(&text.as_str())?;
            }
        }
        Ok(encoder.take_row())
    })
}

/// Appends the float at `row` as PostgreSQL's `float8out` / `float4out` write it.
fn float_text(array: &dyn Array, row: usize, single: bool, extra: i8, out: &mut String) {
    let v = match array.data_type() {
        DataType::Float16 => f64::from(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)),
        _ => array.as_primitive::<Float64Type>().value(row),
    };
    pg_float(v, single, extra, out);
}

/// Writes `v` as PostgreSQL does: shortest round-trip digits when `extra_float_digits` > 0
/// (the default), else `%.{DIG + extra}g`; fixed notation for decimal exponents in
/// [-4, DIG), scientific (`1e+300`, `1e-05`) outside it. DIG is 15 for `float8`, 6 for `float4`
/// (whose value `v` holds exactly).
pub fn pg_float(v: f64, single: bool, extra: i8, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let dig: i32 = if single { 6 } else { 15 };
    let (digits, exp, limit) = if extra > 0 {
        let mut buf = ryu::Buffer::new();
        let s = if single {
            buf.format_finite(v as f32)
        } else {
            buf.format_finite(v)
        };
        let (d, e) = decimal_parts(s);
        (d, e, dig)
    } else {
        let precision = (dig + i32::from(extra)).max(1);
        let s = format!("{:.*e}", (precision - 1) as usize, v);
        let (d, e) = decimal_parts(&s);
        (d, e, precision)
    };
    if v < 0.0 {
        out.push('-');
    }
    if exp < -4 || exp >= limit {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
}

/// The significant digits of a finite, non-zero decimal numeral (`-1.25e17`, `0.0001`,
/// `3.0`) without leading or trailing zeros, and the decimal exponent of the first digit.
fn decimal_parts(s: &str) -> (String, i32) {
    let s = s.trim_start_matches('-');
    let (mantissa, e) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut point = int.len() as i32;
    let all: String = int.chars().chain(frac.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    point -= (all.len() - trimmed.len()) as i32;
    let digits = trimmed.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.to_string(), point + e - 1)
}

/// Appends `.ffffff` without trailing zeros when `micros` (< 10^6) is not zero.
fn push_fraction(micros: u32, out: &mut String) {
    if micros != 0 {
        let _ = write!(out, ".{micros:06}");
        let kept = out.trim_end_matches('0').len();
        out.truncate(kept);
    }
}

/// Appends a date as `YYYY-MM-DD`, returning the ` BC` suffix the value needs.
fn push_date(d: NaiveDate, out: &mut String) -> &'static str {
    let (year, bc) = if d.year() <= 0 {
        (1 - d.year(), " BC")
    } else {
        (d.year(), "")
    };
    let _ = write!(out, "{year:04}-{:02}-{:02}", d.month(), d.day());
    bc
}

/// `v` in `unit` as microseconds, rounded half up as PostgreSQL rounds input; `None` on overflow.
fn to_micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000) + i64::from(v.rem_euclid(1_000) >= 500)),
    }
}

fn timestamp_text(
    array: &dyn Array,
    row: usize,
    unit: TimeUnit,
    tz: bool,
    out: &mut String,
) -> bool {
    let v = match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
    };
    let Some(ts) = to_micros(v, unit).and_then(DateTime::from_timestamp_micros) else {
        return false;
    };
    // A zone-aware value is an instant; the session zone is UTC.
    let ts = ts.naive_utc();
    let bc = push_date(ts.date(), out);
    let _ = write!(
        out,
        " {:02}:{:02}:{:02}",
        ts.hour(),
        ts.minute(),
        ts.second()
    );
    push_fraction(ts.nanosecond() / 1_000, out);
    if tz {
        out.push_str("+00");
    }
    out.push_str(bc);
    true
}

fn time_text(array: &dyn Array, row: usize, out: &mut String) -> bool {
    let micros: i64 = match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000
        }
        DataType::Time32(_) => {
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            array.as_primitive::<Time64MicrosecondType>().value(row)
        }
        DataType::Time64(_) => to_micros(
            array.as_primitive::<Time64NanosecondType>().value(row),
            TimeUnit::Nanosecond,
        )
        .unwrap_or(0),
        _ => return false,
    };
    if !(0..=86_400_000_000).contains(&micros) {
        return false;
    }
    let secs = micros / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    push_fraction((micros % 1_000_000) as u32, out);
    true
}

fn date_text(array: &dyn Array, row: usize, out: &mut String) -> bool {
    let date = match array.data_type() {
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|e| e.checked_add_signed(chrono::Duration::days(i64::from(days))))
        }
        _ => DateTime::from_timestamp_millis(array.as_primitive::<Date64Type>().value(row))
            .map(|t| t.date_naive()),
    };
    let Some(date) = date else {
        return false;
    };
    let bc = push_date(date, out);
    out.push_str(bc);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f8(v: f64) -> String {
        let mut s = String::new();
        pg_float(v, false, 1, &mut s);
        s
    }

    #[test]
    fn floats_print_as_postgresql_prints_them() {
        // Each pair is PostgreSQL 15's output (extra_float_digits = 1).
        for (v, want) in [
            (3.0, "3"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (1e300, "1e+300"),
            (-1e300, "-1e+300"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (9.223372036854776e18, "9.223372036854776e+18"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0"),
            (0.0, "0"),
            (5e-324, "5e-324"),
            (100.0, "100"),
        ] {
            assert_eq!(f8(v), want, "{v:e}");
        }
        let mut s = String::new();
        pg_float(f64::from(1e6f32), true, 1, &mut s);
        assert_eq!(s, "1e+06");
        s.clear();
        pg_float(f64::from(1.25e-3f32), true, 1, &mut s);
        assert_eq!(s, "0.00125");
        // extra_float_digits = 0: %.15g.
        s.clear();
        pg_float(0.1 + 0.2, false, 0, &mut s);
        assert_eq!(s, "0.3");
        s.clear();
        pg_float(1e300, false, 0, &mut s);
        assert_eq!(s, "1e+300");
    }

    #[test]
    fn times_drop_an_empty_fraction_and_mark_bc() {
        use datafusion::arrow::array::{
            Date32Array, Time64NanosecondArray, TimestampNanosecondArray,
        };
        let ts = TimestampNanosecondArray::from(vec![
            1_767_225_601_000_000_000,
            1_709_251_199_999_000_000,
            1_500_000_000_123_456_789,
        ]);
        let mut out = Vec::new();
        for row in 0..ts.len() {
            let mut s = String::new();
            assert!(timestamp_text(
                &ts,
                row,
                TimeUnit::Nanosecond,
                row == 2,
                &mut s
            ));
            out.push(s);
        }
        assert_eq!(
            out,
            [
                "2026-01-01 00:00:01",
                "2024-02-29 23:59:59.999",
                "2017-07-14 02:40:00.123457+00"
            ]
        );
        let t = Time64NanosecondArray::from(vec![3_723_000_000_000, 500_000]);
        let mut s = String::new();
        assert!(time_text(&t, 0, &mut s));
        assert_eq!(s, "01:02:03");
        s.clear();
        assert!(time_text(&t, 1, &mut s));
        assert_eq!(s, "00:00:00.0005");
        // 0001-01-01 minus one day is 1 BC, 12-31.
        let d = Date32Array::from(vec![-719_163]);
        s.clear();
        assert!(date_text(&d, 0, &mut s));
        assert_eq!(s, "0001-12-31 BC");
    }
}
