//! The two-input join (interval, window, lookup and `state_ttl` joins; see
//! [`crate::operators::join`] for the state it keeps).

mod state;

pub use state::*;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::expressions::cast;
use datafusion::physical_expr::PhysicalExpr;

use super::{evaluate, OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::{EddyError, Result};
use crate::operators::window::fmt_ns;
use crate::types::{Changes, EventTime};

/// Part names of the two sides' rows in a checkpoint.
pub const SIDES: [&str; 2] = ["left", "right"];

/// The expressions that route side `s`'s rows to partitions: its equi-join
/// keys, cast to the left key's type where the sides differ, so equal keys
/// hash alike.
pub fn hash_keys(spec: &JoinSpec, s: usize) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
    spec.keys[s]
        .iter()
        .zip(&spec.keys[0])
        .map(|(e, left)| {
            let want = left.data_type(&spec.schemas[0])?;
            if e.data_type(&spec.schemas[s])? == want {
                Ok(e.clone())
            } else {
                Ok(cast(e.clone(), &spec.schemas[s], want)?)
            }
        })
        .collect()
}

/// A join of port 0 (left) and port 1 (right).
pub struct Join {
    /// The join's state machine.
    op: JoinOperator,
    /// Its spec.
    spec: Arc<JoinSpec>,
    /// The ports whose watermark the output follows (the stream's alone in
    /// a lookup join; sides without event time have none).
    timed: Vec<usize>,
    /// Processing time of the last tick (for `state_ttl`).
    now_ns: i64,
}

impl Join {
    /// A join for `spec`; `watermarked[s]` says whether side `s` has event time.
    pub fn new(spec: Arc<JoinSpec>, watermarked: [bool; 2]) -> Result<Self> {
        let timed = match spec.lookup {
            Some(t) => vec![1 - t],
            None => (0..2).filter(|&i| watermarked[i]).collect(),
        };
        Ok(Join {
            op: JoinOperator::new(spec.clone())?,
            spec,
            timed,
            now_ns: 0,
        })
    }
}

impl StreamOperator for Join {
    fn on_data(&mut self, port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(self.op.process(port, &changes, self.now_ns)?);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        port: usize,
        ports: &[Option<EventTime>],
        _out: &mut Output,
    ) -> Result<Option<EventTime>> {
        if let Some(t) = ports.get(port).copied().flatten() {
            self.op.on_watermark(port, t);
        }
        let timed: Vec<Option<EventTime>> = self.timed.iter().map(|&i| ports[i]).collect();
        Ok(super::merged(&timed))
    }

    fn on_tick(&mut self, now_ns: i64, _out: &mut Output) -> Result<()> {
        self.now_ns = now_ns;
        self.op.on_time(now_ns);
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        let mut s = OperatorState::default();
        for (i, part) in SIDES.iter().enumerate() {
            s.put(part, self.op.snapshot(i)?);
        }
        Ok(s)
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        for (i, part) in SIDES.iter().enumerate() {
            // A held row: the side's columns, then its expiry and match count.
            let keys = hash_keys(&self.spec, i)?;
            let schema = &self.spec.schemas[i];
            let width = schema.fields().len();
            let mut mine = Vec::new();
            for b in state.take(part) {
                if b.num_columns() != width + 2 {
                    return Err(EddyError::Internal(
                        "checkpointed join state does not match the join".into(),
                    ));
                }
                let rows = RecordBatch::try_new(schema.clone(), b.columns()[..width].to_vec())?;
                mine.push(ctx.partition.keep(&b, &evaluate(&keys, &rows)?)?);
            }
            self.op.restore(i, &mine)?;
            if let Some(w) = ctx.watermarks.get(i).copied().flatten() {
                self.op.on_watermark(i, w);
            }
        }
        state.expect_consumed("join")
    }

    fn explain(&self) -> String {
        let j = &self.spec;
        let keys: Vec<String> = j.keys[0]
            .iter()
            .zip(&j.keys[1])
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        let keep = |s: usize| match j.retention[s] {
            Retention::EventTime { col, after_ns } => format!(
                "until the {} watermark passes {} {} {}",
                ["right", "left"][s],
                j.schemas[s].field(col).name(),
                if after_ns < 0 { "-" } else { "+" },
                fmt_ns(after_ns.saturating_abs())
            ),
            Retention::Ttl { ns } => format!("for state_ttl {}", fmt_ns(ns)),
            Retention::UntilDeleted => "its current rows (a lookup table)".into(),
            Retention::NotKept => "nothing (probes only)".into(),
        };
        format!(
            "Join: {}{}, keys [{}]{}; left keeps {}; right keeps {}",
            match j.kind {
                JoinKind::Inner => "INNER",
                JoinKind::Left => "LEFT",
                JoinKind::Full => "FULL",
            },
            if j.lookup.is_some() { " LOOKUP" } else { "" },
            keys.join(", "),
            j.filter
                .as_ref()
                .map(|f| format!(", condition {f}"))
                .unwrap_or_default(),
            keep(0),
            keep(1)
        )
    }

    fn state_bytes(&self) -> usize {
        self.op.state_bytes()
    }
}
