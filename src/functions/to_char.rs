//! `to_char(timestamp | date, template)` with PostgreSQL's template patterns (numbers:
//! [`super::to_char_number`])
//! (`YYYY-MM-DD HH24:MI:SS`, `FMMonth DD, YYYY`, `Dy`, `DDDth`, …), in
//! place of DataFusion's, which reads chrono's `%Y` codes and prints
//! PostgreSQL's patterns back as literal text.
//!
//! Supported: `HH HH12 HH24 MI SS MS US FF1`–`FF6 SSSS SSSSS`, `AM PM A.M. P.M.`
//! (any case), `Y,YYY YYYY YYY YY Y IYYY IYY IY I`, `MONTH Month month MON Mon
//! mon MM`, `DAY Day day DY Dy dy DDD DD D IDDD ID`, `WW W IW CC J Q`, `AD BC`,
//! `TZ tz OF`, the `FM` prefix (no padding) and `TH`/`th` suffix (ordinals),
//! `"quoted text"` and `\` escapes; anything else is copied. Numeric patterns
//! match in any case, as in PostgreSQL. Time zones: a `timestamptz` is shown
//! in UTC (eddy's session time zone), and `TZ` prints `UTC`.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::template::{parse, Item};

/// The `to_char` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    signature: Signature,
}

impl Default for ToChar {
    fn default() -> Self {
        ToChar {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, template] = arg_types else {
            return plan_err!(
                "Function 'to_char' failed to match any signature: it takes a value and a \
                 template, not {} arguments",
                arg_types.len()
            );
        };
        let value = match value {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            DataType::Date32 | DataType::Date64 | DataType::Null => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            t if t.is_integer() => DataType::Int64,
            t if t.is_floating() => DataType::Float64,
            DataType::Decimal128(..) | DataType::Decimal256(..) => value.clone(),
            other => {
                return plan_err!(
                    "Function 'to_char' failed to match any signature: to_char({other}, \
                     {template}) (eddy formats timestamps, dates and numbers)"
                )
            }
        };
        match template {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
                Ok(vec![value, DataType::Utf8])
            }
            other => plan_err!(
                "Function 'to_char' failed to match any signature: the template is {other}, \
                 not text"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, template] = args.args.as_slice() else {
            return exec_err!("to_char takes two arguments");
        };
        let rows = args.number_rows;
        if !matches!(value.data_type(), DataType::Timestamp(..)) {
            let scalar = matches!(
                (value, template),
                (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
            );
            let n = if scalar { 1 } else { rows };
            let out =
                super::to_char_number::format_column(&value.to_array(n)?, &template.to_array(n)?)?;
            return Ok(if scalar {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
            } else {
                ColumnarValue::Array(out)
            });
        }
        let with_zone = matches!(value.data_type(), DataType::Timestamp(_, Some(_)));
        let values = value.to_array(rows)?;
        let values = values.as_primitive::<TimestampMicrosecondType>();
        let templates = template.to_array(rows)?;
        let templates = templates.as_string::<i32>();
        // A constant template (the usual case) is parsed once.
        let constant = match template {
            ColumnarValue::Scalar(_) if rows > 0 && templates.is_valid(0) => {
                Some(parse(templates.value(0)))
            }
            _ => None,
        };
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        let mut text = String::new();
        for i in 0..rows {
            // PostgreSQL gives NULL for an empty template, as for a NULL one.
            if values.is_null(i) || templates.is_null(i) || templates.value(i).is_empty() {
                out.append_null();
                continue;
            }
            // Micro-seconds (PostgreSQL's precision) reach years 1 and 9999, as dates do.
            let Some(t) = DateTime::from_timestamp_micros(values.value(i)) else {
                return exec_err!("to_char: timestamp {} µs is out of range", values.value(i));
            };
            let t = t.naive_utc();
            let parsed;
            let items = match &constant {
                Some(items) => items,
                None => {
                    parsed = parse(templates.value(i));
                    &parsed
                }
            };
            text.clear();
            render(items, &t, with_zone, &mut text);
            out.append_value(&text);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(match (value, template) {
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)) => {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
            }
            _ => ColumnarValue::Array(array),
        })
    }
}

fn ordinal_suffix(n: i64) -> &'static str {
    match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    }
}

