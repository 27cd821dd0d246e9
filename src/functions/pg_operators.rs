//! Casts and operators whose meaning in DataFusion differs from PostgreSQL's, rewritten (a
//! function rewrite, before type coercion, shared by views and queries) to PostgreSQL's:
//!
//! - `CAST(x AS integer)` of a `double precision` or `real` rounds to the nearest integer, ties
//!   to even (`rint`), as PostgreSQL does; Arrow truncated (`1.5::int` was 1, is 2).
//! - `CAST(text AS interval)` of a bare number reads seconds (`'3'::interval` is `00:00:03`);
//!   Arrow read months.
//! - `date + interval` and `date - interval` are timestamps (`DATE '2026-01-01' + INTERVAL
//!   '1 hour'` is `2026-01-01 01:00:00`); Arrow kept a date and dropped the time.
//! - `x # x` is NULL when `x` is (DataFusion's simplifier folded it to 0).
//! - `x SIMILAR TO 'pattern'` reads `%` as any string and `_` as any character, anchored at both
//!   ends, with `.` an ordinary character (PostgreSQL's `similar_escape`); DataFusion handed the
//!   pattern to the regex engine as it was.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array, StringBuilder};

use super::map_array;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{plan_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::{Cast, Like, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

/// `rint(x)`: `x` (double precision) rounded to the nearest integer, ties to even.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Rint {
    signature: Signature,
}

impl ScalarUDFImpl for Rint {
    fn name(&self) -> &str {
        "rint"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [x] = args.args.as_slice() else {
            return plan_err!("rint takes one argument");
        };
        map_array(x, args.number_rows, |a| {
            let a = cast(a, &DataType::Float64)?;
            let out: Float64Array = a
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .unary(f64::round_ties_even);
            Ok(Arc::new(out))
        })
    }
}

/// `interval_text(s)`: `s`, or `s seconds` when `s` is a bare number, for a cast to interval.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalText {
    signature: Signature,
}

impl ScalarUDFImpl for IntervalText {
    fn name(&self) -> &str {
        "interval_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [s] = args.args.as_slice() else {
            return plan_err!("interval_text takes one argument");
        };
        map_array(s, args.number_rows, |a| {
            let a = cast(a, &DataType::Utf8)?;
            let a = a.as_string::<i32>();
            let mut out = StringBuilder::with_capacity(a.len(), a.value_data().len() + 8);
            for v in a.iter() {
                match v {
                    Some(v) if v.trim().parse::<f64>().is_ok() => {
                        out.append_value(format!("{} seconds", v.trim()))
                    }
                    Some(v) => out.append_value(v),
                    None => out.append_null(),
                }
            }
            Ok(Arc::new(out.finish()))
        })
    }
}

/// The rewrite described in the [module docs](self).
#[derive(Debug)]
pub struct PgOperators {
    rint: Arc<ScalarUDF>,
    interval_text: Arc<ScalarUDF>,
}

impl Default for PgOperators {
    fn default() -> Self {
        let signature = Signature::any(1, Volatility::Immutable);
        PgOperators {
            rint: Arc::new(ScalarUDF::from(Rint {
                signature: signature.clone(),
            })),
            interval_text: Arc::new(ScalarUDF::from(IntervalText { signature })),
        }
    }
}

impl PgOperators {
    fn call(f: &Arc<ScalarUDF>, arg: Expr) -> Expr {
        Expr::ScalarFunction(ScalarFunction::new_udf(f.clone(), vec![arg]))
    }

    /// A cast rewritten, or `None` when it keeps Arrow's meaning.
    fn cast(&self, c: &Cast, schema: &DFSchema) -> Option<Expr> {
        let target = c.field.data_type();
        if matches!(c.expr.as_ref(), Expr::ScalarFunction(f)
            if f.func.name() == "rint" || f.func.name() == "interval_text")
        {
            return None;
        }
        let from = c.expr.get_type(schema).ok()?;
        let inner = if from.is_floating() && target.is_integer() {
            Self::call(&self.rint, (*c.expr).clone())
        } else if matches!(
            from,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) && matches!(target, DataType::Interval(_))
        {
            Self::call(&self.interval_text, (*c.expr).clone())
        } else {
            return None;
        };
        Some(Expr::Cast(Cast::new(Box::new(inner), target.clone())))
    }

    /// `date ± interval` as a timestamp, or `None`.
    fn date_interval(b: &BinaryExpr, schema: &DFSchema) -> Option<Expr> {
        if !matches!(b.op, Operator::Plus | Operator::Minus) {
            return None;
        }
        let is_date = |e: &Expr| {
            e.get_type(schema)
                .is_ok_and(|t| matches!(t, DataType::Date32 | DataType::Date64))
        };
        let is_interval = |e: &Expr| {
            e.get_type(schema)
                .is_ok_and(|t| matches!(t, DataType::Interval(_)))
        };
        let timestamp = |e: &Expr| {
            Box::new(Expr::Cast(Cast::new(
                Box::new(e.clone()),
                DataType::Timestamp(TimeUnit::Nanosecond, None),
            )))
        };
        if is_date(&b.left) && is_interval(&b.right) {
            Some(Expr::BinaryExpr(BinaryExpr::new(
                timestamp(&b.left),
                b.op,
                b.right.clone(),
            )))
        } else if b.op == Operator::Plus && is_interval(&b.left) && is_date(&b.right) {
            Some(Expr::BinaryExpr(BinaryExpr::new(
                b.left.clone(),
                b.op,
                timestamp(&b.right),
            )))
        } else {
            None
        }
    }
}

