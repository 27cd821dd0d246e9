//! The two-input join (interval, window, lookup and `state_ttl` joins; see
//! [`crate::operators::join`] for the state it keeps).

mod state;

pub use state::*;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::expressions::cast;
use datafusion::physical_expr::PhysicalExpr;

use super::{evaluate, OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::{EddyError, Result};
use crate::operators::window::fmt_ns;
use crate::types::{Changes, EventTime};

/// Part names of the two sides' rows in a checkpoint.
pub const SIDES: [&str; 2] = ["left", "right"];

/// Part name of the sides' `state_ttl` (ns) when the checkpoint was taken.
const TTL_PART: &str = "ttl";

/// One row: each side's `state_ttl` in ns, NULL for a side kept otherwise;
/// none when neither side is kept by `state_ttl`.
fn ttl_batch(retention: &[Retention; 2]) -> Result<Option<RecordBatch>> {
    let ttl = |r: &Retention| match r {
        Retention::Ttl { ns } => Some(*ns),
        _ => None,
    };
    if retention.iter().all(|r| ttl(r).is_none()) {
        return Ok(None);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(SIDES[0], DataType::Int64, true),
        Field::new(SIDES[1], DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = retention
        .iter()
        .map(|r| Arc::new(Int64Array::from(vec![ttl(r)])) as ArrayRef)
        .collect();
    Ok(Some(RecordBatch::try_new(schema, columns)?))
}

/// The sides' `state_ttl` at the checkpoint (unknown in checkpoints written
/// before it was recorded).
fn saved_ttls(batches: &[RecordBatch]) -> [Option<i64>; 2] {
    let Some(b) = batches
        .iter()
        .find(|b| b.num_rows() > 0 && b.num_columns() == 2)
    else {
        return [None, None];
    };
    let side = |i: usize| {
        b.column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .filter(|a| a.is_valid(0))
            .map(|a| a.value(0))
    };
    [side(0), side(1)]
}

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
        if let Some(ttl) = ttl_batch(&self.spec.retention)? {
            s.put(TTL_PART, vec![ttl]);
        }
        Ok(s)
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        let saved_ttl = saved_ttls(&state.take(TTL_PART));
        for (i, part) in SIDES.iter().enumerate() {
            // A `state_ttl` changed since the checkpoint (ALTER MATERIALIZED VIEW … SET):
            // a held row now expires the new TTL after it arrived.
            let shift = match (saved_ttl[i], self.spec.retention[i]) {
                (Some(old), Retention::Ttl { ns }) => ns.saturating_sub(old),
                _ => 0,
            };
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
            self.op.restore(i, &mine, shift)?;
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
                JoinKind::Semi => "SEMI",
                JoinKind::Anti => "ANTI",
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::operators::{route, Partition};

    const S: i64 = 1_000_000_000;

    fn side() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]))
    }

    /// `l JOIN r ON l.k = r.k`, each side kept until the other's watermark
    /// passes its ts + 10 s.
    fn spec() -> Arc<JoinSpec> {
        let fields: Vec<Field> = [side(), side()]
            .iter()
            .flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone()))
            .collect();
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let keep = Retention::EventTime {
            col: 1,
            after_ns: 10 * S,
        };
        Arc::new(JoinSpec {
            kind: JoinKind::Inner,
            keys: [vec![key.clone()], vec![key]],
            filter: None,
            schemas: [side(), side()],
            output_schema: Arc::new(Schema::new(fields)),
            retention: [keep, keep],
            lookup: None,
            max_rows: 1000,
        })
    }

    fn rows(keys: impl Iterator<Item = i64>) -> Changes {
        let keys: Vec<i64> = keys.collect();
        let ts = TimestampNanosecondArray::from_iter_values(keys.iter().map(|_| S));
        let b = RecordBatch::try_new(side(), vec![Arc::new(Int64Array::from(keys)), Arc::new(ts)])
            .unwrap();
        Changes::inserts(b)
    }

    fn rows_out(op: &mut Join, port: usize, c: Changes) -> usize {
        let mut out = Output::default();
        op.on_data(port, c, &mut out).unwrap();
        out.take().0.iter().map(Changes::num_rows).sum()
    }

    /// The output watermark waits for both sides and follows the smaller.
    #[test]
    fn forwards_the_smaller_side_watermark() {
        let mut op = Join::new(spec(), [true, true]).unwrap();
        let mut out = Output::default();
        assert_eq!(
            op.on_watermark(0, &[Some(5), None], &mut out).unwrap(),
            None
        );
        assert_eq!(
            op.on_watermark(1, &[Some(5), Some(3)], &mut out).unwrap(),
            Some(3)
        );
        // A side without event time does not hold the output back.
        let mut op = Join::new(spec(), [true, false]).unwrap();
        assert_eq!(
            op.on_watermark(0, &[Some(5), None], &mut out).unwrap(),
            Some(5)
        );
    }

    /// Held rows checkpointed on one partition and restored on two: each
    /// keeps the keys the exchange routes to it, and nothing is lost.
    #[test]
    fn restore_re_splits_held_rows_by_key() {
        let mut one = Join::new(spec(), [true, true]).unwrap();
        assert_eq!(rows_out(&mut one, 0, rows(0..40)), 0);
        let state = one.checkpoint().unwrap();
        assert_eq!(state.parts["left"][0].num_rows(), 40);
        let mut parts: Vec<Join> = (0..2)
            .map(|index| {
                let mut op = Join::new(spec(), [true, true]).unwrap();
                let ctx = RestoreContext {
                    partition: Partition { index, count: 2 },
                    watermarks: &[None, None],
                };
                op.restore(state.clone(), &ctx).unwrap();
                op
            })
            .collect();
        let held: Vec<usize> = parts.iter().map(|p| p.op.rows_held()[0]).collect();
        assert_eq!(held.iter().sum::<usize>(), 40, "{held:?}");
        assert!(held.iter().all(|h| *h > 0), "{held:?}");
        // A right row meets its left row in the partition the exchange sends it to.
        let keys = hash_keys(&spec(), 1).unwrap();
        for k in 0..40 {
            let probe = rows(std::iter::once(k));
            let routed = route(&evaluate(&keys, &probe.batch).unwrap(), 1, 2).unwrap()[0];
            assert_eq!(rows_out(&mut parts[routed], 1, probe.clone()), 1, "key {k}");
            assert_eq!(rows_out(&mut parts[1 - routed], 1, probe), 0, "key {k}");
        }
    }

    fn ttl_spec(secs: i64) -> Arc<JoinSpec> {
        let base = spec();
        let keep = Retention::Ttl { ns: secs * S };
        Arc::new(JoinSpec {
            kind: base.kind,
            keys: base.keys.clone(),
            filter: None,
            schemas: base.schemas.clone(),
            output_schema: base.output_schema.clone(),
            retention: [keep, keep],
            lookup: None,
            max_rows: 1000,
        })
    }

    /// A `state_ttl` changed between checkpoint and restore (ALTER … SET):
    /// held rows expire the new TTL after they arrived.
    #[test]
    fn restore_applies_a_changed_state_ttl() {
        let tick = |op: &mut Join, now: i64| op.on_tick(now, &mut Output::default()).unwrap();
        let mut ten = Join::new(ttl_spec(10), [true, true]).unwrap();
        tick(&mut ten, 100 * S);
        assert_eq!(rows_out(&mut ten, 0, rows(0..3)), 0);
        let state = ten.checkpoint().unwrap();
        assert!(state.parts.contains_key(TTL_PART));
        let ctx = RestoreContext {
            partition: Partition::SINGLE,
            watermarks: &[None, None],
        };
        for (secs, kept_at_115) in [(10, false), (20, true), (5, false), (16, true)] {
            let mut op = Join::new(ttl_spec(secs), [true, true]).unwrap();
            op.restore(state.clone(), &ctx).unwrap();
            tick(&mut op, 104 * S);
            assert_eq!(op.op.rows_held()[0], 3, "ttl {secs}");
            tick(&mut op, 115 * S);
            assert_eq!(op.op.rows_held()[0] == 3, kept_at_115, "ttl {secs}");
        }
        // A checkpoint from before the TTL was recorded restores as it was.
        let mut old = state.clone();
        old.take(TTL_PART);
        let mut op = Join::new(ttl_spec(20), [true, true]).unwrap();
        op.restore(old, &ctx).unwrap();
        tick(&mut op, 115 * S);
        assert_eq!(op.op.rows_held()[0], 0);
    }
}
