//! The streaming planner: a view's query, planned by DataFusion, lowered
//! into a graph of streaming operators (`lower/`, one rule per construct;
//! `graph.rs` builds the nodes; `explain.rs` prints them). What a rule
//! cannot run correctly is refused with SQLSTATE 0A000 and a hint rather
//! than run wrongly.

pub mod carry;
mod explain;
mod graph;
mod lower;

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;

pub use explain::explain;
pub use lower::{parse_state_ttl, plan_view, PlanInputs};

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

/// A view's streaming plan: its operator graph and what it reads and produces.
pub struct ViewPlan {
    /// View name.
    pub name: String,
    /// The operators.
    pub graph: crate::runtime::Graph,
    /// The objects the graph's inputs read, by [`crate::runtime::Edge::Input`] index.
    pub inputs: Vec<String>,
    /// What the view's output stream is like.
    pub output: crate::types::ViewOutput,
    /// Emission mode.
    pub emit: EmitMode,
}

impl ViewPlan {
    /// What the view's output stream is like.
    pub fn output(&self) -> crate::types::ViewOutput {
        self.output.clone()
    }

    /// The objects the view reads, in the order of the graph's inputs.
    pub fn inputs(&self) -> Vec<String> {
        self.inputs.clone()
    }
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
