//! Text read as a timestamp may leave out its seconds, as in PostgreSQL: `ts > '2020-04-15
//! 08:05'` compares with 08:05:00.
//!
//! Arrow's text-to-timestamp cast wants the seconds. Literals the user types as timestamps
//! (`TIMESTAMP '…'`, `'…'::timestamp`) are completed in the SQL text before parsing
//! ([`crate::sql::tokens`]); an *untyped* text literal becomes a timestamp only when type
//! coercion casts it (a comparison with a timestamp column, `IN`, `BETWEEN`, a function's
//! timestamp argument). [`analyzer_rule`] runs after type coercion and completes the text of
//! each such cast of a literal. Texts that are not `YYYY-MM-DD HH:MM` are left as they are,
//! for the cast to accept or refuse.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::analyzer::function_rewrite::ApplyFunctionRewrites;
use datafusion::optimizer::AnalyzerRule;

use crate::pgtext::datetime::complete_seconds;

/// Completes the text of a text literal cast to a timestamp.
#[derive(Debug, Default)]
struct TimestampText;

/// `expr` with its text completed, if it is a text literal that needs it.
fn completed(expr: &Expr) -> Option<Expr> {
    let Expr::Literal(value, meta) = expr else {
        return None;
    };
    let text = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s,
        _ => return None,
    };
    let full = complete_seconds(text)?;
    let value = match value {
        ScalarValue::Utf8View(_) => ScalarValue::Utf8View(Some(full)),
        ScalarValue::LargeUtf8(_) => ScalarValue::LargeUtf8(Some(full)),
        _ => ScalarValue::Utf8(Some(full)),
    };
    Some(Expr::Literal(value, meta.clone()))
}

impl FunctionRewrite for TimestampText {
    fn name(&self) -> &str {
        "timestamp_text_without_seconds"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        Ok(match expr {
            Expr::Cast(mut c) if matches!(c.field.data_type(), DataType::Timestamp(..)) => {
                match completed(&c.expr) {
                    Some(e) => {
                        c.expr = Box::new(e);
                        Transformed::yes(Expr::Cast(c))
                    }
                    None => Transformed::no(Expr::Cast(c)),
                }
            }
            Expr::TryCast(mut c) if matches!(c.field.data_type(), DataType::Timestamp(..)) => {
                match completed(&c.expr) {
                    Some(e) => {
                        c.expr = Box::new(e);
                        Transformed::yes(Expr::TryCast(c))
                    }
                    None => Transformed::no(Expr::TryCast(c)),
                }
            }
            other => Transformed::no(other),
        })
    }
}

/// The analyzer rule described in the [module docs](self); add it after type coercion.
pub fn analyzer_rule() -> Arc<dyn AnalyzerRule + Send + Sync> {
    Arc::new(ApplyFunctionRewrites::new(vec![Arc::new(TimestampText)]))
}
