//! PostgreSQL's text form of Arrow values: what `SELECT` sends in text format, what a cast to
//! `text` and `concat` produce, and the fields of arrays and records.
//!
//! Arrow's own display differs from PostgreSQL's for most types other than integers and
//! strings (`2026-01-01T00:00:01`, `1 days`, `[3, 1, 2]`, `1e300`, `{a: 1}`); everything a client
//! sees as text comes through here instead, so a value reads the same wherever it is shown.

pub mod copy;
pub mod datetime;
pub mod float;
pub mod pgcopy;

use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Int16Type, Int32Type, Int64Type, Int8Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, TimeUnit, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pg_interval::Interval as PgInterval;

/// How booleans and floats are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Style {
    /// `true` / `false` (a cast to text) instead of `t` / `f` (output, `concat`, inside arrays
    /// and records).
    pub bool_words: bool,
    /// The session's `extra_float_digits` (1, PostgreSQL's default: shortest exact digits).
    pub extra_float_digits: i8,
}

impl Style {
    /// As `boolout` and the other output functions write values.
    pub const OUTPUT: Style = Style {
        bool_words: false,
        extra_float_digits: 1,
    };
    /// As a cast to `text` writes values.
    pub const CAST: Style = Style {
        bool_words: true,
        extra_float_digits: 1,
    };
}

/// Whether Arrow writes values of type `t` unlike PostgreSQL (its cast to text, arrow-pg's cells):
/// the types [`write_value`] must write. Integers, decimals and strings read the same in both.
pub fn differs_from_arrow(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Timestamp(_, _)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Date32
            | DataType::Date64
            | DataType::Interval(_)
            | DataType::Duration(_)
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
    )
}

/// Appends the value at `row` of `array` (not NULL) as PostgreSQL writes it in text.
/// False, with nothing appended, when this module has no PostgreSQL form for it (types
/// PostgreSQL lacks, such as maps and unions; values beyond chrono's range): the caller
/// chooses another rendering.
pub fn write_value(array: &dyn Array, row: usize, style: Style, out: &mut String) -> bool {
    let mark = out.len();
    let written = match array.data_type() {
        DataType::Boolean => {
            let v = array.as_boolean().value(row);
            out.push_str(match (v, style.bool_words) {
                (true, true) => "true",
                (false, true) => "false",
                (true, false) => "t",
                (false, false) => "f",
            });
            true
        }
        DataType::Float16 | DataType::Float32 => {
            float::float_text(array, row, true, style.extra_float_digits, out);
            true
        }
        DataType::Float64 => {
            float::float_text(array, row, false, style.extra_float_digits, out);
            true
        }
        DataType::Timestamp(unit, tz) => {
            datetime::timestamp_text(array, row, *unit, tz.is_some(), out)
        }
        DataType::Time32(_) | DataType::Time64(_) => datetime::time_text(array, row, out),
        DataType::Date32 | DataType::Date64 => datetime::date_text(array, row, out),
        DataType::Interval(unit) => {
            out.push_str(&interval(array, row, *unit).to_postgres());
            true
        }
        DataType::Duration(unit) => duration_text(array, row, *unit, out),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            binary_text(array, row, out);
            true
        }
        DataType::Utf8 => {
            out.push_str(array.as_string::<i32>().value(row));
            true
        }
        DataType::LargeUtf8 => {
            out.push_str(array.as_string::<i64>().value(row));
            true
        }
        DataType::Utf8View => {
            out.push_str(array.as_string_view().value(row));
            true
        }
        DataType::List(_) => list_text(&array.as_list::<i32>().value(row), style, out),
        DataType::LargeList(_) => list_text(&array.as_list::<i64>().value(row), style, out),
        DataType::FixedSizeList(_, _) => {
            list_text(&array.as_fixed_size_list().value(row), style, out)
        }
        DataType::Struct(_) => record_text(array, row, style, out),
        DataType::Int8 => int_text::<Int8Type>(array, row, out),
        DataType::Int16 => int_text::<Int16Type>(array, row, out),
        DataType::Int32 => int_text::<Int32Type>(array, row, out),
        DataType::Int64 => int_text::<Int64Type>(array, row, out),
        DataType::UInt8 => int_text::<UInt8Type>(array, row, out),
        DataType::UInt16 => int_text::<UInt16Type>(array, row, out),
        DataType::UInt32 => int_text::<UInt32Type>(array, row, out),
        DataType::UInt64 => int_text::<UInt64Type>(array, row, out),
        DataType::Decimal128(..) | DataType::Decimal256(..) => arrow_text(array, row, out),
        _ => false,
    };
    if !written {
        out.truncate(mark);
    }
    written
}

