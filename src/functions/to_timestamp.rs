//! `to_timestamp(text, template)` and `to_date(text, template)` with PostgreSQL's template
//! patterns (`YYYY-MM-DD HH24:MI:SS.MS`, `DD Mon YYYY`, `YYYYMMDD`, `HH12:MI AM`, …), in place of
//! DataFusion's, which read chrono's `%Y` codes. A template with a `%` in it is still read as
//! chrono's (an eddy extension: PostgreSQL's patterns have no `%`), and every other form
//! (`to_timestamp(number)`, `to_timestamp(text)`, several templates) is DataFusion's.
//!
//! Read as PostgreSQL reads them (outside FX mode): blanks before a field are skipped; a
//! separator in the template matches one separator in the input, or none; other template
//! characters skip one input character; a number field takes up to its width in digits when the
//! next field follows without a separator, otherwise all its digits; `YY`, `YYY`, `Y` take the
//! year nearest 2020; `MONTH`, `MON`, `DAY`, `DY`, `AM`, `PM`, `AD`, `BC` in any case; `D` and
//! `Q` are read and ignored; `WW` and `W` give the first day of that week when no day is given;
//! input after the template is ignored. Fields not given are PostgreSQL's defaults: year 1 BC,
//! January 1, midnight. `TZ`, `OF` and the ISO week fields are refused with 0A000.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, StringArray, TimestampNanosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl};
use datafusion::prelude::SessionContext;

use super::template::{parse, Item};
use crate::error::EddyError;

/// Replaces DataFusion's `to_timestamp` and `to_date` in `ctx` with the forms of this module.
pub fn register(ctx: &SessionContext) {
    for (name, date) in [("to_timestamp", false), ("to_date", true)] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(PgToTimestamp { inner, date }));
        }
    }
}

/// `to_timestamp` (`date`: `to_date`) reading PostgreSQL's templates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToTimestamp {
    inner: Arc<ScalarUDF>,
    date: bool,
}