/// The operands of a chain `a # b # c`.
fn xor_operands(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::BitwiseXor => {
            let mut out = xor_operands(&b.left);
            out.extend(xor_operands(&b.right));
            out
        }
        e => vec![e],
    }
}

/// `x # x` (or `(… x …) # x`) as `CASE WHEN x IS NULL THEN NULL ELSE … END`: DataFusion's
/// simplifier folds the pair away (`x # x` to 0) without asking whether `x` is NULL, which
/// PostgreSQL's answer is. The CASE keeps the NULL; the simplifier still folds the rest.
fn xor_guard(b: &BinaryExpr) -> Option<Expr> {
    let (left, right) = (xor_operands(&b.left), xor_operands(&b.right));
    let shared = left.iter().find(|l| right.contains(l))?;
    Some(Expr::Case(datafusion::logical_expr::expr::Case::new(
        None,
        vec![(
            Box::new(Expr::IsNull(Box::new((*shared).clone()))),
            Box::new(Expr::Literal(ScalarValue::Null, None)),
        )],
        Some(Box::new(Expr::BinaryExpr(b.clone()))),
    )))
}

/// A SIMILAR TO pattern as an anchored regular expression, as PostgreSQL's `similar_escape`
/// makes it; `escape` quotes the next character (`None`: no escape character).
pub fn similar_to_regex(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::from("^(?:");
    let mut chars = pattern.chars();
    let mut in_brackets = false;
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(next) = chars.next() {
                out.push_str(&regex_literal(next));
            }
            continue;
        }
        if in_brackets {
            if c == ']' {
                in_brackets = false;
            }
            out.push(c);
            continue;
        }
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '[' => {
                in_brackets = true;
                out.push(c);
            }
            '|' | '*' | '+' | '?' | '{' | '}' | '(' | ')' => out.push(c),
            c => out.push_str(&regex_literal(c)),
        }
    }
    out.push_str(")$");
    out
}

/// `c` as a regular expression matching itself.
fn regex_literal(c: char) -> String {
    if c.is_alphanumeric() || c == ' ' {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

impl FunctionRewrite for PgOperators {
    fn name(&self) -> &str {
        "pg_operators"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        let rewritten = match &expr {
            Expr::Cast(c) => self.cast(c, schema),
            Expr::BinaryExpr(b) if b.op == Operator::BitwiseXor => xor_guard(b),
            Expr::BinaryExpr(b) => Self::date_interval(b, schema),
            Expr::SimilarTo(Like {
                negated,
                expr: value,
                pattern,
                escape_char,
                case_insensitive,
            }) => match pattern.as_ref() {
                Expr::Literal(ScalarValue::Utf8(Some(p)), _) => {
                    let op = match (negated, case_insensitive) {
                        (false, false) => Operator::RegexMatch,
                        (false, true) => Operator::RegexIMatch,
                        (true, false) => Operator::RegexNotMatch,
                        (true, true) => Operator::RegexNotIMatch,
                    };
                    let regex = similar_to_regex(p, escape_char.or(Some('\\')));
                    Some(Expr::BinaryExpr(BinaryExpr::new(
                        value.clone(),
                        op,
                        Box::new(Expr::Literal(ScalarValue::Utf8(Some(regex)), None)),
                    )))
                }
                _ => None,
            },
            _ => None,
        };
        Ok(match rewritten {
            Some(e) => Transformed::yes(e),
            None => Transformed::no(expr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{similar_to_regex, xor_guard};
    use datafusion::logical_expr::{col, BinaryExpr, Expr, Operator};

    #[test]
    fn a_repeated_xor_operand_keeps_its_null() {
        let xor =
            |l: Expr, r: Expr| BinaryExpr::new(Box::new(l), Operator::BitwiseXor, Box::new(r));
        let guarded = xor_guard(&xor(col("x"), col("x"))).map(|e| e.to_string());
        assert_eq!(
            guarded.as_deref(),
            Some("CASE WHEN x IS NULL THEN NULL ELSE x BIT_XOR x END")
        );
        let chain = Expr::BinaryExpr(xor(col("a"), col("x")));
        assert!(xor_guard(&xor(chain, col("x"))).is_some());
        assert!(xor_guard(&xor(col("a"), col("b"))).is_none());
    }

    #[test]
    fn similar_to_patterns_become_anchored_regexes() {
        assert_eq!(similar_to_regex("%(b|l)%", Some('\\')), "^(?:.*(b|l).*)$");
        assert_eq!(similar_to_regex("a_c.d", Some('\\')), "^(?:a.c\\.d)$");
        assert_eq!(similar_to_regex("100\\%", Some('\\')), "^(?:100\\%)$");
        assert_eq!(similar_to_regex("[a-c%]x{2}", None), "^(?:[a-c%]x{2})$");
        assert_eq!(similar_to_regex("^$", None), "^(?:\\^\\$)$");
    }
}
