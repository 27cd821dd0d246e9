//! Temporal filters: a `WHERE` conjunct `ts > now() - INTERVAL '…'` (or
//! `>=`, or written the other way round) becomes a [`TemporalFilter`] after
//! the chain: rows are retracted as processing time passes them, which
//! bounds the state of a view without windows.
//!
//! [`TemporalFilter`]: crate::operators::temporal::TemporalFilter

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, Operator};

use super::finish::close_as_origin;
use super::time::interval_value_ns;
use super::{column_index, uncast, Chain, Lowerer};
use crate::error::Result;
use crate::operators::steps::Step;
use crate::operators::temporal::TemporalSpec;
use crate::plan::graph;

impl Lowerer<'_> {
    /// `f` if one of its conjuncts is a temporal bound: the chain closed,
    /// the temporal filter after it, the other conjuncts as a filter step.
    pub(super) fn temporal(&self, f: &Filter) -> Result<Option<Chain>> {
        let schema = f.input.schema();
        let conjuncts = split_conjunction(&f.predicate);
        let Some((i, bound)) = conjuncts
            .iter()
            .enumerate()
            .find_map(|(i, c)| temporal_bound(c, schema).map(|b| (i, b)))
        else {
            return Ok(None);
        };
        let chain = self.lower(&f.input)?;
        let mut origin = close_as_origin(self, chain, schema.inner().clone(), None)?;
        let (col, width_ns, inclusive) = bound;
        let spec = TemporalSpec {
            schema: schema.inner().clone(),
            col,
            name: schema.field(col).name().clone(),
            width_ns,
            inclusive,
        };
        origin.at = graph::temporal_filter(&mut self.build.borrow_mut(), origin.at, spec);
        // Rows leave as time passes: what reads them sees retractions.
        origin.facts.updating = true;
        let mut chain = Chain::over(origin);
        let rest: Vec<Expr> = conjuncts
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| (*c).clone())
            .collect();
        if let Some(rest) = conjunction(rest) {
            chain.push(Step::Filter(self.phys(&rest, schema)?));
        }
        Ok(Some(chain))
    }
}

/// `col > now() - interval` (also `>=`, and `now() - interval < col`): the
/// column, the interval (ns) and whether the bound is inclusive.
fn temporal_bound(c: &Expr, schema: &DFSchema) -> Option<(usize, i64, bool)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = c else {
        return None;
    };
    let (col, op, bound) = match (column_index(uncast(left), schema), op) {
        (Some(col), _) => (col, *op, right.as_ref()),
        (None, _) => (
            column_index(uncast(right), schema)?,
            op.swap()?,
            left.as_ref(),
        ),
    };
    if !matches!(schema.field(col).data_type(), DataType::Timestamp(_, _)) {
        return None;
    }
    let inclusive = match op {
        Operator::Gt => false,
        Operator::GtEq => true,
        _ => return None,
    };
    let Expr::BinaryExpr(BinaryExpr {
        left: now,
        op: Operator::Minus,
        right: width,
    }) = uncast(bound)
    else {
        return None;
    };
    let is_now = matches!(uncast(now), Expr::ScalarFunction(f) if f.func.name() == "now");
    let Expr::Literal(v, _) = uncast(width) else {
        return None;
    };
    let width_ns = interval_value_ns(v)?;
    (is_now && width_ns > 0).then_some((col, width_ns, inclusive))
}