impl ScalarUDFImpl for PgToTimestamp {
    super::forward_to_inner!();

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [value] = args.args.as_slice() {
            check_seconds(value, args.number_rows)?;
        }
        let [value, template] = args.args.as_slice() else {
            return self.inner.invoke_with_args(args);
        };
        let text = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            )
        };
        if !text(&value.data_type()) || !text(&template.data_type()) {
            return self.inner.invoke_with_args(args);
        }
        let scalar = matches!(
            (value, template),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = if scalar { 1 } else { args.number_rows };
        let as_utf8 = |v: &ColumnarValue| -> Result<ArrayRef> {
            Ok(cast(&v.to_array(rows)?, &DataType::Utf8)?)
        };
        let (values, templates) = (as_utf8(value)?, as_utf8(template)?);
        let templates = templates.as_string::<i32>();
        if templates.iter().flatten().any(|t| t.contains('%')) {
            return self.inner.invoke_with_args(args);
        }
        let out = self.read_all(values.as_string::<i32>(), templates, args.return_type())?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `to_timestamp(double precision)` of NaN, an infinity or seconds beyond eddy's timestamps
/// fails with 22008, as in PostgreSQL; DataFusion gave the epoch or clamped.
fn check_seconds(value: &ColumnarValue, rows: usize) -> Result<()> {
    if !matches!(value.data_type(), DataType::Float64 | DataType::Float32) {
        return Ok(());
    }
    let seconds = cast(&value.to_array(rows)?, &DataType::Float64)?;
    // Nanoseconds in an i64: about ±9.2e9 seconds (1677 to 2262).
    let limit = i64::MAX as f64 / 1e9;
    let bad = seconds
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        .iter()
        .flatten()
        .find(|s| !s.is_finite() || s.abs() >= limit);
    match bad {
        Some(s) => Err(ReadError::range(format!(
            "timestamp out of range: {s} seconds (eddy's timestamps reach from 1677 to 2262)"
        ))
        .into_datafusion("to_timestamp")),
        None => Ok(()),
    }
}

impl PgToTimestamp {
    fn read_all(
        &self,
        values: &StringArray,
        templates: &StringArray,
        out_type: &DataType,
    ) -> Result<ArrayRef> {
        // A constant template (the usual case) is parsed once.
        let mut parsed: Option<(&str, Vec<Item>)> = None;
        let mut dates = Date32Builder::with_capacity(values.len());
        let mut stamps = TimestampNanosecondBuilder::with_capacity(values.len());
        for row in 0..values.len() {
            if values.is_null(row) || templates.is_null(row) {
                dates.append_null();
                stamps.append_null();
                continue;
            }
            let template = templates.value(row);
            if parsed.as_ref().is_none_or(|(t, _)| *t != template) {
                parsed = Some((template, parse(template)));
            }
            let items = parsed.as_ref().map(|(_, i)| i.as_slice()).unwrap_or(&[]);
            let t = read(values.value(row), items).map_err(|e| e.into_datafusion(self.name()))?;
            if self.date {
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                dates.append_value((t.date() - epoch).num_days() as i32);
            } else {
                let nanos = t.and_utc().timestamp_nanos_opt().ok_or_else(|| {
                    ReadError::range(format!(
                        "timestamp out of range: \"{}\" (eddy's timestamps reach from 1677 \
                         to 2262)",
                        values.value(row)
                    ))
                    .into_datafusion(self.name())
                })?;
                stamps.append_value(nanos);
            }
        }
        Ok(match out_type {
            DataType::Timestamp(_, tz) => {
                Arc::new(stamps.finish().with_timezone_opt(tz.clone())) as ArrayRef
            }
            _ => Arc::new(dates.finish()),
        })
    }
}

/// Why an input does not read as a date/time.
#[derive(Debug)]
struct ReadError {
    code: &'static str,
    message: String,
}

impl ReadError {
    fn format(message: String) -> Self {
        ReadError {
            code: "22007",
            message,
        }
    }

    fn range(message: String) -> Self {
        ReadError {
            code: "22008",
            message,
        }
    }

    fn into_datafusion(self, function: &str) -> DataFusionError {
        DataFusionError::External(Box::new(EddyError::Data {
            code: self.code,
            message: format!("{function}: {}", self.message),
        }))
    }
}

/// The fields read so far.
#[derive(Debug, Default)]
struct Fields {
    year: Option<i64>,
    bc: bool,
    century: Option<i64>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    /// `WW` (week of the year) and `W` (week of the month): days 1–7 are week 1.
    week_of_year: Option<u32>,
    week_of_month: Option<u32>,
    julian: Option<i64>,
    hour: Option<u32>,
    /// `Some(true)`: PM; set by `AM`/`PM`; `hour12`: the hour was read on a 12-hour clock.
    pm: Option<bool>,
    hour12: bool,
    minute: Option<u32>,
    second: Option<u32>,
    seconds_of_day: Option<u32>,
    micros: Option<u32>,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// A cursor over the input text.
struct Input<'a> {
    s: &'a str,
}

impl Input<'_> {
    fn skip_blanks(&mut self) {
        self.s = self.s.trim_start_matches(char::is_whitespace);
    }

    fn skip_char(&mut self) {
        let mut c = self.s.chars();
        c.next();
        self.s = c.as_str();
    }

    /// Up to `max` ASCII digits (at least one), as a number.
    fn digits(&mut self, max: usize, pattern: &str) -> Result<(i64, usize), ReadError> {
        let n = self
            .s
            .bytes()
            .take(max)
            .take_while(u8::is_ascii_digit)
            .count();
        if n == 0 {
            let shown: String = self.s.chars().take(max.clamp(1, 8)).collect();
            return Err(ReadError::format(format!(
                "invalid value \"{shown}\" for \"{pattern}\" (a number was expected)"
            )));
        }
        let (d, rest) = self.s.split_at(n);
        self.s = rest;
        let v = d.parse::<i64>().map_err(|_| {
            ReadError::range(format!("value \"{d}\" for \"{pattern}\" is out of range"))
        })?;
        Ok((v, n))
    }

    /// The index of the first of `words` the input starts with (any case), consuming it.
    fn word(&mut self, words: &[&str], pattern: &str) -> Result<usize, ReadError> {
        for (i, w) in words.iter().enumerate() {
            let head = self.s.get(..w.len());
            if head.is_some_and(|h| h.eq_ignore_ascii_case(w)) {
                self.s = &self.s[w.len()..];
                return Ok(i);
            }
        }
        let shown: String = self.s.chars().take(9).collect();
        Err(ReadError::format(format!(
            "invalid value \"{shown}\" for \"{pattern}\""
        )))
    }
}

