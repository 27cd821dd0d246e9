//! `regexp_like`, `regexp_match`, `regexp_replace` and `regexp_count` with an empty flags
//! string: no flags, as in PostgreSQL. DataFusion built the flag group `(?)` from it, which does
//! not compile (found by `tests/postgres_differential.rs`); each is wrapped so that an empty
//! flags value becomes `u` (Unicode, the regex engine's default: a flag that changes nothing).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl};
use datafusion::prelude::SessionContext;

/// The functions wrapped and the position of their flags argument.
const WRAPPED: &[(&str, usize)] = &[
    ("regexp_like", 2),
    ("regexp_match", 2),
    ("regexp_replace", 3),
    ("regexp_count", 3),
];

/// Replaces each function of [`WRAPPED`] registered in `ctx` with its wrapped form.
pub fn register(ctx: &SessionContext) {
    for (name, flags_at) in WRAPPED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(EmptyFlags {
                inner,
                flags_at: *flags_at,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct EmptyFlags {
    inner: Arc<ScalarUDF>,
    flags_at: usize,
}

impl ScalarUDFImpl for EmptyFlags {
    super::forward_to_inner!();

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut args = args;
        if let Some(flags) = args.args.get_mut(self.flags_at) {
            *flags = no_empty(flags)?;
        }
        self.inner.invoke_with_args(args)
    }
}

/// `flags` with every empty string replaced by `u`.
fn no_empty(flags: &ColumnarValue) -> Result<ColumnarValue> {
    Ok(match flags {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(f))) if f.is_empty() => {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some("u".into())))
        }
        ColumnarValue::Scalar(ScalarValue::Utf8View(Some(f))) if f.is_empty() => {
            ColumnarValue::Scalar(ScalarValue::Utf8View(Some("u".into())))
        }
        ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(f))) if f.is_empty() => {
            ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some("u".into())))
        }
        ColumnarValue::Array(a)
            if matches!(
                a.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            let text = cast(a, &DataType::Utf8)?;
            let fixed: StringArray = text
                .as_string::<i32>()
                .iter()
                .map(|f| f.map(|f| if f.is_empty() { "u" } else { f }))
                .collect();
            ColumnarValue::Array(cast(&fixed, a.data_type())?)
        }
        other => other.clone(),
    })
}
