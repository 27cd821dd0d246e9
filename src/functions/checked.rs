//! Integer `+`, `-` and `*` that raise 22003 on overflow, as PostgreSQL does.
//!
//! DataFusion's arithmetic wraps around (`2147483647 + 2147483647` is `-2`): a silently wrong
//! answer, in a view forever. [`analyzer_rule`] (an analyzer rule, after type
//! coercion) replaces each integer `a + b`, `a - b`, `a * b` of a plan with
//! `checked_add(a, b)` (`checked_sub`, `checked_mul`; a chain `a + b - c` with
//! `checked_arith('+-', a, b, c)`), which computes with Arrow's checked kernels; the column keeps its name (`a + b`). A query fails with 22003 ("integer out of
//! range", as in PostgreSQL); a view stops with that error in `eddy.views`, as on any other
//! value error, rather than keep a wrong number.

use std::sync::Arc;

use datafusion::arrow::compute::kernels::numeric::{add, mul, sub};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{plan_err, DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::analyzer::function_rewrite::ApplyFunctionRewrites;
use datafusion::optimizer::AnalyzerRule;

use crate::error::EddyError;

/// `checked_add(a, b, …)`, `checked_sub(…)`, `checked_mul(…)`: one operator folded left over
/// integers of one type; `checked_arith('+-', a, b, c)`: `a + b - c`, the operators given first.
///
/// A chain `a + b + … + z` is one call, not a call nested per operator: names and types of
/// nested calls are computed per level, which made 900 terms take a minute to plan.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Checked {
    /// The operator of every step; `None`: the steps' operators are the first argument.
    op: Option<Operator>,
    signature: Signature,
}

impl Checked {
    fn new(op: Option<Operator>) -> Self {
        Checked {
            op,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// The operator of `c` (`+`, `-`, `*`).
    fn operator(c: char) -> Option<Operator> {
        match c {
            '+' => Some(Operator::Plus),
            '-' => Some(Operator::Minus),
            '*' => Some(Operator::Multiply),
            _ => None,
        }
    }

    fn symbol(op: Operator) -> char {
        match op {
            Operator::Plus => '+',
            Operator::Minus => '-',
            _ => '*',
        }
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Some(Operator::Plus) => "checked_add",
            Some(Operator::Minus) => "checked_sub",
            Some(_) => "checked_mul",
            None => "checked_arith",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let operands = if self.op.is_some() {
            arg_types
        } else {
            arg_types.get(1..).unwrap_or_default()
        };
        match operands {
            [a, rest @ ..] if !rest.is_empty() && rest.iter().all(|t| t == a) => Ok(a.clone()),
            _ => plan_err!("{} takes two or more integers of one type", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (ops, operands): (Vec<Operator>, &[ColumnarValue]) = match self.op {
            Some(op) => (vec![op; args.args.len().saturating_sub(1)], &args.args),
            None => match args.args.split_first() {
                Some((ColumnarValue::Scalar(ScalarValue::Utf8(Some(ops))), rest)) => {
                    (ops.chars().filter_map(Checked::operator).collect(), rest)
                }
                _ => return plan_err!("checked_arith takes its operators first, as text"),
            },
        };
        if operands.len() != ops.len() + 1 {
            return plan_err!(
                "{}: {} operators for {} operands",
                self.name(),
                ops.len(),
                operands.len()
            );
        }
        let scalar = operands
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let mut acc = operands[0].to_array(rows)?;
        for (op, operand) in ops.iter().zip(&operands[1..]) {
            let kernel = match op {
                Operator::Plus => add,
                Operator::Minus => sub,
                _ => mul,
            };
            acc = kernel(&acc, &operand.to_array(rows)?).map_err(|e| match e {
                ArrowError::ArithmeticOverflow(detail) => {
                    let message =
                        format!("{} out of range ({detail})", pg_name(args.return_type()));
                    DataFusionError::External(Box::new(EddyError::Data {
                        code: "22003",
                        message,
                    }))
                }
                e => e.into(),
            })?;
        }
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&acc, 0)?)
        } else {
            ColumnarValue::Array(acc)
        })
    }
}

