//! Top-N: the rows ranked up to N per partition key (see
//! [`crate::operators::top_n`]).

mod ranking;

pub use ranking::*;

use std::sync::Arc;

use super::{evaluate, OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::Result;
use crate::types::{Changes, EventTime};

/// A Top-N over one input.
pub struct TopN {
    /// The ranking state machine.
    op: TopNOperator,
    /// Its spec.
    spec: Arc<TopNSpec>,
}

impl TopN {
    /// A Top-N for `spec`.
    pub fn new(spec: Arc<TopNSpec>) -> Result<Self> {
        Ok(TopN {
            op: TopNOperator::new(spec.clone())?,
            spec,
        })
    }
}

impl StreamOperator for TopN {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(self.op.process(&changes)?);
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
            self.op.on_watermark(w);
        }
        Ok(w)
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::single("rows", self.op.snapshot()?))
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        // Rows are held in the input's shape: a partition keeps its keys' rows.
        let mut mine = Vec::new();
        for b in state.take("rows") {
            let keys = evaluate(&self.spec.partition_by, &b)?;
            mine.push(ctx.partition.keep(&b, &keys)?);
        }
        self.op.restore(&mine)?;
        if let Some(w) = ctx.watermarks.first().copied().flatten() {
            self.op.on_watermark(w);
        }
        state.expect_consumed("Top-N")
    }

    fn explain(&self) -> String {
        let t = &self.spec;
        let list = |v: Vec<String>| v.join(", ");
        let what = match t.kind {
            RankKind::RowNumber => format!("{} rows", t.n),
            RankKind::Rank => format!("rank() <= {}", t.n),
            RankKind::DenseRank => format!("dense_rank() <= {}", t.n),
        };
        format!(
            "TopN: {what} per [{}] by [{}], with their rank; state {}",
            list(t.partition_by.iter().map(|e| e.to_string()).collect()),
            list(t.order_by.iter().map(|e| e.to_string()).collect()),
            if t.keep_all {
                "every row (the input is updating)"
            } else {
                "the top rows per key"
            }
        )
    }

    fn state_bytes(&self) -> usize {
        self.op.state_bytes()
    }
}
