//! `json_build_object(key, value, …)` and `json_build_array(value, …)`, as PostgreSQL builds
//! them: numbers and booleans as JSON numbers and booleans, NULL as `null`, every other value
//! as a JSON string of its PostgreSQL text (a timestamp as ISO 8601, `2020-01-01T10:00:00`).
//! The result is `text` holding JSON (eddy has no `json` type). SQLAlchemy's column reflection
//! builds its identity options with `json_build_object`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

use crate::pgtext::{self, Style};

/// Which of the two functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuild {
    object: bool,
    signature: Signature,
}

/// The JSON of the value at `row` of `array`.
fn json_value(array: &ArrayRef, row: usize) -> Value {
    // A NULL literal is a NullArray, whose rows have no validity bits to say so.
    if array.data_type() == &DataType::Null || array.is_null(row) {
        return Value::Null;
    }
    let t = array.data_type();
    if t.is_integer() {
        let mut s = String::new();
        pgtext::write_text(array.as_ref(), row, Style::OUTPUT, &mut s);
        return s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(s));
    }
    let float = match t {
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Some(f64::from(array.as_primitive::<Float32Type>().value(row))),
        _ => None,
    };
    if let Some(f) = float {
        // PostgreSQL writes NaN and the infinities as strings, which JSON numbers cannot be.
        return serde_json::Number::from_f64(f).map_or_else(
            || {
                let mut s = String::new();
                pgtext::write_text(array.as_ref(), row, Style::OUTPUT, &mut s);
                Value::String(s)
            },
            Value::Number,
        );
    }
    if let DataType::Boolean = t {
        return Value::Bool(array.as_boolean().value(row));
    }
    let mut s = String::new();
    pgtext::write_text(array.as_ref(), row, Style::OUTPUT, &mut s);
    if let DataType::Timestamp(..) = t {
        // JSON's dates are ISO 8601: PostgreSQL puts a T between date and time.
        if let Some(i) = s.find(' ') {
            s.replace_range(i..=i, "T");
        }
    }
    if let DataType::Decimal128(..) | DataType::Decimal256(..) = t {
        if let Ok(n) = s.parse::<serde_json::Number>() {
            return Value::Number(n);
        }
    }
    Value::String(s)
}

impl ScalarUDFImpl for JsonBuild {
    fn name(&self) -> &str {
        if self.object {
            "json_build_object"
        } else {
            "json_build_array"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        if self.object && args.args.len() % 2 == 1 {
            return exec_err!(
                "argument list must have even number of elements (json_build_object takes \
                 alternating keys and values)"
            );
        }
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.clone().into_array(n))
            .collect::<Result<_>>()?;
        let mut out = StringBuilder::new();
        for row in 0..n {
            // PostgreSQL's spacing: `{"a" : 1, "b" : 2}`, `[1, 2]`; keys in argument order.
            let mut text = String::new();
            if self.object {
                text.push('{');
                for (i, pair) in arrays.chunks(2).enumerate() {
                    if pair[0].is_null(row) {
                        return exec_err!("null value not allowed for object key");
                    }
                    let mut key = String::new();
                    pgtext::write_text(pair[0].as_ref(), row, Style::CAST, &mut key);
                    if i > 0 {
                        text.push_str(", ");
                    }
                    text.push_str(&Value::String(key).to_string());
                    text.push_str(" : ");
                    text.push_str(&json_value(&pair[1], row).to_string());
                }
                text.push('}');
            } else {
                text.push('[');
                for (i, a) in arrays.iter().enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    text.push_str(&json_value(a, row).to_string());
                }
                text.push(']');
            }
            out.append_value(text);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The two functions.
pub fn udfs() -> Vec<ScalarUDF> {
    [true, false]
        .into_iter()
        .map(|object| {
            ScalarUDF::from(JsonBuild {
                object,
                signature: Signature::variadic_any(Volatility::Stable),
            })
        })
        .collect()
}