/// Digits a number field takes when another field follows it directly.
fn width(pattern: &str) -> usize {
    match pattern {
        "YYYY" | "IYYY" => 4,
        "YYY" | "DDD" | "MS" | "IYY" | "IDDD" => 3,
        "US" => 6,
        "SSSS" | "SSSSS" => 5,
        "Y" | "D" | "Q" | "I" | "ID" | "W" => 1,
        p if p.starts_with("FF") => p[2..].parse().unwrap_or(6),
        "J" => 7,
        _ => 2,
    }
}

/// `v`, read from `n` digits after a decimal point, in micro-seconds: with `MS`, `US` or `FFn`
/// alike, "12.3" is 12 seconds and 300 milliseconds.
fn fraction_micros(v: i64, n: usize) -> u32 {
    let mut micros = v;
    for _ in n..6 {
        micros *= 10;
    }
    for _ in 6..n {
        micros /= 10;
    }
    micros.clamp(0, 999_999) as u32
}

/// A year read from `n` digits of `pattern`, as PostgreSQL completes a partial one.
fn full_year(v: i64, n: usize, pattern: &str) -> i64 {
    let partial = matches!(pattern, "YY" | "YYY" | "Y") && n <= pattern.len();
    if !partial {
        return v;
    }
    match v {
        0..=69 => v + 2000,
        70..=99 => v + 1900,
        100..=519 => v + 2000,
        520..=999 => v + 1000,
        _ => v,
    }
}

/// Reads `input` by `items`.
fn read(input: &str, items: &[Item]) -> Result<NaiveDateTime, ReadError> {
    let mut inp = Input { s: input };
    let mut f = Fields::default();
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Literal(text) => {
                for c in text.chars() {
                    if c.is_whitespace() {
                        inp.skip_blanks();
                    } else if !c.is_alphanumeric() {
                        // A separator matches one separator of the input, or none.
                        if inp
                            .s
                            .chars()
                            .next()
                            .is_some_and(|n| !n.is_alphanumeric() && !n.is_whitespace())
                        {
                            inp.skip_char();
                        }
                    } else {
                        inp.skip_char();
                    }
                }
            }
            Item::Field {
                pattern, ordinal, ..
            } => {
                inp.skip_blanks();
                if inp.s.is_empty() {
                    break;
                }
                let next_is_field = matches!(items.get(i + 1), Some(Item::Field { .. }));
                field(&mut inp, &mut f, pattern, next_is_field)?;
                if ordinal.is_some() {
                    let head = inp.s.get(..2);
                    if head.is_some_and(|h| h.chars().all(|c| c.is_ascii_alphabetic())) {
                        inp.s = &inp.s[2..];
                    }
                }
            }
        }
    }
    assemble(&f, input)
}

