//! The streaming planner: a view's query, planned by DataFusion, lowered
//! into a chain of streaming operators.
//!
//! Supported shape (this slice): one input (table, source, view, or a
//! window TVF over one of them) → stateless filters/projections → at most
//! one aggregate (windowed or not) → stateless filters/projections. Joins,
//! ORDER BY/LIMIT, window functions and set operations are refused with
//! SQLSTATE 0A000 rather than run wrongly.

mod explain;
mod graph;
mod lower;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;

pub use explain::explain;
pub use graph::view_graph;
pub use lower::{parse_state_ttl, plan_view, PlanInputs};

use crate::operators::aggregate::AggregateSpec;
use crate::operators::steps::Step;
use crate::operators::window::WindowSpec;
use crate::sql::EmitMode;

/// The runnable form of `e` over `schema`, after the same simplification
/// DataFusion's optimizer gives a query's expressions: some functions
/// (`coalesce`, `nvl`, …) exist only as rewrites and cannot run without it.
/// Every expression eddy evaluates itself (view steps, watermarks, CHECKs)
/// comes through here, so a view and a `SELECT` agree.
pub fn physical_expr(
    state: &SessionState,
    e: Expr,
    schema: &DFSchema,
) -> crate::error::Result<Arc<dyn PhysicalExpr>> {
    let e = simplify(state, e, schema)?;
    let phys = state.create_physical_expr(e, schema)?;
    // Run it once over no rows: what cannot be computed fails now (at
    // CREATE), not on the first row of a running view.
    let empty = datafusion::arrow::record_batch::RecordBatch::new_empty(Arc::new(
        schema.as_arrow().clone(),
    ));
    phys.evaluate(&empty)?;
    Ok(phys)
}

/// `e` simplified as DataFusion's optimizer simplifies a query's
/// expressions (see [`physical_expr`]); also for aggregate calls.
pub fn simplify(state: &SessionState, e: Expr, schema: &DFSchema) -> crate::error::Result<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_config_options(state.config_options().clone())
        .build();
    Ok(ExprSimplifier::new(context).simplify(e)?)
}

pub use crate::types::OutputTime;

/// A view's streaming plan.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    /// View name.
    pub name: String,
    /// Name of the input object.
    pub input: String,
    /// Window assignment right after the input, with its output schema.
    pub window: Option<(WindowSpec, SchemaRef)>,
    /// Stateless steps before the aggregate (or all of them when there is none).
    pub pre: Vec<Step>,
    /// The aggregate, if any.
    pub agg: Option<Arc<AggregateSpec>>,
    /// Group-key expressions used to route rows to partitions (the aggregate's group keys).
    pub post: Vec<Step>,
    /// The view's schema.
    pub output_schema: SchemaRef,
    /// Emission mode.
    pub emit: EmitMode,
    /// Output watermark rule.
    pub out_time: OutputTime,
    /// True if the view's rows can be retracted (it is an updating stream).
    pub updating: bool,
    /// Partitions of the aggregate.
    pub partitions: usize,
    /// A Top-N (ROW_NUMBER() … WHERE rn <= N) that runs after this many `pre`
    /// steps, or (with `top_n_after_agg`) `post` steps.
    pub top_n: Option<(usize, Arc<crate::operators::top_n::TopNSpec>)>,
    /// The Top-N ranks the aggregate's output: it runs in the view's sink,
    /// over the rows of every partition.
    pub top_n_after_agg: bool,
    /// A join of two inputs (then `input` is the left one and `window` is
    /// unset: each side has its own); `pre` runs on the join's output.
    pub join: Option<Arc<JoinPlan>>,
}

impl ViewPlan {
    /// The window assignment the view's rows get: the view's window, or, when its HOP aggregate
    /// shares work per slide, a TUMBLE of the slide (each row in its one pane).
    pub fn assignment(&self) -> Option<(WindowSpec, SchemaRef)> {
        let (spec, schema) = self.window.clone()?;
        match self.agg.as_ref().and_then(|a| a.panes) {
            Some(p) => Some((p.pane_window(&spec), schema)),
            None => Some((spec, schema)),
        }
    }

    /// What the view's output stream is like.
    pub fn output(&self) -> crate::types::ViewOutput {
        let key = self.agg.as_ref().map(|a| {
            a.output_schema.fields()[..a.group_exprs.len()]
                .iter()
                .map(|f| f.name().clone())
                .collect()
        });
        crate::types::ViewOutput {
            name: self.name.clone(),
            schema: self.output_schema.clone(),
            time: self.out_time.clone(),
            updating: self.updating,
            key,
        }
    }

    /// The objects the view reads: one, or two for a join.
    pub fn inputs(&self) -> Vec<String> {
        match &self.join {
            Some(j) => j.sides.iter().map(|s| s.input.clone()).collect(),
            None => vec![self.input.clone()],
        }
    }
}

/// One input of a join, with what runs on its rows before the join.
#[derive(Debug, Clone)]
pub struct JoinSide {
    /// Name of the input object.
    pub input: String,
    /// Window assignment right after the input (a window join).
    pub window: Option<(WindowSpec, SchemaRef)>,
    /// Stateless steps before the join.
    pub steps: Vec<Step>,
    /// Drop rows below this side's watermark, by the input's event-time
    /// column (its index in the input's schema): the other side frees rows
    /// by this side's watermark, so a late row could miss its matches.
    pub drop_late: Option<usize>,
    /// The input has an event-time watermark.
    pub watermarked: bool,
}

/// A join view's two inputs and the join itself.
#[derive(Debug)]
pub struct JoinPlan {
    /// Left and right.
    pub sides: [JoinSide; 2],
    /// The join operator.
    pub spec: Arc<crate::operators::join::JoinSpec>,
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::{col, lit, SessionContext};

    use super::*;

    /// `coalesce` only runs after simplification: without it the expression
    /// fails when evaluated, and evaluating over no rows already shows that,
    /// so such an expression is refused at CREATE rather than on the first row.
    #[test]
    fn rewrites_are_applied_and_unrunnable_expressions_fail_early() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let schema =
            DFSchema::try_from(Schema::new(vec![Field::new("s", DataType::Utf8, true)])).unwrap();
        let e = datafusion::functions::expr_fn::coalesce(vec![col("s"), lit("n/a")]);
        let unsimplified = state.create_physical_expr(e.clone(), &schema).unwrap();
        let empty = datafusion::arrow::record_batch::RecordBatch::new_empty(Arc::new(
            schema.as_arrow().clone(),
        ));
        let err = unsimplified.evaluate(&empty).unwrap_err().to_string();
        assert!(err.contains("simplified"), "{err}");
        assert!(physical_expr(&state, e, &schema).is_ok());
    }
}
