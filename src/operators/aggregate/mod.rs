//! Grouped aggregation, windowed or not, and the SESSION / count-window
//! buffer in front of it (see [`crate::operators::aggregate`] and
//! [`crate::operators::aggregate::sessions`] for their state).

mod closing;
mod columnar;
mod groups;
mod retract;
pub mod sessions;
pub mod snapshot;
mod table;
#[cfg(test)]
mod tests;

pub use closing::Closing;
pub use columnar::Columnar;
pub use groups::*;
pub use retract::retracting;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::physical_expr::PhysicalExpr;

use super::{OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::Result;
use crate::operators::window::fmt_ns;
use crate::types::{Changes, EventTime};
use sessions::SessionBuffer;

/// The expressions that route an aggregate's input rows to partitions.
pub fn routing_keys(spec: &AggregateSpec) -> Vec<Arc<dyn PhysicalExpr>> {
    spec.routing_groups()
        .into_iter()
        .map(|i| spec.group_exprs[i].clone())
        .collect()
}

/// A grouped aggregate; one instance per partition.
pub struct Aggregate {
    /// The groups.
    op: Groups,
}

/// The layouts of aggregate state: columnar where DataFusion has vectorised accumulators for
/// every aggregate and the input never retracts (per pane for a HOP emitting on window close,
/// updated in place for other windows emitting on close), else one boxed accumulator per
/// group.
enum Groups {
    Closing(Closing),
    Columnar(Columnar),
    Boxed(AggregateOperator),
}

/// Call `$f` on whichever layout `$g` holds.
macro_rules! each {
    ($g:expr, $v:ident => $e:expr) => {
        match $g {
            Groups::Closing($v) => $e,
            Groups::Columnar($v) => $e,
            Groups::Boxed($v) => $e,
        }
    };
}

impl Groups {
    fn new(spec: Arc<AggregateSpec>) -> Result<Self> {
        if let Some(c) = Closing::try_new(spec.clone())? {
            return Ok(Groups::Closing(c));
        }
        Ok(match Columnar::try_new(spec.clone())? {
            Some(c) => Groups::Columnar(c),
            None => Groups::Boxed(AggregateOperator::new(spec)?),
        })
    }

    fn spec(&self) -> &Arc<AggregateSpec> {
        each!(self, g => g.spec())
    }

    fn process(&mut self, changes: &Changes) -> Result<Option<Changes>> {
        each!(self, g => g.process(changes))
    }

    fn on_watermark(&mut self, wm: EventTime) -> Result<Option<Changes>> {
        each!(self, g => g.on_watermark(wm))
    }

    fn snapshot(&mut self) -> Result<datafusion::arrow::record_batch::RecordBatch> {
        each!(self, g => g.snapshot())
    }

    fn restore(&mut self, batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Result<()> {
        each!(self, g => g.restore(batches))
    }

    fn state_bytes(&self) -> usize {
        each!(self, g => g.state_bytes())
    }
}

impl Aggregate {
    /// An aggregate for `spec`. It forwards its input watermark unchanged:
    /// the view's output time (a window's delay) is applied where rows
    /// enter the view (`ViewOutput::time`).
    pub fn new(spec: Arc<AggregateSpec>) -> Result<Self> {
        Ok(Aggregate {
            op: Groups::new(spec)?,
        })
    }
}

impl StreamOperator for Aggregate {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        if let Some(c) = self.op.process(&changes)? {
            out.emit(c);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        out: &mut Output,
    ) -> Result<Option<EventTime>> {
        let Some(w) = ports.first().copied().flatten() else {
            return Ok(None);
        };
        if let Some(c) = self.op.on_watermark(w)? {
            out.emit(c);
        }
        Ok(Some(w))
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::single("groups", vec![self.op.snapshot()?]))
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        let spec = self.op.spec().clone();
        // State columns: the window end, then the group columns.
        let key_cols: Vec<usize> = spec.routing_groups().iter().map(|i| i + 1).collect();
        let mut mine = Vec::new();
        for b in state.take("groups") {
            let keys: Vec<ArrayRef> = key_cols.iter().map(|&c| b.column(c).clone()).collect();
            mine.push(ctx.partition.keep(&b, &keys)?);
        }
        self.op.restore(&mine)?;
        state.expect_consumed("aggregate")
    }

    fn explain(&self) -> String {
        let spec = self.op.spec();
        let keys: Vec<String> = spec.group_exprs.iter().map(|e| e.to_string()).collect();
        let aggs: Vec<String> = spec
            .aggs
            .iter()
            .map(|a| a.func.name().to_string())
            .collect();
        let window = match &spec.window {
            Some(_) if spec.panes.is_some() && matches!(self.op, Groups::Closing(_)) => {
                "windowed; state kept per pane, freed when the last window holding it closes"
            }
            Some(_) => "windowed; state freed when the watermark passes window_end",
            None => "not windowed; state kept per group",
        };
        let layout = match self.op {
            Groups::Closing(_) | Groups::Columnar(_) => "columnar",
            Groups::Boxed(_) if spec.aggs.is_empty() => "keys only",
            Groups::Boxed(_) => "an accumulator per group",
        };
        format!(
            "Aggregate: group=[{}], aggregates=[{}], emit {} ({window}; {layout})",
            keys.join(", "),
            aggs.join(", "),
            spec.emit.name().replace('_', " ")
        )
    }

    fn state_bytes(&self) -> usize {
        self.op.state_bytes()
    }

    fn standing(&mut self) -> Result<Vec<Changes>> {
        let spec = self.op.spec().clone();
        if spec.window.is_some() || spec.session.is_some() {
            // A closed window's row is in the view, not in the state.
            return Err(crate::EddyError::Internal(
                "a windowed aggregate cannot restate the windows it closed".into(),
            ));
        }
        /// Rows per batch of restated output.
        const CHUNK: usize = 8192;
        let rows = snapshot::standing(&spec, &self.op.snapshot()?)?;
        Ok((0..rows.num_rows())
            .step_by(CHUNK)
            .map(|at| Changes::inserts(rows.slice(at, CHUNK.min(rows.num_rows() - at))))
            .collect())
    }
}

/// Holds the rows of open SESSION and count windows until they complete,
/// then passes them on with their window's bounds.
pub struct Sessions {
    /// The open windows.
    buf: SessionBuffer,
    /// The expressions that route rows (a restored row's partition).
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The windows.
    spec: SessionSpec,
}

impl Sessions {
    /// A buffer in front of the aggregate `spec` (which must have a session).
    pub fn new(spec: &AggregateSpec) -> Result<Self> {
        let Some(session) = spec.session else {
            return Err(crate::EddyError::Internal(
                "a session buffer for an aggregate without sessions".into(),
            ));
        };
        Ok(Sessions {
            buf: SessionBuffer::new(spec, session, spec.max_groups)?,
            keys: routing_keys(spec),
            spec: session,
        })
    }
}

impl StreamOperator for Sessions {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        if let Some(c) = self.buf.insert(&changes)? {
            out.emit(c);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        out: &mut Output,
    ) -> Result<Option<EventTime>> {
        let w = ports.first().copied().flatten();
        // Closed sessions reach the aggregate before the watermark that emits them.
        if let Some(c) = w.map(|w| self.buf.close(w)).transpose()?.flatten() {
            out.emit(c);
        }
        Ok(w)
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::single("rows", self.buf.snapshot()))
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        let mine = ctx.keep_by(state.take("rows"), &self.keys)?;
        self.buf.restore(&mine)?;
        state.expect_consumed("session window")
    }

    fn explain(&self) -> String {
        match self.spec {
            SessionSpec {
                rows: Some(rows), ..
            } => format!("WindowBuffer: rows wait per key until {rows} of them complete a window"),
            SessionSpec { gap_ns, .. } => format!(
                "WindowBuffer: rows wait per key until their session (gap {}) closes",
                fmt_ns(gap_ns)
            ),
        }
    }

    fn state_bytes(&self) -> usize {
        self.buf.state_bytes()
    }
}