/// Reads one field at the start of `inp` into `f`.
fn field(
    inp: &mut Input,
    f: &mut Fields,
    pattern: &'static str,
    next_is_field: bool,
) -> Result<(), ReadError> {
    let max = if next_is_field { width(pattern) } else { 18 };
    let number = |inp: &mut Input| inp.digits(max, pattern);
    match pattern {
        "YYYY" | "YYY" | "YY" | "Y" => {
            let (v, n) = number(inp)?;
            f.year = Some(full_year(v, n, pattern));
        }
        "Y,YYY" => {
            let (thousands, _) = number(inp)?;
            if inp.s.starts_with(',') {
                inp.skip_char();
            }
            let (rest, _) = inp.digits(3, pattern)?;
            f.year = Some(thousands * 1000 + rest);
        }
        "CC" => f.century = Some(number(inp)?.0),
        "MM" => f.month = Some(small(number(inp)?.0)),
        "DD" => f.day = Some(small(number(inp)?.0)),
        "DDD" => f.day_of_year = Some(small(number(inp)?.0)),
        "WW" => f.week_of_year = Some(small(number(inp)?.0)),
        "W" => f.week_of_month = Some(small(number(inp)?.0)),
        "J" => f.julian = Some(number(inp)?.0),
        "HH" | "HH12" => {
            f.hour = Some(small(number(inp)?.0));
            f.hour12 = true;
        }
        "HH24" => f.hour = Some(small(number(inp)?.0)),
        "MI" => f.minute = Some(small(number(inp)?.0)),
        "SS" => f.second = Some(small(number(inp)?.0)),
        "SSSS" | "SSSSS" => f.seconds_of_day = Some(small(number(inp)?.0)),
        "MS" | "US" | "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
            let (v, n) = inp.digits(width(pattern), pattern)?;
            f.micros = Some(f.micros.unwrap_or(0) + fraction_micros(v, n));
        }
        "D" | "Q" => {
            number(inp)?;
        }
        "AM" | "PM" | "A.M." | "P.M." => {
            let words = if pattern.contains('.') {
                ["a.m.", "p.m."]
            } else {
                ["am", "pm"]
            };
            f.pm = Some(inp.word(&words, pattern)? == 1);
        }
        "AD" | "BC" | "A.D." | "B.C." => {
            let words = if pattern.contains('.') {
                ["a.d.", "b.c."]
            } else {
                ["ad", "bc"]
            };
            f.bc = inp.word(&words, pattern)? == 1;
        }
        "MONTH" => f.month = Some(inp.word(&MONTHS, pattern)? as u32 + 1),
        "MON" => {
            let short: Vec<&str> = MONTHS.iter().map(|m| &m[..3]).collect();
            f.month = Some(inp.word(&short, pattern)? as u32 + 1);
        }
        "DAY" => {
            inp.word(&DAYS, pattern)?;
        }
        "DY" => {
            let short: Vec<&str> = DAYS.iter().map(|d| &d[..3]).collect();
            inp.word(&short, pattern)?;
        }
        other => {
            return Err(ReadError {
                code: "0A000",
                message: format!(
                    "the template field \"{other}\" is not supported in to_timestamp and \
                     to_date (only in to_char)"
                ),
            })
        }
    }
    Ok(())
}