/// Appends the value at `row` as [`write_value`] does, or else as Arrow displays it.
pub fn write_text(array: &dyn Array, row: usize, style: Style, out: &mut String) {
    if !write_value(array, row, style, out) {
        arrow_text(array, row, out);
    }
}

/// Appends the integer at `row` (no formatter built per value, as for Arrow's display).
fn int_text<T>(array: &dyn Array, row: usize, out: &mut String) -> bool
where
    T: datafusion::arrow::datatypes::ArrowPrimitiveType,
    T::Native: std::fmt::Display,
{
    write!(out, "{}", array.as_primitive::<T>().value(row)).is_ok()
}

/// Appends Arrow's display of the value at `row`; false if Arrow cannot format the type.
fn arrow_text(array: &dyn Array, row: usize, out: &mut String) -> bool {
    match ArrayFormatter::try_new(array, &FormatOptions::default()) {
        Ok(f) => write!(out, "{}", f.value(row)).is_ok(),
        Err(_) => false,
    }
}

fn interval(array: &dyn Array, row: usize, unit: IntervalUnit) -> PgInterval {
    match unit {
        IntervalUnit::YearMonth => PgInterval::new(
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        IntervalUnit::DayTime => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            PgInterval::new(0, v.days, i64::from(v.milliseconds) * 1_000)
        }
        IntervalUnit::MonthDayNano => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            PgInterval::new(v.months, v.days, v.nanoseconds / 1_000)
        }
    }
}

fn duration_text(array: &dyn Array, row: usize, unit: TimeUnit, out: &mut String) -> bool {
    use datafusion::arrow::datatypes::{
        DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
        DurationSecondType,
    };
    let micros = match unit {
        TimeUnit::Second => array
            .as_primitive::<DurationSecondType>()
            .value(row)
            .checked_mul(1_000_000),
        TimeUnit::Millisecond => array
            .as_primitive::<DurationMillisecondType>()
            .value(row)
            .checked_mul(1_000),
        TimeUnit::Microsecond => Some(array.as_primitive::<DurationMicrosecondType>().value(row)),
        TimeUnit::Nanosecond => {
            Some(array.as_primitive::<DurationNanosecondType>().value(row) / 1_000)
        }
    };
    match micros {
        Some(m) => {
            out.push_str(&PgInterval::new(0, 0, m).to_postgres());
            true
        }
        None => false,
    }
}

/// `bytea` in hex format: `\x` and two lower-case digits per byte.
fn binary_text(array: &dyn Array, row: usize, out: &mut String) {
    let bytes: &[u8] = match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(row),
        DataType::LargeBinary => array.as_binary::<i64>().value(row),
        DataType::BinaryView => array.as_binary_view().value(row),
        _ => array.as_fixed_size_binary().value(row),
    };
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// An array as `array_out` writes it: `{1,NULL,"a b"}`; nested lists as `{{1,2},{3}}`.
fn list_text(values: &dyn Array, style: Style, out: &mut String) -> bool {
    let style = Style {
        bool_words: false,
        ..style
    };
    let nested = matches!(
        values.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
    );
    let mut item = String::new();
    out.push('{');
    for i in 0..values.len() {
        if i > 0 {
            out.push(',');
        }
        if values.is_null(i) {
            out.push_str("NULL");
            continue;
        }
        item.clear();
        write_text(values, i, style, &mut item);
        if nested {
            out.push_str(&item);
        } else {
            quote_array_item(&item, out);
        }
    }
    out.push('}');
    true
}