/// PostgreSQL's name of an integer type, as its "out of range" errors say it.
fn pg_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        _ => "bigint",
    }
}

/// The expression rewrite of [`analyzer_rule`].
#[derive(Debug)]
struct CheckedRewrite {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
    mixed: Arc<ScalarUDF>,
}

impl CheckedRewrite {
    fn uniform(&self, op: Operator) -> &Arc<ScalarUDF> {
        match op {
            Operator::Plus => &self.add,
            Operator::Minus => &self.sub,
            _ => &self.mul,
        }
    }

    /// The steps of `e` when it is a chain this rule made: operators and operands.
    fn chain(&self, e: &Expr) -> Option<(Vec<Operator>, Vec<Expr>)> {
        let Expr::ScalarFunction(f) = e else {
            return None;
        };
        let name = f.func.name();
        for op in [Operator::Plus, Operator::Minus, Operator::Multiply] {
            if name == self.uniform(op).name() {
                return Some((vec![op; f.args.len() - 1], f.args.clone()));
            }
        }
        match f.args.split_first() {
            Some((Expr::Literal(ScalarValue::Utf8(Some(ops)), _), rest))
                if name == self.mixed.name() =>
            {
                Some((
                    ops.chars().filter_map(Checked::operator).collect(),
                    rest.to_vec(),
                ))
            }
            _ => None,
        }
    }

    /// The type of `e`; for a chain, its last operand's, without walking the chain.
    fn integer_type(&self, e: &Expr, schema: &DFSchema) -> Option<DataType> {
        let t = match self.chain(e) {
            Some((_, operands)) => operands.last()?.get_type(schema),
            None => e.get_type(schema),
        };
        t.ok().filter(DataType::is_integer)
    }
}

impl FunctionRewrite for CheckedRewrite {
    fn name(&self) -> &str {
        "checked_integer_arithmetic"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        let Expr::BinaryExpr(b) = expr else {
            return Ok(Transformed::no(expr));
        };
        if !matches!(b.op, Operator::Plus | Operator::Minus | Operator::Multiply) {
            return Ok(Transformed::no(Expr::BinaryExpr(b)));
        }
        match (
            self.integer_type(&b.left, schema),
            self.integer_type(&b.right, schema),
        ) {
            (Some(l), Some(r)) if l == r => {}
            _ => return Ok(Transformed::no(Expr::BinaryExpr(b))),
        }
        // `+` and `-` continue a chain of `+` and `-`; `*` one of `*`.
        let additive = |op: &Operator| matches!(op, Operator::Plus | Operator::Minus);
        let (mut ops, mut operands) = match self.chain(&b.left) {
            Some((ops, operands)) if ops.iter().all(|o| additive(o) == additive(&b.op)) => {
                (ops, operands)
            }
            _ => (vec![], vec![*b.left]),
        };
        ops.push(b.op);
        operands.push(*b.right);
        let call = if ops.iter().all(|o| *o == b.op) {
            ScalarFunction::new_udf(self.uniform(b.op).clone(), operands)
        } else {
            let symbols: String = ops.iter().map(|o| Checked::symbol(*o)).collect();
            let mut args = vec![Expr::Literal(ScalarValue::Utf8(Some(symbols)), None)];
            args.extend(operands);
            ScalarFunction::new_udf(self.mixed.clone(), args)
        };
        Ok(Transformed::yes(Expr::ScalarFunction(call)))
    }
}

/// The analyzer rule described in the [module docs](self); add it after type coercion.
pub fn analyzer_rule() -> Arc<dyn AnalyzerRule + Send + Sync> {
    let udf = |op| Arc::new(ScalarUDF::from(Checked::new(op)));
    Arc::new(ApplyFunctionRewrites::new(vec![Arc::new(CheckedRewrite {
        add: udf(Some(Operator::Plus)),
        sub: udf(Some(Operator::Minus)),
        mul: udf(Some(Operator::Multiply)),
        mixed: udf(None),
    })]))
}
