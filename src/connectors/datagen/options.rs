//! Parsing and checking of datagen WITH options.

use std::collections::BTreeMap;
use std::fmt::Display;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};

use super::{FieldSpec, Gen, IntGen, NANOS_PER_DAY, STRING_LENGTH_MAX};

const DEFAULT_ROWS_PER_SECOND: u64 = 10;
const DEFAULT_INT_RANGE: (i128, i128) = (0, 1000);
const DEFAULT_FLOAT_RANGE: (f64, f64) = (0.0, 1000.0);
const DEFAULT_STRING_LENGTH: usize = 10;
const TOP_LEVEL_OPTIONS: &str =
    "expected rows_per_second, number_of_rows, seed or fields.<column>.<property>";
const FIELD_PROPERTIES: &str = "kind, min, max, start, end, length, null_rate, max_past";

/// Parsed datagen options.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenOptions {
    /// Target rate for the source task driving the generator (default 10); `0` = unthrottled. The
    /// generator itself never sleeps.
    pub rows_per_second: u64,
    /// Total rows to produce; `None` = endless (unless a sequence column ends first).
    pub number_of_rows: Option<u64>,
    /// Seed of every random draw (default 0).
    pub seed: u64,
    /// One spec per schema column, in schema order.
    pub(super) fields: Vec<FieldSpec>,
}

/// The options of one column, by property: `(full option key, value)`.
type Props<'a> = BTreeMap<&'a str, (&'a str, &'a str)>;

/// A parsed option: `(full option key, value)`, or `None` when not given.
type Given<'a, T> = Option<(&'a str, T)>;

/// What a column's Arrow type lets datagen produce.
enum Class {
    /// An integer type with its inclusive bounds.
    Int(i128, i128),
    /// A float type with its largest finite magnitude.
    Float(f64),
    /// Any string type.
    Str,
    /// Booleans.
    Bool,
    /// Timestamps (any unit and zone) and dates.
    Time,
}

fn classify(data_type: &DataType) -> Option<Class> {
    match data_type {
        DataType::Int8 => Some(Class::Int(i8::MIN.into(), i8::MAX.into())),
        DataType::Int16 => Some(Class::Int(i16::MIN.into(), i16::MAX.into())),
        DataType::Int32 => Some(Class::Int(i32::MIN.into(), i32::MAX.into())),
        DataType::Int64 => Some(Class::Int(i64::MIN.into(), i64::MAX.into())),
        DataType::UInt8 => Some(Class::Int(0, u8::MAX.into())),
        DataType::UInt16 => Some(Class::Int(0, u16::MAX.into())),
        DataType::UInt32 => Some(Class::Int(0, u32::MAX.into())),
        DataType::UInt64 => Some(Class::Int(0, u64::MAX.into())),
        DataType::Float32 => Some(Class::Float(f32::MAX.into())),
        DataType::Float64 => Some(Class::Float(f64::MAX)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Class::Str),
        DataType::Boolean => Some(Class::Bool),
        DataType::Timestamp(_, _) | DataType::Date32 => Some(Class::Time),
        _ => None,
    }
}

impl DatagenOptions {
    /// Parses the WITH options of a datagen source over `schema`.
    ///
    /// `options` have lower-cased keys, with `connector` already removed. Unknown keys, bad values,
    /// empty ranges, out-of-type bounds, unknown kinds, `sequence` on a non-integer column, nulls on a
    /// `NOT NULL` column and column types datagen cannot produce give an `Err` naming the option.
    pub fn parse(schema: &SchemaRef, options: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut parsed = DatagenOptions {
            rows_per_second: DEFAULT_ROWS_PER_SECOND,
            number_of_rows: None,
            seed: 0,
            fields: Vec::new(),
        };
        let mut props: Vec<Props<'_>> = vec![Props::new(); schema.fields().len()];
        for (key, value) in options {
            let unknown = |why: &str| format!("datagen: unknown option '{key}' ({why})");
            let u64_value = || {
                let expected = "expected a non-negative integer";
                let msg = format!("datagen option '{key}': {expected}, got '{value}'");
                value.trim().parse::<u64>().map_err(|_| msg)
            };
            match key.as_str() {
                "rows_per_second" => parsed.rows_per_second = u64_value()?,
                "number_of_rows" => parsed.number_of_rows = Some(u64_value()?),
                "seed" => parsed.seed = u64_value()?,
                _ => {
                    let (column, property) = key
                        .strip_prefix("fields.")
                        .and_then(|rest| rest.rsplit_once('.'))
                        .ok_or_else(|| unknown(TOP_LEVEL_OPTIONS))?;
                    let column_props = column_index(schema, column)
                        .and_then(|index| props.get_mut(index))
                        .ok_or_else(|| unknown(&format!("no column '{column}'")))?;
                    if !FIELD_PROPERTIES.split(", ").any(|known| known == property) {
                        return Err(unknown(&format!("properties are {FIELD_PROPERTIES}")));
                    }
                    column_props.insert(property, (key.as_str(), value.as_str()));
                }
            }
        }
        let fields = schema.fields().iter().zip(props);
        parsed.fields = fields
            .map(|(f, p)| parse_field(f, p))
            .collect::<Result<_, _>>()?;
        Ok(parsed)
    }
}