/// A number that fits a date field; larger ones are out of range when the date is built.
fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The date and time of `f`, with PostgreSQL's defaults and checks.
fn assemble(f: &Fields, input: &str) -> Result<NaiveDateTime, ReadError> {
    let out_of_range =
        || ReadError::range(format!("date/time field value out of range: \"{input}\""));
    let mut year = match (f.year, f.century) {
        (Some(y), _) => y,
        (None, Some(cc)) if cc > 0 => (cc - 1) * 100 + 1,
        (None, Some(cc)) => cc * 100,
        (None, None) => 0,
    };
    if f.bc && year > 0 {
        year = 1 - year;
    }
    let year = i32::try_from(year).map_err(|_| out_of_range())?;
    let date = if let Some(j) = f.julian {
        // Julian day 2440588 is 1970-01-01.
        NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.checked_add_signed(chrono::Duration::days(j - 2_440_588)))
    } else if let (Some(doy), None, None) = (f.day_of_year, f.month, f.day) {
        NaiveDate::from_yo_opt(year, doy)
    } else if let (Some(ww), None, None) = (f.week_of_year, f.month, f.day) {
        NaiveDate::from_yo_opt(
            year,
            ww.saturating_sub(1).saturating_mul(7).saturating_add(1),
        )
    } else {
        let from_week = f
            .week_of_month
            .map(|w| w.saturating_sub(1).saturating_mul(7) + 1);
        let day = f.day.or(from_week).unwrap_or(1);
        NaiveDate::from_ymd_opt(year, f.month.unwrap_or(1), day)
    }
    .ok_or_else(out_of_range)?;
    let mut hour = f.hour.unwrap_or(0);
    if f.hour12 || f.pm.is_some() {
        if f.hour12 && !(1..=12).contains(&hour) {
            return Err(ReadError::range(format!(
                "hour \"{hour}\" is invalid for the 12-hour clock (use HH24 for the 24-hour \
                 clock)"
            )));
        }
        hour = hour % 12 + if f.pm == Some(true) { 12 } else { 0 };
    }
    let (hour, minute, second) = match f.seconds_of_day {
        Some(s) => (s / 3600, s / 60 % 60, s % 60),
        None => (hour, f.minute.unwrap_or(0), f.second.unwrap_or(0)),
    };
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, f.micros.unwrap_or(0))
        .ok_or_else(out_of_range)?;
    Ok(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(input: &str, template: &str) -> String {
        match read(input, &parse(template)) {
            Ok(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            Err(e) => format!("{} {}", e.code, e.message),
        }
    }

    #[test]
    fn reads_as_postgresql_reads() {
        // Each expectation is PostgreSQL 15's answer (as timestamp, UTC).
        for (input, template, want) in [
            (
                "2026-03-04 05:06:07",
                "YYYY-MM-DD HH24:MI:SS",
                "2026-03-04 05:06:07",
            ),
            ("20260304", "YYYYMMDD", "2026-03-04 00:00:00"),
            ("04 Mar 2026", "DD Mon YYYY", "2026-03-04 00:00:00"),
            ("4 MARCH 2026", "DD MONTH YYYY", "2026-03-04 00:00:00"),
            ("05:06 PM", "HH12:MI AM", "0000-01-01 17:06:00"),
            ("12:00 am", "HH:MI AM", "0000-01-01 00:00:00"),
            ("12.3", "SS.MS", "0000-01-01 00:00:12.300"),
            ("07.123456", "SS.US", "0000-01-01 00:00:07.123456"),
            ("26-1-2", "YY-MM-DD", "2026-01-02 00:00:00"),
            ("99", "YY", "1999-01-01 00:00:00"),
            ("2026 060", "YYYY DDD", "2026-03-01 00:00:00"),
            ("2026/03/04", "YYYY-MM-DD", "2026-03-04 00:00:00"),
            ("  2026-03-04", "YYYY-MM-DD", "2026-03-04 00:00:00"),
            ("2026", "YYYY-MM-DD", "2026-01-01 00:00:00"),
            (
                "Wednesday 2026-03-04",
                "Day YYYY-MM-DD",
                "2026-03-04 00:00:00",
            ),
            ("2460739", "J", "2025-03-04 00:00:00"),
            ("21", "CC", "2001-01-01 00:00:00"),
            (
                "3rd of March 2026",
                "DDth \"of\" Month YYYY",
                "2026-03-03 00:00:00",
            ),
        ] {
            assert_eq!(r(input, template), want, "{input:?} with {template:?}");
        }
    }

    #[test]
    fn bad_input_says_what_and_where() {
        assert!(r("2026-13-01", "YYYY-MM-DD").starts_with("22008"));
        assert!(r("2026-02-30", "YYYY-MM-DD").starts_with("22008"));
        assert!(r("13:00 PM", "HH12:MI PM").starts_with("22008 hour \"13\""));
        let e = r("2026-xx-01", "YYYY-MM-DD");
        assert!(e.starts_with("22007 invalid value \"xx"), "{e}");
        assert!(r("Foo 2026", "Mon YYYY").starts_with("22007"));
        assert!(r("2026 10", "IYYY IW").starts_with("0A000"));
    }
}
