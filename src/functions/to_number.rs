//! `to_number(text, template)`: a number read by PostgreSQL's numeric template patterns
//! (`to_number('12,454.8-', '99G999D9S')` is -12454.8): `9`/`0` read a digit (a blank is
//! skipped), `.`/`D` the decimal point, `,`/`G` a group separator, `S`, `MI`, `PL`, `SG` a sign,
//! `PR` angle brackets, `L` a currency sign; other template characters skip one input character;
//! digits past the template are ignored. The result is `numeric` with as many decimals as the
//! template has (a literal template; 10 otherwise), where PostgreSQL keeps the decimals read.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::to_char_number::{parse, Part};
use crate::error::EddyError;

/// Decimals of the result when the template is not a constant.
const DEFAULT_SCALE: i8 = 10;

/// The `to_number` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToNumber {
    signature: Signature,
}

impl Default for ToNumber {
    fn default() -> Self {
        ToNumber {
            signature: Signature::string(2, Volatility::Immutable),
        }
    }
}

/// Decimals the template `t` reads.
fn scale_of(t: &str) -> i8 {
    let parts = parse(t).parts;
    let decimals = parts
        .iter()
        .skip_while(|p| **p != Part::Point)
        .filter(|p| matches!(p, Part::Digit { .. }))
        .count();
    i8::try_from(decimals).unwrap_or(38).min(38)
}

fn data_error(code: &'static str, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(EddyError::Data { code, message }))
}

impl ScalarUDFImpl for ToNumber {
    fn name(&self) -> &str {
        "to_number"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(38, DEFAULT_SCALE))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let scale = match args.scalar_arguments.get(1) {
            Some(Some(ScalarValue::Utf8(Some(t))))
            | Some(Some(ScalarValue::LargeUtf8(Some(t))))
            | Some(Some(ScalarValue::Utf8View(Some(t)))) => scale_of(t),
            _ => DEFAULT_SCALE,
        };
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(38, scale),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, template] = args.args.as_slice() else {
            return plan_err!("to_number takes a text and a template");
        };
        let DataType::Decimal128(_, scale) = args.return_field.data_type() else {
            return plan_err!("to_number returns numeric");
        };
        let scale = *scale;
        super::map_array(text, args.number_rows, |texts| {
            let texts = cast(texts, &DataType::Utf8)?;
            let texts = texts.as_string::<i32>();
            let templates = cast(&template.to_array(texts.len())?, &DataType::Utf8)?;
            let templates = templates.as_string::<i32>();
            let mut out = Decimal128Builder::with_capacity(texts.len());
            for i in 0..texts.len() {
                // An empty template reads nothing: NULL, as in PostgreSQL.
                if texts.is_null(i) || templates.is_null(i) || templates.value(i).is_empty() {
                    out.append_null();
                    continue;
                }
                out.append_value(read(texts.value(i), templates.value(i), scale)?);
            }
            Ok(Arc::new(out.finish().with_precision_and_scale(38, scale)?) as ArrayRef)
        })
    }
}

/// `text` read by `template`, as an integer of 10^-`scale` units.
fn read(text: &str, template: &str, scale: i8) -> Result<i128> {
    let t = parse(template);
    if t.eeee || t.roman {
        return Err(data_error(
            "0A000",
            format!("to_number: \"{template}\": EEEE and RN are not supported for input"),
        ));
    }
    let mut input = text.trim_start().chars().peekable();
    let mut negative = false;
    let mut bracketed = false;
    match input.peek() {
        Some('-') => {
            negative = true;
            input.next();
        }
        Some('+') => {
            input.next();
        }
        Some('<') if t.parts.contains(&Part::Pr) => {
            negative = true;
            bracketed = true;
            input.next();
        }
        _ => {}
    }
    let (mut int, mut frac, mut in_frac) = (String::new(), String::new(), false);
    for p in &t.parts {
        let next = input.peek().copied();
        match p {
            Part::Digit { .. } => match next {
                Some(c) if c.is_ascii_digit() => {
                    if in_frac {
                        frac.push(c);
                    } else {
                        int.push(c);
                    }
                    input.next();
                }
                Some(' ') => {
                    input.next();
                }
                _ => {}
            },
            Part::Point => {
                in_frac = true;
                if next == Some('.') {
                    input.next();
                }
            }
            Part::Group if next == Some(',') => {
                input.next();
            }
            Part::S | Part::Mi | Part::Pl | Part::Sg if matches!(next, Some('-' | '+')) => {
                negative |= next == Some('-');
                input.next();
            }
            Part::Pr if bracketed && next == Some('>') => {
                input.next();
            }
            Part::L if next.is_some_and(|c| !c.is_ascii_digit() && c != '-') => {
                input.next();
            }
            Part::Literal(s) => {
                for _ in s.chars() {
                    input.next();
                }
            }
            _ => {}
        }
    }
    if int.is_empty() && frac.is_empty() {
        return Err(data_error(
            "22P02",
            format!("invalid input syntax for type numeric: \"{text}\" read by \"{template}\""),
        ));
    }
    let scale = usize::try_from(scale).unwrap_or(0);
    frac.truncate(scale);
    frac.push_str(&"0".repeat(scale - frac.len()));
    let digits = format!("{int}{frac}");
    let v: i128 = digits.parse().map_err(|_| {
        data_error(
            "22003",
            format!("to_number: \"{text}\" is out of range for numeric(38, {scale})"),
        )
    })?;
    Ok(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_postgresql_reads() {
        // Each expectation is PostgreSQL 15's answer.
        for (text, template, want) in [
            ("12,454.8-", "99G999D9S", -124548),
            ("-12.5", "99.99", -1250),
            ("  42", "9999", 42),
            ("1,234", "9,999", 1234),
            ("<12>", "99PR", -12),
            ("12-", "99MI", -12),
            ("$1,234.50", "L9,999.99", 123450),
            ("12345", "999", 123),
            ("0012", "0000", 12),
            ("3.14159", "9.99", 314),
            ("12 34", "99 99", 1234),
            ("5", "FM999", 5),
        ] {
            let got = read(text, template, scale_of(template)).unwrap();
            assert_eq!(got, want, "to_number('{text}', '{template}')");
        }
        assert!(read("abc", "999", 0).is_err());
        assert!(read("1.5e3", "9.9EEEE", 1).is_err());
    }
}