/// Finds a column by exact name, else case-insensitively (option keys arrive lower-cased).
fn column_index(schema: &SchemaRef, column: &str) -> Option<usize> {
    let fields = schema.fields();
    let exact = fields.iter().position(|f| f.name() == column);
    exact.or_else(|| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(column))
    })
}

fn parse_field(field: &Field, mut props: Props<'_>) -> Result<FieldSpec, String> {
    let (name, data_type) = (field.name(), field.data_type());
    let class = classify(data_type).ok_or_else(|| {
        format!("datagen: column '{name}' has type {data_type}, which datagen cannot generate")
    })?;
    let rate = take(&mut props, "null_rate", "a number in [0, 1]", |v| {
        v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r))
    })?;
    if let Some((key, r)) = rate.filter(|(_, r)| *r > 0.0 && !field.is_nullable()) {
        return Err(format!(
            "datagen option '{key}': column '{name}' is NOT NULL, so null_rate {r} is not allowed"
        ));
    }
    let kind = take(&mut props, "kind", "'sequence' or 'random'", |v| {
        match v.to_ascii_lowercase().as_str() {
            "sequence" => Some(true),
            "random" => Some(false),
            _ => None,
        }
    })?;
    let sequence = kind.is_some_and(|(_, s)| s);
    let draw = match class {
        Class::Int(lo, hi) if sequence => {
            let (start, end) = (
                int_prop(&mut props, "start", field, lo, hi)?,
                int_prop(&mut props, "end", field, lo, hi)?,
            );
            let (start, end) = resolve(("start", "end"), start, end, (0, hi), (lo, hi))?;
            Gen::Int(IntGen::Sequence { start, end })
        }
        Class::Int(lo, hi) => {
            let (min, max) = (
                int_prop(&mut props, "min", field, lo, hi)?,
                int_prop(&mut props, "max", field, lo, hi)?,
            );
            let default = (DEFAULT_INT_RANGE.0.max(lo), DEFAULT_INT_RANGE.1.min(hi));
            let (min, max) = resolve(("min", "max"), min, max, default, (lo, hi))?;
            Gen::Int(IntGen::Random { min, max })
        }
        _ if sequence => {
            let key = kind.map_or("kind", |(key, _)| key);
            let why = format!("'sequence' needs an integer column, but '{name}' is {data_type}");
            return Err(option_error(key, why));
        }
        Class::Float(abs_max) => {
            let finite = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite());
            let min = take(&mut props, "min", "a finite number", finite)?;
            let max = take(&mut props, "max", "a finite number", finite)?;
            let (lo, hi) = resolve(
                ("min", "max"),
                min,
                max,
                DEFAULT_FLOAT_RANGE,
                (-abs_max, abs_max),
            )?;
            if !(hi - lo).is_finite() || lo.abs() > abs_max || hi.abs() > abs_max {
                let key = min.or(max).map_or("min", |(key, _)| key);
                let why = format!("[{lo}, {hi}) does not fit column '{name}' of type {data_type}");
                return Err(option_error(key, why));
            }
            Gen::Float { min: lo, max: hi }
        }
        Class::Str => {
            let expected = format!("an integer in 0..={STRING_LENGTH_MAX}");
            let length = take(&mut props, "length", &expected, |v| {
                v.parse::<usize>().ok().filter(|n| *n <= STRING_LENGTH_MAX)
            })?;
            Gen::Str {
                length: length.map_or(DEFAULT_STRING_LENGTH, |(_, n)| n),
            }
        }
        Class::Bool => Gen::Bool,
        Class::Time => {
            let expected = "a duration such as '5s', '250ms' or '2m'";
            let max_past = take(&mut props, "max_past", expected, parse_duration_nanos)?;
            Gen::Time {
                max_past_nanos: max_past.map_or(0, |(_, nanos)| nanos),
            }
        }
    };
    if let Some((key, _)) = props.values().next() {
        let kind = if sequence { "sequence" } else { "random" };
        return Err(format!(
            "datagen option '{key}': does not apply to column '{name}' ({data_type}, kind {kind})"
        ));
    }
    let null_rate = rate.map_or(0.0, |(_, r)| r);
    Ok(FieldSpec {
        data_type: data_type.clone(),
        draw,
        null_rate,
    })
}

