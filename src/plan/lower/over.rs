//! Window functions that are not a Top-N — `agg(…) OVER (PARTITION BY …
//! ORDER BY … ROWS | RANGE BETWEEN …)`, `LAG`, `LEAD`, `FIRST_VALUE`, a
//! ranking nothing filters — become an [`Over`] node reading the chain's
//! output as a whole, hashed by the PARTITION BY keys.
//!
//! [`Over`]: crate::operators::over::Over

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, LogicalPlan, Window, WindowFrame, WindowFrameBound, WindowFrameUnits,
};

use super::finish::close_as_origin;
use super::rank::rank_limit;
use super::{column_index, unsupported, Chain, Lowerer};
use crate::error::Result;
use crate::operators::over::{Extent, OverSpec};
use crate::plan::graph;

impl Lowerer<'_> {
    /// The window functions of `w` computed over the chain's rows.
    pub(super) fn over(&self, chain: Chain, w: &Window) -> Result<Chain> {
        let in_schema = w.input.schema();
        // Rows straight from an input (through stateless steps) never come below its
        // watermark but as late rows, which are dropped; after a join, union or aggregate
        // that is not assured, so every row is kept there.
        let direct = matches!(chain.origin.at.edge, crate::runtime::Edge::Input(_))
            && chain.agg.is_none()
            && chain.joined.is_none()
            && chain.rank.is_none()
            && chain.window.is_none();
        let mut origin = close_as_origin(self, chain, in_schema.inner().clone(), None)?;
        let funs = w
            .window_expr
            .iter()
            .map(window_function)
            .collect::<Result<Vec<_>>>()?;
        // DataFusion gives each PARTITION BY / ORDER BY its own window node.
        let first = &funs[0].params;
        let partition_by = first
            .partition_by
            .iter()
            .map(|e| self.phys(e, in_schema))
            .collect::<Result<Vec<_>>>()?;
        let order_by = self.sort_exprs(&first.order_by, in_schema)?;
        let props = self.state.execution_props();
        let planning =
            datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
        let functions = w
            .window_expr
            .iter()
            .map(|e| {
                datafusion::physical_planner::create_window_expr(e, in_schema, props, &planning)
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for f in &funs {
            let (b, a) = reach(f);
            if !before.contains(&b) {
                before.push(b);
            }
            if !after.contains(&a) {
                after.push(a);
            }
        }
        // Over an append-only input ordered by its event time, rows the
        // watermark passed are freed once no new row's frame reaches them.
        let time = origin
            .facts
            .time_column
            .as_deref()
            .and_then(|t| in_schema.inner().index_of(t).ok());
        let by_time = first
            .order_by
            .first()
            .is_some_and(|s| s.asc && time.is_some() && column_index(&s.expr, in_schema) == time);
        let bounded = !before.iter().chain(&after).any(|e| *e == Extent::Unbounded);
        let evict_by = time.filter(|_| direct && by_time && bounded && !origin.facts.updating);
        let spec = OverSpec {
            shown: funs.iter().map(|f| shown(f)).collect(),
            partition_by,
            order_by,
            functions,
            before,
            after,
            input_schema: in_schema.inner().clone(),
            output_schema: w.schema.inner().clone(),
            max_rows: self.max_groups,
            evict_by,
        };
        if let Some(col) = evict_by {
            // A row below the watermark could change values whose frames were freed.
            origin.at = graph::drop_late(&mut self.build.borrow_mut(), origin.at, col);
        }
        origin.at = graph::over(
            &mut self.build.borrow_mut(),
            origin.at,
            Arc::new(spec),
            self.partitions,
        );
        // A row's value changes when a row arrives before it (or retracts).
        origin.facts.schema = w.schema.inner().clone();
        origin.facts.updating = true;
        Ok(Chain::over(origin))
    }
}

/// `f` for EXPLAIN: the call, and the frame when the function reads one.
fn shown(f: &WindowFunction) -> String {
    let args: Vec<String> = f.params.args.iter().map(|a| a.to_string()).collect();
    let call = format!("{}({})", f.fun.name(), args.join(", "));
    let framed = !matches!(
        f.fun.name().to_ascii_lowercase().as_str(),
        "lag"
            | "lead"
            | "row_number"
            | "rank"
            | "dense_rank"
            | "percent_rank"
            | "cume_dist"
            | "ntile"
    );
    match framed {
        true => format!("{call} {}", f.params.window_frame),
        false => call,
    }
}

/// The window function call of a window expression (under its alias).
fn window_function(e: &Expr) -> Result<&WindowFunction> {
    match e {
        Expr::WindowFunction(f) => Ok(f),
        Expr::Alias(a) => window_function(&a.expr),
        _ => Err(unsupported("this window expression")),
    }
}

/// How far `f`'s value at a row reaches before and after it.
fn reach(f: &WindowFunction) -> (Extent, Extent) {
    let offset = |i: usize| match f.params.args.get(i) {
        None => Some(1),
        Some(Expr::Literal(v, _)) => count(v).or(Some(0)),
        _ => None,
    };
    match f.fun.name().to_ascii_lowercase().as_str() {
        // LAG(x, k) reads k rows back, LEAD k ahead (a negative k the other way).
        "lag" | "lead" => match offset(1) {
            Some(k) => (Extent::Rows(k), Extent::Rows(k)),
            None => (Extent::Unbounded, Extent::Unbounded),
        },
        // Numbered from the partition's first row; later rows do not matter.
        "row_number" | "rank" | "dense_rank" => (Extent::Unbounded, Extent::Rows(0)),
        // Relative to the partition's size.
        "percent_rank" | "cume_dist" | "ntile" => (Extent::Unbounded, Extent::Unbounded),
        _ => frame(&f.params.window_frame),
    }
}

/// The rows a frame reads before and after the current row.
fn frame(fr: &WindowFrame) -> (Extent, Extent) {
    let side = |b: &WindowFrameBound, start: bool| {
        let (v, toward_start) = match b {
            WindowFrameBound::CurrentRow => (None, start),
            WindowFrameBound::Preceding(v) => (Some(v), true),
            WindowFrameBound::Following(v) => (Some(v), false),
        };
        if v.is_some_and(ScalarValue::is_null) {
            return Extent::Unbounded;
        }
        // A bound on the other side of the row reaches no further than the row.
        let v = v.filter(|_| toward_start == start);
        match fr.units {
            WindowFrameUnits::Rows => match v {
                None => Extent::Rows(0),
                Some(v) => count(v).map_or(Extent::Unbounded, Extent::Rows),
            },
            WindowFrameUnits::Range => Extent::Range(v.cloned()),
            WindowFrameUnits::Groups => Extent::Unbounded,
        }
    };
    (side(&fr.start_bound, true), side(&fr.end_bound, false))
}

/// A row count from a literal (its absolute value).
fn count(v: &ScalarValue) -> Option<usize> {
    match v
        .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
        .ok()?
    {
        ScalarValue::Int64(Some(n)) => usize::try_from(n.unsigned_abs()).ok(),
        _ => None,
    }
}

/// The window nodes whose ranking a filter above bounds (`rn <= N`): those
/// become Top-N; every other window node is an [`Over`](crate::operators::over::Over).
pub(super) fn top_n_windows(plan: &LogicalPlan) -> HashSet<usize> {
    let mut found = HashSet::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Filter(f) = node {
            if let Some((w, col)) = ranked_column(&f.input) {
                if rank_limit(&f.predicate, f.input.schema(), Some(col)).is_some() {
                    found.insert(w);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The window node (by address) whose ranking `plan` outputs, and where
/// the rank column is in its schema.
fn ranked_column(plan: &LogicalPlan) -> Option<(usize, usize)> {
    match plan {
        LogicalPlan::Window(w) => {
            super::rank::ranking(w).ok()?;
            Some((address(w), w.schema.fields().len() - 1))
        }
        LogicalPlan::Projection(p) => {
            let (w, col) = ranked_column(&p.input)?;
            let pos = p
                .expr
                .iter()
                .position(|e| column_index(e, p.input.schema()) == Some(col))?;
            Some((w, pos))
        }
        LogicalPlan::SubqueryAlias(s) => ranked_column(&s.input),
        LogicalPlan::Filter(f) => ranked_column(&f.input),
        _ => None,
    }
}

/// A window node's identity while one plan is lowered.
pub(super) fn address(w: &Window) -> usize {
    w as *const Window as usize
}
