//! Values to text as PostgreSQL writes them, in place of Arrow's casts.
//!
//! Arrow casts a timestamp to `2026-01-01T00:00:01`, an interval to `1 days`, an array to
//! `[3, 1, 2]`, a float to `1e300`; PostgreSQL writes `2026-01-01 00:00:01`, `1 day`, `{3,1,2}`,
//! `1e+300`. [`PgTextRewrite`] (a function rewrite, run before type coercion) turns
//! - `CAST(x AS text)` (and `::varchar`, `TRY_CAST`) into `text(x)`, which writes `true`/`false`
//!   for booleans as PostgreSQL's cast does;
//! - the arguments of `concat`, `concat_ws` and `||` into `text_out(x)`, which writes `t`/`f`
//!   as PostgreSQL's output functions do (`concat(true)` is `t`, `true::text` is `true`),
//!
//! for every type whose text Arrow writes unlike PostgreSQL ([`pgtext::differs_from_arrow`]); integers, decimals
//! and strings keep Arrow's cast, which agrees. Both functions write with [`crate::pgtext`], as
//! result cells are written, so a value reads the same in a cell and in a string.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{plan_err, DFSchema, Result};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::pgtext::{self, Style};

/// `text(x)` / `text_out(x)`: `x` as PostgreSQL's cast to text / output function writes it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgText {
    style: Style,
    signature: Signature,
}

impl PgText {
    /// The cast (`true`) or the output function (`t`).
    pub fn new(cast: bool) -> Self {
        PgText {
            style: if cast { Style::CAST } else { Style::OUTPUT },
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgText {
    fn name(&self) -> &str {
        if self.style.bool_words {
            "text"
        } else {
            "text_out"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return plan_err!("{} takes one argument", self.name());
        };
        super::map_array(arg, args.number_rows, |values| {
            Ok(match values.data_type() {
                DataType::Dictionary(_, v) => self.write(&cast(values, v)?),
                _ => self.write(values),
            })
        })
    }
}

impl PgText {
    fn write(&self, values: &dyn Array) -> ArrayRef {
        let mut builder = StringBuilder::with_capacity(values.len(), values.len() * 16);
        let mut text = String::new();
        for row in 0..values.len() {
            if values.is_null(row) {
                builder.append_null();
            } else {
                text.clear();
                pgtext::write_text(values, row, self.style, &mut text);
                builder.append_value(&text);
            }
        }
        Arc::new(builder.finish())
    }
}

/// The rewrite described in the [module docs](self).
#[derive(Debug)]
pub struct PgTextRewrite {
    cast: Arc<ScalarUDF>,
    output: Arc<ScalarUDF>,
}

impl Default for PgTextRewrite {
    fn default() -> Self {
        PgTextRewrite {
            cast: Arc::new(ScalarUDF::from(PgText::new(true))),
            output: Arc::new(ScalarUDF::from(PgText::new(false))),
        }
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl PgTextRewrite {
    /// `e` as text through `f` when its type's text differs; unchanged otherwise.
    fn wrap(&self, f: &Arc<ScalarUDF>, e: Expr, schema: &DFSchema, skip_binary: bool) -> Expr {
        match e.get_type(schema) {
            Ok(t) if pgtext::differs_from_arrow(&t) && !(skip_binary && t.is_binary()) => {
                Expr::ScalarFunction(ScalarFunction::new_udf(f.clone(), vec![e]))
            }
            _ => e,
        }
    }

    /// `text(e)`, cast on to `target` when that is not `Utf8`; `None` when `e`'s text is
    /// Arrow's.
    fn cast_to(&self, e: &Expr, target: DataType, schema: &DFSchema) -> Option<Expr> {
        let text = self.wrap(&self.cast, e.clone(), schema, false);
        if &text == e {
            return None;
        }
        Some(if target == DataType::Utf8 {
            text
        } else {
            Expr::Cast(Cast::new(Box::new(text), target))
        })
    }
}

impl FunctionRewrite for PgTextRewrite {
    fn name(&self) -> &str {
        "pg_text"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        Ok(match expr {
            Expr::Cast(c) if is_string(c.field.data_type()) => {
                let target = c.field.data_type().clone();
                match self.cast_to(&c.expr, target, schema) {
                    Some(e) => Transformed::yes(e),
                    None => Transformed::no(Expr::Cast(c)),
                }
            }
            Expr::TryCast(c) if is_string(c.field.data_type()) => {
                let target = c.field.data_type().clone();
                match self.cast_to(&c.expr, target, schema) {
                    Some(e) => Transformed::yes(e),
                    None => Transformed::no(Expr::TryCast(c)),
                }
            }
            Expr::ScalarFunction(f) if matches!(f.name(), "concat" | "concat_ws") => {
                // Binary arguments alone concatenate as bytes (DataFusion's extension).
                let all_binary = f
                    .args
                    .iter()
                    .all(|a| a.get_type(schema).is_ok_and(|t| t.is_binary()));
                let args: Vec<Expr> = f
                    .args
                    .iter()
                    .map(|a| self.wrap(&self.output, a.clone(), schema, all_binary))
                    .collect();
                if args == f.args {
                    Transformed::no(Expr::ScalarFunction(f))
                } else {
                    Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(f.func, args)))
                }
            }
            Expr::BinaryExpr(b) if b.op == Operator::StringConcat => {
                let list = |e: &Expr| {
                    e.get_type(schema).is_ok_and(|t| {
                        matches!(
                            t,
                            DataType::List(_)
                                | DataType::LargeList(_)
                                | DataType::FixedSizeList(..)
                        )
                    })
                };
                let string = |e: &Expr| e.get_type(schema).is_ok_and(|t| is_string(&t));
                if list(&b.left) || list(&b.right) || !(string(&b.left) || string(&b.right)) {
                    return Ok(Transformed::no(Expr::BinaryExpr(b)));
                }
                let left = self.wrap(&self.output, (*b.left).clone(), schema, false);
                let right = self.wrap(&self.output, (*b.right).clone(), schema, false);
                if &left == b.left.as_ref() && &right == b.right.as_ref() {
                    Transformed::no(Expr::BinaryExpr(b))
                } else {
                    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(left),
                        Operator::StringConcat,
                        Box::new(right),
                    )))
                }
            }
            e => Transformed::no(e),
        })
    }
}

/// [`PgTextRewrite`] as an optimizer rule, for the casts to text the optimizer makes itself
/// (`cast_to_type(x, 'text')` is simplified into a cast after the analyzer has run).
#[derive(Debug, Default)]
pub struct PgTextOptimizerRule {
    rewrite: PgTextRewrite,
}

impl OptimizerRule for PgTextOptimizerRule {
    fn name(&self) -> &str {
        "pg_text"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let mut schema = merge_schema(&plan.inputs());
        if let LogicalPlan::TableScan(ts) = &plan {
            schema.merge(&DFSchema::try_from_qualified_schema(
                ts.table_name.clone(),
                &ts.source.schema(),
            )?);
        }
        let names = NamePreserver::new(&plan);
        let options = config.options();
        plan.map_expressions(|e| {
            let name = names.save(&e);
            e.transform_up(|e| self.rewrite.rewrite(e, &schema, &options))
                .map(|t| t.update_data(|e| name.restore(e)))
        })
    }
}