/// The error for option `key`: "datagen option '<key>': <why>".
fn option_error(key: &str, why: impl Display) -> String {
    format!("datagen option '{key}': {why}")
}

/// Removes `property` from `props` and parses its trimmed value, or fails saying what was
/// `expected`.
fn take<'a, T>(
    props: &mut Props<'a>,
    property: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Given<'a, T>, String> {
    let Some((key, value)) = props.remove(property) else {
        return Ok(None);
    };
    match parse(value.trim()) {
        Some(parsed) => Ok(Some((key, parsed))),
        None => Err(format!(
            "datagen option '{key}': expected {expected}, got '{value}'"
        )),
    }
}

/// Takes an integer property, checked against the column type's bounds `lo..=hi`.
fn int_prop<'a>(
    props: &mut Props<'a>,
    property: &str,
    field: &Field,
    lo: i128,
    hi: i128,
) -> Result<Given<'a, i128>, String> {
    let bound = take(props, property, "an integer", |v| v.parse::<i128>().ok())?;
    match bound {
        Some((key, n)) if n < lo || n > hi => {
            let (name, data_type) = (field.name(), field.data_type());
            let why = format!("{n} is out of range for column '{name}' of type {data_type}");
            Err(option_error(key, format!("{why} ({lo}..={hi})")))
        }
        _ => Ok(bound),
    }
}

/// Resolves optional `low`/`high` bounds. A missing bound takes its side of `default`, unless the
/// given one lies beyond that, in which case it takes its side of `limits` (e.g. the type's range).
/// Fails, naming a given option, when `low > high`.
fn resolve<T: PartialOrd + Display + Copy>(
    (low_name, high_name): (&str, &str),
    low: Given<'_, T>,
    high: Given<'_, T>,
    default: (T, T),
    limits: (T, T),
) -> Result<(T, T), String> {
    let lo = match (low, high) {
        (Some((_, l)), _) => l,
        (None, Some((_, h))) if h < default.0 => limits.0,
        _ => default.0,
    };
    let hi = match (high, low) {
        (Some((_, h)), _) => h,
        (None, Some((_, l))) if l > default.1 => limits.1,
        _ => default.1,
    };
    match low.or(high) {
        Some((key, _)) if lo > hi => Err(format!(
            "datagen option '{key}': {low_name} {lo} is greater than {high_name} {hi}"
        )),
        _ => Ok((lo, hi)),
    }
}