/// Append `t` formatted by `items` to `out`.
fn render(items: &[Item], t: &NaiveDateTime, with_zone: bool, out: &mut String) {
    for item in items {
        let (pattern, case, fill, ordinal) = match item {
            Item::Literal(s) => {
                out.push_str(s);
                continue;
            }
            Item::Field {
                pattern,
                case,
                fill,
                ordinal,
            } => (*pattern, *case, *fill, *ordinal),
        };
        let num = |n: i64, width: usize| -> (String, Option<i64>) {
            if fill {
                (n.to_string(), Some(n))
            } else if n < 0 {
                (format!("-{:0width$}", -n), Some(n))
            } else {
                (format!("{n:0width$}"), Some(n))
            }
        };
        let text = |s: &str, width: usize| -> (String, Option<i64>) {
            let s = case.apply(s);
            if fill {
                (s, None)
            } else {
                (format!("{s:<width$}"), None)
            }
        };
        let year = t.year() as i64;
        let nanos = t.nanosecond() as i64 % 1_000_000_000;
        let (s, n) = match pattern {
            "HH" | "HH12" => num(t.hour12().1 as i64, 2),
            "HH24" => num(t.hour() as i64, 2),
            "MI" => num(t.minute() as i64, 2),
            "SS" => num(t.second() as i64, 2),
            "SSSS" | "SSSSS" => (t.num_seconds_from_midnight().to_string(), None),
            "MS" => num(nanos / 1_000_000, 3),
            "US" => num(nanos / 1_000, 6),
            "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
                let digits = (pattern.as_bytes()[2] - b'0') as u32;
                num(nanos / 10_i64.pow(9 - digits), digits as usize)
            }
            "AM" | "PM" => (case.apply(if t.hour() < 12 { "AM" } else { "PM" }), None),
            "A.M." | "P.M." => (
                case.apply(if t.hour() < 12 { "A.M." } else { "P.M." }),
                None,
            ),
            "Y,YYY" => (
                format!("{},{:03}", year / 1000, (year % 1000).abs()),
                Some(year),
            ),
            "YYYY" => num(year, 4),
            "YYY" => num(year % 1000, 3),
            "YY" => num(year % 100, 2),
            "Y" => num(year % 10, 1),
            "IYYY" => num(t.iso_week().year() as i64, 4),
            "IYY" => num(t.iso_week().year() as i64 % 1000, 3),
            "IY" => num(t.iso_week().year() as i64 % 100, 2),
            "I" => num(t.iso_week().year() as i64 % 10, 1),
            "MONTH" => text(&t.format("%B").to_string(), 9),
            "MON" => text(&t.format("%b").to_string(), 3),
            "MM" => num(t.month() as i64, 2),
            "DAY" => text(&t.format("%A").to_string(), 9),
            "DY" => text(&t.format("%a").to_string(), 3),
            "DDD" => num(t.ordinal() as i64, 3),
            "DD" => num(t.day() as i64, 2),
            "D" => num(t.weekday().number_from_sunday() as i64, 1),
            "IDDD" => num(
                (t.iso_week().week() as i64 - 1) * 7 + t.weekday().number_from_monday() as i64,
                3,
            ),
            "ID" => num(t.weekday().number_from_monday() as i64, 1),
            "WW" => num((t.ordinal() as i64 - 1) / 7 + 1, 2),
            "W" => num((t.day() as i64 - 1) / 7 + 1, 1),
            "IW" => num(t.iso_week().week() as i64, 2),
            "CC" => num(
                if year > 0 {
                    (year - 1) / 100 + 1
                } else {
                    year / 100 - 1
                },
                2,
            ),
            "J" => (
                (t.date().num_days_from_ce() as i64 + 1_721_425).to_string(),
                None,
            ),
            "Q" => num((t.month() as i64 - 1) / 3 + 1, 1),
            "AD" | "BC" => (case.apply(if year > 0 { "AD" } else { "BC" }), None),
            "A.D." | "B.C." => (case.apply(if year > 0 { "A.D." } else { "B.C." }), None),
            "TZ" => (
                if with_zone {
                    case.apply("UTC")
                } else {
                    String::new()
                },
                None,
            ),
            "OF" => (
                if with_zone {
                    "+00".into()
                } else {
                    String::new()
                },
                None,
            ),
            _ => (String::new(), None),
        };
        out.push_str(&s);
        if let (Some(c), Some(n)) = (ordinal, n) {
            out.push_str(&c.apply(ordinal_suffix(n.abs())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ts: &str, template: &str) -> String {
        let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let mut out = String::new();
        render(&parse(template), &t, false, &mut out);
        out
    }

    #[test]
    fn postgres_patterns() {
        // Each expected value is what PostgreSQL 16 prints for the same call.
        let t = "2026-03-01 14:05:09.123456";
        for (template, want) in [
            ("YYYY-MM-DD", "2026-03-01"),
            ("YYYY-MM-DD HH24:MI:SS", "2026-03-01 14:05:09"),
            ("HH12:MI AM", "02:05 PM"),
            ("hh:mi pm", "02:05 pm"),
            ("MS US FF2", "123 123456 12"),
            ("Month DD", "March     01"),
            ("FMMonth FMDD, YYYY", "March 1, 2026"),
            ("MONTH mon Mon", "MARCH     mar Mar"),
            ("Day Dy dy DAY", "Sunday    Sun sun SUNDAY   "),
            ("DDD D ID IW WW W Q CC", "060 1 7 09 09 1 1 21"),
            ("DDth DDTH FMDDth", "01st 01ST 1st"),
            ("Y,YYY YYY YY Y", "2,026 026 26 6"),
            ("J", "2461101"),
            ("\"Quarter\" Q", "Quarter 1"),
            ("SSSS", "50709"),
            ("yyyy/mm/dd", "2026/03/01"),
            ("TZ", ""),
            ("AD", "AD"),
            ("ß Straße", "ß Straße"),
            ("\"open", "open"),
            ("\\", "\\"),
        ] {
            assert_eq!(fmt(t, template), want, "{template}");
        }
        assert_eq!(fmt("2026-01-11 00:00:00", "DDDth"), "011th");
        assert_eq!(fmt("2026-01-02 00:00:00", "FMDDth"), "2nd");
        assert_eq!(fmt("2026-01-13 00:00:00", "FMDDth"), "13th");
    }
}
