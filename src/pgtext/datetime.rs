//! `timestamp`, `timestamptz`, `time` and `date` as PostgreSQL writes them (ISO style): the
//! fraction only when there is one, micro-second precision, `+00` on `timestamptz` (the session
//! zone is UTC), ` BC` for years before 1. And the timestamp text PostgreSQL reads that Arrow's
//! parser does not (no seconds: [`complete_seconds`]).

use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};

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

/// Appends the timestamp at `row` (values in `unit`; `tz`: with time zone, written in UTC);
/// false when it is beyond chrono's range.
pub fn timestamp_text(
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

/// Appends the `time` at `row`; false when it is not within a day.
pub fn time_text(array: &dyn Array, row: usize, out: &mut String) -> bool {
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

/// Appends the `date` at `row`; false when it is beyond chrono's range.
pub fn date_text(array: &dyn Array, row: usize, out: &mut String) -> bool {
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

/// Timestamp text PostgreSQL reads and Arrow does not: `date hh:mm` (or `h:mm`, `T` between)
/// as `date hh:mm:00`; `None` for any other text.
pub fn complete_seconds(text: &str) -> Option<String> {
    let t = text.trim();
    // `YYYY-MM-DD H:MM` or `YYYY-MM-DD HH:MM`: anything longer has its seconds (the common
    // case, checked first: COPY and INSERT look at every timestamp text).
    if !(15..=16).contains(&t.len()) {
        return None;
    }
    let (date, time) = t.split_once([' ', 'T'])?;
    let date_ok = date.len() == 10
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    let (h, m) = time.trim().split_once(':')?;
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
    };
    (date_ok && digits(h, 1..=2) && digits(m, 2..=2)).then(|| format!("{date} {h:0>2}:{m}:00"))
}

/// `strings` with [`complete_seconds`] applied where it changes a value (`None`: nothing to
/// change; then the caller keeps its array).
pub fn complete_seconds_in(strings: &dyn Array) -> Option<ArrayRef> {
    let text = datafusion::arrow::compute::cast(strings, &DataType::Utf8).ok()?;
    let text = text.as_string::<i32>();
    if !text.iter().flatten().any(|v| complete_seconds(v).is_some()) {
        return None;
    }
    let done: StringArray = text
        .iter()
        .map(|v| v.map(|v| complete_seconds(v).unwrap_or_else(|| v.to_string())))
        .collect();
    Some(Arc::new(done))
}

/// A duration in PostgreSQL's setting syntax (a bare number is milliseconds) in
/// milliseconds; `Err(true)` for an unknown unit.
pub fn duration_ms(v: &str) -> std::result::Result<u64, bool> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().map_err(|_| false)?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(true),
    };
    let ms = (number * scale).round();
    if !(0.0..=i32::MAX as f64).contains(&ms) {
        return Err(false);
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