/// Parses `250ms`, `5s`, `2m`/`2min`, `1h`, `1d`, `10us`, `7ns`; a bare number is milliseconds.
/// Parse a duration such as `250ms`, `5s`, `2m`, `1h`, `1d` (a bare number means milliseconds) to nanoseconds.
pub(crate) fn parse_duration_nanos(text: &str) -> Option<i64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits.parse().ok()?;
    let nanos_per_unit: i64 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "" | "ms" => 1_000_000,
        "s" | "sec" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => NANOS_PER_DAY,
        _ => return None,
    };
    amount.checked_mul(nanos_per_unit)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{example_schema, parse, schema_of, NOW};
    use super::super::DatagenGenerator;
    use super::*;

    #[test]
    fn bad_options_are_rejected_with_precise_messages() {
        let schema = example_schema();
        #[rustfmt::skip]
        let cases = [
            ("fields.v.min=x", "option 'fields.v.min': expected an integer, got 'x'"),
            ("fields.nope.kind=random", ": unknown option 'fields.nope.kind' (no column 'nope')"),
            ("fields.v.min=10, fields.v.max=5", "option 'fields.v.min': min 10 is greater than max 5"),
            ("fields.id.kind=sequence, fields.id.start=5, fields.id.end=3",
                "option 'fields.id.start': start 5 is greater than end 3"),
            ("fields.v.kind=walk", "option 'fields.v.kind': expected 'sequence' or 'random', got 'walk'"),
            ("fields.name.kind=sequence",
                "option 'fields.name.kind': 'sequence' needs an integer column, but 'name' is Utf8"),
            ("fields.price.kind=sequence",
                "option 'fields.price.kind': 'sequence' needs an integer column, but 'price' is Float64"),
            ("seed=-1", "option 'seed': expected a non-negative integer, got '-1'"),
            ("number_of_rows=many", "option 'number_of_rows': expected a non-negative integer, got 'many'"),
            ("bogus=1", ": unknown option 'bogus' (expected rows_per_second, number_of_rows, seed or \
                fields.<column>.<property>)"),
            ("fields.v.colour=red", ": unknown option 'fields.v.colour' (properties are kind, min, max, \
                start, end, length, null_rate, max_past)"),
            ("fields.name.min=1", "option 'fields.name.min': does not apply to column 'name' (Utf8, kind random)"),
            ("fields.id.kind=sequence, fields.id.min=1",
                "option 'fields.id.min': does not apply to column 'id' (Int64, kind sequence)"),
            ("fields.id.null_rate=0.1",
                "option 'fields.id.null_rate': column 'id' is NOT NULL, so null_rate 0.1 is not allowed"),
            ("fields.v.null_rate=2", "option 'fields.v.null_rate': expected a number in [0, 1], got '2'"),
            ("fields.v.max=3000000000", "option 'fields.v.max': 3000000000 is out of range for column 'v' \
                of type Int32 (-2147483648..=2147483647)"),
            ("fields.name.length=5000",
                "option 'fields.name.length': expected an integer in 0..=4096, got '5000'"),
            ("fields.ts.max_past=soon", "option 'fields.ts.max_past': expected a duration such as '5s', \
                '250ms' or '2m', got 'soon'"),
            ("fields.price.max=inf", "option 'fields.price.max': expected a finite number, got 'inf'"),
        ];
        for (options, expected) in cases {
            let expected = format!(
                "datagen{}{expected}",
                if expected.starts_with(':') { "" } else { " " }
            );
            assert_eq!(parse(&schema, options).err(), Some(expected), "{options}");
        }
        let wide = parse(&schema, "fields.price.min=-1e308, fields.price.max=1e308");
        assert!(wide.is_err_and(|e| e.contains("does not fit column 'price' of type Float64")));
        let decimal = schema_of(vec![Field::new("l", DataType::Decimal128(10, 2), true)]);
        let unsupported = parse(&decimal, "").err().unwrap_or_default();
        assert!(
            unsupported.starts_with("datagen: column 'l' has type Decimal128"),
            "{unsupported}"
        );
        let other = schema_of(vec![Field::new("x", DataType::Utf8, false)]);
        let parsed = parse(&schema, "").expect("defaults are valid");
        let mut mismatched = DatagenGenerator::new(other, parsed);
        assert_eq!(
            mismatched.next_batch(10, NOW),
            None,
            "options of another schema: no rows"
        );
    }

    #[test]
    fn durations_parse_with_units() {
        let ok = [
            ("250ms", 250_000_000),
            ("5 s", 5_000_000_000),
            ("2m", 120_000_000_000),
        ];
        for (text, nanos) in ok
            .into_iter()
            .chain([("1d", NANOS_PER_DAY), ("7", 7_000_000)])
        {
            assert_eq!(parse_duration_nanos(text), Some(nanos), "{text}");
        }
        for text in ["-1s", "1y", "s", "", "9999999999d"] {
            assert_eq!(parse_duration_nanos(text), None, "{text}");
        }
    }
}
