//! Precise reasons for rejected records.
//!
//! Decoders report the first failure of a whole batch in their own words; for
//! the few records that fail, this module walks the record against the
//! declared columns and names the field, what was expected and what was found:
//! ``field `guests`: expected an integer, got "two"``.

use datafusion::arrow::datatypes::{DataType, Fields};
use serde_json::Value;

/// Longest rendering of an offending value in a message.
const VALUE_CHARS_MAX: usize = 60;

/// Why a JSON record does not fit `fields`, or `None` if this walk finds nothing wrong.
pub fn json(payload: &[u8], fields: &Fields) -> Option<String> {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Some(format!("invalid JSON: {e}")),
    };
    let Value::Object(obj) = &value else {
        return Some(format!("expected a JSON object, got {}", show(&value)));
    };
    for f in fields {
        if let Some(v) = obj.get(f.name()) {
            if let Some(e) = check(f.name(), f.data_type(), v) {
                return Some(e);
            }
        }
    }
    None
}

fn check(path: &str, t: &DataType, v: &Value) -> Option<String> {
    if v.is_null() {
        return None;
    }
    let expected = match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let ok = v.as_i64().is_some_and(|i| fits_signed(t, i));
            (!ok).then_some(match v.as_i64() {
                Some(_) => format!("an integer that fits {t}"),
                None => "an integer".to_string(),
            })
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            (v.as_u64().is_none()).then(|| "a non-negative integer".to_string())
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            (!v.is_number()).then(|| "a number".to_string())
        }
        DataType::Boolean => (!v.is_boolean()).then(|| "true or false".to_string()),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (!v.is_string()).then(|| "a string".to_string())
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let ok = v.is_i64()
                || v.as_str()
                    .is_some_and(|s| super::parse_timestamp_ns(s).is_ok());
            (!ok).then(|| "a timestamp (epoch milliseconds or an RFC 3339 string)".to_string())
        }
        DataType::Struct(fields) => match v {
            Value::Object(obj) => {
                for f in fields {
                    if let Some(inner) = obj.get(f.name()) {
                        let p = format!("{path}.{}", f.name());
                        if let Some(e) = check(&p, f.data_type(), inner) {
                            return Some(e);
                        }
                    }
                }
                None
            }
            _ => Some("an object".to_string()),
        },
        DataType::List(f) | DataType::LargeList(f) => match v {
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    if let Some(e) = check(&format!("{path}[{i}]"), f.data_type(), inner) {
                        return Some(e);
                    }
                }
                None
            }
            _ => Some("an array".to_string()),
        },
        _ => None,
    };
    expected.map(|e| format!("field `{path}`: expected {e}, got {}", show(v)))
}

fn fits_signed(t: &DataType, i: i64) -> bool {
    match t {
        DataType::Int8 => i8::try_from(i).is_ok(),
        DataType::Int16 => i16::try_from(i).is_ok(),
        DataType::Int32 => i32::try_from(i).is_ok(),
        _ => true,
    }
}

/// A JSON value as it appeared, shortened.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= VALUE_CHARS_MAX {
        s
    } else {
        let cut: String = s.chars().take(VALUE_CHARS_MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn fields() -> Fields {
        let topic = Field::new(
            "item",
            DataType::Struct(vec![Field::new("urlkey", DataType::Utf8, true)].into()),
            true,
        );
        vec![
            Field::new("guests", DataType::Int32, true),
            Field::new(
                "group",
                DataType::Struct(
                    vec![Field::new("topics", DataType::List(Arc::new(topic)), true)].into(),
                ),
                true,
            ),
        ]
        .into()
    }

    #[test]
    fn names_the_field_and_the_value() {
        assert_eq!(
            json(br#"{"guests": "two"}"#, &fields()),
            Some("field `guests`: expected an integer, got \"two\"".into())
        );
        assert_eq!(
            json(br#"{"guests": 99999999999}"#, &fields()),
            Some("field `guests`: expected an integer that fits Int32, got 99999999999".into())
        );
        assert_eq!(
            json(
                br#"{"group": {"topics": [{"urlkey": "a"}, {"urlkey": 7}]}}"#,
                &fields()
            ),
            Some("field `group.topics[1].urlkey`: expected a string, got 7".into())
        );
        assert!(json(br#"{"guests": 1"#, &fields())
            .unwrap()
            .starts_with("invalid JSON: EOF while parsing"));
        assert_eq!(json(br#"{"guests": null, "x": 1}"#, &fields()), None);
        assert_eq!(
            json(b"[1]", &fields()),
            Some("expected a JSON object, got [1]".into())
        );
    }
}
