//! Arrow values as JSON, as PostgreSQL's `to_json` writes them: numbers and booleans as
//! JSON's own, timestamps in ISO 8601 (`2026-01-01T00:00:05`), lists as arrays, records as
//! objects, floats that JSON cannot hold (`NaN`, `Infinity`) and every other type as the text
//! PostgreSQL shows for it (intervals `1 day 02:00:00`, bytea `\x…`).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use serde_json::{Map, Number, Value};

use crate::pgtext::{write_text, Style};

/// The value at `row` of `array`.
pub fn value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row)))
            .unwrap_or_else(|| text(array, row)),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row))
            .unwrap_or_else(|| text(array, row)),
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let Value::String(t) = text(array, row) else {
                return Value::Null;
            };
            t.parse::<f64>()
                .ok()
                .and_then(float)
                .unwrap_or(Value::String(t))
        }
        DataType::Timestamp(..) => match text(array, row) {
            // PostgreSQL's JSON form of a timestamp is ISO 8601's: a `T` between date and time.
            Value::String(t) => Value::String(t.replacen(' ', "T", 1)),
            other => other,
        },
        DataType::List(_) => list(&array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => list(&array.as_list::<i64>().value(row)),
        DataType::FixedSizeList(..) => list(&array.as_fixed_size_list().value(row)),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), value(c.as_ref(), row)))
                    .collect(),
            )
        }
        _ => text(array, row),
    }
}

fn float(v: f64) -> Option<Value> {
    Number::from_f64(v).map(Value::Number)
}

fn text(array: &dyn Array, row: usize) -> Value {
    let mut s = String::new();
    write_text(array, row, Style::OUTPUT, &mut s);
    Value::String(s)
}

fn list(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|i| value(values, i)).collect())
}

/// Row `row` of `batch`'s columns from `first` on, as an object by column name.
pub fn row_object(batch: &RecordBatch, first: usize, row: usize) -> Map<String, Value> {
    batch.schema().fields()[first..]
        .iter()
        .zip(&batch.columns()[first..])
        .map(|(f, c)| (f.name().clone(), value(c.as_ref(), row)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Float64Array, IntervalMonthDayNanoArray, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::IntervalMonthDayNano;

    #[test]
    fn values_read_as_postgres_to_json_writes_them() {
        let ts = TimestampNanosecondArray::from(vec![Some(1_767_225_605_000_000_000), None]);
        assert_eq!(value(&ts, 0), Value::from("2026-01-01T00:00:05"));
        assert_eq!(value(&ts, 1), Value::Null);
        let f = Float64Array::from(vec![1.5, f64::NAN]);
        assert_eq!(value(&f, 0), serde_json::json!(1.5));
        assert_eq!(value(&f, 1), Value::from("NaN"));
        let s = StringArray::from(vec!["a\"b"]);
        assert_eq!(value(&s, 0), Value::from("a\"b"));
        let i = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(
            0,
            1,
            7_200_000_000_000,
        )]);
        assert_eq!(value(&i, 0), Value::from("1 day 02:00:00"));
    }
}