fn quote_array_item(item: &str, out: &mut String) {
    let needs = item.is_empty()
        || item.eq_ignore_ascii_case("NULL")
        || item
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || is_pg_space(c));
    if !needs {
        out.push_str(item);
        return;
    }
    out.push('"');
    for c in item.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A record as `record_out` writes it: `(1,,"a b")` — a NULL field is empty.
fn record_text(array: &dyn Array, row: usize, style: Style, out: &mut String) -> bool {
    let style = Style {
        bool_words: false,
        ..style
    };
    let record = array.as_struct();
    let mut item = String::new();
    out.push('(');
    for (i, column) in record.columns().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if column.is_null(row) {
            continue;
        }
        item.clear();
        write_text(column.as_ref(), row, style, &mut item);
        let needs = item.is_empty()
            || item
                .chars()
                .any(|c| matches!(c, '(' | ')' | ',' | '"' | '\\') || is_pg_space(c));
        if !needs {
            out.push_str(&item);
            continue;
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push(c);
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push(')');
    true
}

/// C's `isspace` in the C locale, which `array_out` and `record_out` quote.
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray, StructArray,
    };
    use datafusion::arrow::datatypes::{Field, Int64Type};
    use std::sync::Arc;

    fn text(array: &dyn Array, row: usize, style: Style) -> String {
        let mut s = String::new();
        write_text(array, row, style, &mut s);
        s
    }

    #[test]
    fn arrays_quote_as_array_out_does() {
        // Each expectation is PostgreSQL 15's output.
        let strings = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(vec![
            Some(3),
            None,
            Some(-1),
        ])]);
        assert_eq!(text(&strings, 0, Style::OUTPUT), "{3,NULL,-1}");
        let values = StringArray::from(vec![
            Some("a b"),
            Some(""),
            Some("null"),
            Some("x\"\\"),
            None,
            Some("é"),
        ]);
        let list = ListArray::new(
            Arc::new(Field::new("item", DataType::Utf8, true)),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([6]),
            Arc::new(values),
            None,
        );
        assert_eq!(
            text(&list, 0, Style::CAST),
            r#"{"a b","","null","x\"\\",NULL,é}"#
        );
    }

    #[test]
    fn records_quote_as_record_out_does() {
        let fields: Vec<(Arc<Field>, ArrayRef)> = vec![
            (
                Arc::new(Field::new("a", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![None, Some(1)])),
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec![Some(""), Some("say \"hi\", (ok)")])),
            ),
            (
                Arc::new(Field::new("c", DataType::Boolean, true)),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
            ),
            (
                Arc::new(Field::new("d", DataType::Float64, true)),
                Arc::new(Float64Array::from(vec![1e300, 3.0])),
            ),
        ];
        let record = StructArray::from(fields);
        assert_eq!(text(&record, 0, Style::CAST), r#"(,"",t,1e+300)"#);
        assert_eq!(
            text(&record, 1, Style::OUTPUT),
            r#"(1,"say ""hi"", (ok)",,3)"#
        );
    }

    #[test]
    fn scalars_read_as_postgresql_writes_them() {
        let b = BooleanArray::from(vec![true]);
        assert_eq!(text(&b, 0, Style::CAST), "true");
        assert_eq!(text(&b, 0, Style::OUTPUT), "t");
        let bytes = datafusion::arrow::array::BinaryArray::from(vec![&b"A\x00\xff"[..]]);
        assert_eq!(text(&bytes, 0, Style::OUTPUT), "\\x4100ff");
        let iv = datafusion::arrow::array::IntervalMonthDayNanoArray::from(vec![
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(1, 1, 3_000_000_000),
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(0, 0, -7_200_000_000_000),
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(120, 0, 0),
        ]);
        assert_eq!(text(&iv, 0, Style::OUTPUT), "1 mon 1 day 00:00:03");
        assert_eq!(text(&iv, 1, Style::OUTPUT), "-02:00:00");
        assert_eq!(text(&iv, 2, Style::OUTPUT), "10 years");
    }
}
