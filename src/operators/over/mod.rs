//! Window functions over a partition's rows in order (`OVER (PARTITION BY …
//! ORDER BY … ROWS | RANGE BETWEEN …)`, `LAG`, `LEAD`, running totals,
//! `ROW_NUMBER()` without a rank filter), maintained as rows change.
//!
//! Per partition key the operator holds the rows in ORDER BY order. For a
//! batch it finds, per touched partition, the stretch of rows whose output
//! may change ([`reach`]), computes their outputs before and after applying
//! the batch with DataFusion's own window expressions (over just that
//! stretch and the rows their frames read), and emits the difference: a row
//! whose value changed is retracted with its old value and inserted with
//! the new. Rows arriving in order touch only their own output (and, with
//! `LEAD`, the rows before them); a row arriving out of order corrects the
//! outputs that include it — the view always equals the batch answer.
//!
//! Over an append-only input ordered by its event time, rows the watermark
//! has passed are dropped from state once no frame a new row can change
//! reaches them (rows arriving below the watermark are dropped as late
//! before this operator). Otherwise every row is held, up to a limit.

mod reach;
mod state;

pub use reach::Extent;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::WindowExpr;

use super::{OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::Result;
use crate::types::{Changes, EventTime};

/// The window functions of one `PARTITION BY … ORDER BY …`, fixed at planning.
#[derive(Debug, Clone)]
pub struct OverSpec {
    /// `PARTITION BY` expressions over the input.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` over the input, with direction and nulls order.
    pub order_by: Vec<PhysicalSortExpr>,
    /// The window functions; each computes one output column over rows of
    /// one partition in order.
    pub functions: Vec<Arc<dyn WindowExpr>>,
    /// Each function as EXPLAIN shows it (call and frame).
    pub shown: Vec<String>,
    /// How far outputs reach before a row (frame starts, `LAG`).
    pub before: Vec<Extent>,
    /// How far outputs reach after a row (frame ends, `LEAD`).
    pub after: Vec<Extent>,
    /// The input schema.
    pub input_schema: SchemaRef,
    /// The input's columns, then one per function.
    pub output_schema: SchemaRef,
    /// Most rows held.
    pub max_rows: usize,
    /// The input is append-only and ordered first by its event-time column
    /// (this index, ascending): rows the watermark passed are freed. The
    /// planner drops rows below the watermark before this operator (a
    /// late row could change outputs whose frames were freed).
    pub evict_by: Option<usize>,
}

/// The OVER operator (one per partition of its node).
pub struct Over {
    spec: Arc<OverSpec>,
    state: state::Rows,
}

impl Over {
    /// An operator for `spec` with no rows.
    pub fn new(spec: Arc<OverSpec>) -> Result<Self> {
        Ok(Over {
            state: state::Rows::new(spec.clone())?,
            spec,
        })
    }
}

impl StreamOperator for Over {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(self.state.apply(&changes)?);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        _out: &mut Output,
    ) -> Result<Option<EventTime>> {
        let w = ports.first().copied().flatten();
        if let Some(w) = w {
            self.state.evict_below(w)?;
        }
        Ok(w)
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::single("rows", self.state.snapshot()?))
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        for mine in ctx.keep_by(state.take("rows"), &self.spec.partition_by)? {
            if mine.num_rows() > 0 {
                self.state.apply_quietly(&Changes::inserts(mine))?;
            }
        }
        state.expect_consumed("OVER")
    }

    fn explain(&self) -> String {
        let s = &self.spec;
        let list = |v: Vec<String>| v.join(", ");
        let sides = |e: &[Extent]| list(e.iter().map(Extent::describe).collect());
        format!(
            "Over: [{}] per [{}] by [{}]; reach {} before, {} after; state {}",
            list(s.shown.clone()),
            list(s.partition_by.iter().map(|e| e.to_string()).collect()),
            list(s.order_by.iter().map(|e| e.to_string()).collect()),
            sides(&s.before),
            sides(&s.after),
            match s.evict_by {
                Some(_) => "rows the watermark has not passed, and those their frames read",
                None => "every row",
            }
        )
    }

    fn state_bytes(&self) -> usize {
        self.state.bytes()
    }
}

#[cfg(test)]
mod tests;
