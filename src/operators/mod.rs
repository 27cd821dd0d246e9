//! The operator contract: what every streaming operator implements, and the
//! plan-time spec beside it.
//!
//! An operator is a state machine over one view's rows. The runtime
//! (`crate::runtime`) owns everything around it — channels, tasks, barrier
//! alignment, watermark merging, hash exchange, checkpoint files — and calls
//! the operator's methods in the order documented on [`StreamOperator`]. An
//! operator never sees channels, tasks, the catalog or views: what it needs
//! to resume after a crash goes through [`StreamOperator::checkpoint`] and
//! comes back through [`StreamOperator::restore`].
//!
//! ```text
//!            port 0 ──► ┌──────────────┐
//!   changes, watermarks │   operator   │ ──► changes (Output), then the watermark it forwards
//!            port 1 ──► └──────────────┘
//!         barrier ──► checkpoint() ──► OperatorState (Arrow batches by part name)
//! ```

pub mod aggregate;
pub mod join;
pub mod over;
pub mod steps;
pub mod temporal;
pub mod top_n;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{create_hashes, RandomState};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::types::{Changes, EventTime};

/// A streaming operator. One instance per partition of its node; the runtime
/// calls it from one task at a time, never concurrently.
///
/// Invariants the runtime guarantees to every operator:
/// - per port, watermarks only advance, and no row that arrived before a
///   watermark on that port is delivered after it;
/// - a barrier is presented (as [`checkpoint`](Self::checkpoint)) only once
///   every input of the node has delivered it, so the state captured holds
///   exactly the rows all inputs published before it;
/// - after [`restore`](Self::restore), input resumes right after the barrier
///   the state was captured at.
///
/// What the operator promises in return: rows it emits for an input go out
/// before anything the runtime sends after the call (the watermark it
/// returns, the next barrier); it returns errors instead of panicking (a
/// panic fails the view, never the server); its state stays within the
/// bound its spec was given, failing with [`crate::EddyError::LimitExceeded`]
/// when it would not.
pub trait StreamOperator: Send {
    /// Row changes (weights +1 / −1) arrived on input `port`. Emit the
    /// resulting output changes into `out`, and count rows dropped as late
    /// with [`Output::late`]. Called with non-empty batches only.
    fn on_data(&mut self, port: usize, changes: Changes, out: &mut Output) -> Result<()>;

    /// The watermark of input `port` advanced; `ports` holds every port's
    /// watermark after the change (`None`: no watermark yet). Emit rows the
    /// watermark completes (closed windows, expired matches) into `out`;
    /// return the watermark to forward downstream, in output time.
    ///
    /// The default forwards the minimum over all ports once every port has
    /// one (one input: its watermark), which suits operators that do not
    /// change event time. The runtime drops a forwarded watermark that does
    /// not advance past the last one, so returning the same value is harmless.
    fn on_watermark(
        &mut self,
        port: usize,
        ports: &[Option<EventTime>],
        out: &mut Output,
    ) -> Result<Option<EventTime>> {
        let _ = (port, out);
        Ok(merged(ports))
    }

    /// Processing time is now `now_ns` (ns since the Unix epoch). Called
    /// before each input message and on the runtime's periodic tick; used by
    /// operators that expire state by wall-clock time (`state_ttl`).
    fn on_tick(&mut self, now_ns: i64, out: &mut Output) -> Result<()> {
        let _ = (now_ns, out);
        Ok(())
    }

    /// A barrier passed every input: return the state to restore from, as
    /// Arrow batches under part names of the operator's choosing. Must not
    /// change what the operator holds (the runtime goes on feeding it).
    /// Stateless operators keep the default (no state).
    fn checkpoint(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::default())
    }

    /// Load checkpointed state into a new instance, before any input. `state`
    /// holds the parts of *every* partition of the node as they were
    /// captured; an operator fed by hash keeps the rows that belong to
    /// `ctx.partition` (see [`Partition::keep`]), so a restore with another
    /// partition count re-splits state by key.
    fn restore(&mut self, state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        let _ = ctx;
        if state.is_empty() {
            Ok(())
        } else {
            Err(crate::EddyError::Internal(format!(
                "checkpointed state ({}) for a stateless operator ({})",
                state.part_names().join(", "),
                self.explain()
            )))
        }
    }

    /// One line for EXPLAIN: the operator's name and its parameters.
    fn explain(&self) -> String;

    /// Approximate bytes of state held (for `eddy.views.state_bytes`).
    fn state_bytes(&self) -> usize {
        0
    }

    /// Every output row that still stands (emitted and not taken back), as
    /// inserts: what operators that replace this one's consumers must see
    /// first to take over from its state (`CREATE OR REPLACE MATERIALIZED
    /// VIEW` keeping this operator). Only operators whose spec says
    /// [`OperatorSpec::restates`] implement it.
    fn standing(&mut self) -> Result<Vec<Changes>> {
        Err(crate::EddyError::Internal(format!(
            "{} cannot restate its output",
            self.explain()
        )))
    }
}

/// The values of `exprs` over `batch`, one array each.
pub fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let rows = batch.num_rows();
    Ok(exprs
        .iter()
        .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
        .collect::<datafusion::error::Result<_>>()?)
}

/// The minimum over `ports` once every port has a watermark.
pub fn merged(ports: &[Option<EventTime>]) -> Option<EventTime> {
    ports
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|w| w.into_iter().min())
}

/// What one call of an operator produced: output changes in order, and the
/// number of input rows it dropped as late.
#[derive(Debug, Default)]
pub struct Output {
    changes: Vec<Changes>,
    late_rows: u64,
    watermark: Option<EventTime>,
}

impl Output {
    /// Emit output changes (empty batches are skipped).
    pub fn emit(&mut self, changes: Changes) {
        if changes.num_rows() > 0 {
            self.changes.push(changes);
        }
    }

    /// Count `n` input rows dropped because they were late.
    pub fn late(&mut self, n: u64) {
        self.late_rows += n;
    }

    /// From [`StreamOperator::on_tick`]: advance the output watermark to
    /// `t` (an operator whose output time is processing time).
    pub fn advance_watermark(&mut self, t: EventTime) {
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
    }

    /// Take the watermark set by [`Output::advance_watermark`] (for the runtime).
    pub fn take_watermark(&mut self) -> Option<EventTime> {
        self.watermark.take()
    }

    /// Take what was emitted (for the runtime).
    pub fn take(&mut self) -> (Vec<Changes>, u64) {
        (
            std::mem::take(&mut self.changes),
            std::mem::take(&mut self.late_rows),
        )
    }
}

/// An operator's checkpointed state: Arrow batches under part names (a
/// join keeps `left` and `right`, an aggregate `groups`). Written as one
/// Arrow IPC file per part and partition.
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    /// Batches by part name.
    pub parts: BTreeMap<String, Vec<RecordBatch>>,
}

impl OperatorState {
    /// State of one part.
    pub fn single(part: &str, batches: Vec<RecordBatch>) -> Self {
        let mut s = OperatorState::default();
        s.put(part, batches);
        s
    }

    /// Add batches under `part` (nothing when there are none).
    pub fn put(&mut self, part: &str, batches: Vec<RecordBatch>) {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if !batches.is_empty() {
            self.parts
                .entry(part.to_string())
                .or_default()
                .extend(batches);
        }
    }

    /// Take the batches of `part` (empty when absent).
    pub fn take(&mut self, part: &str) -> Vec<RecordBatch> {
        self.parts.remove(part).unwrap_or_default()
    }

    /// True when no part holds a row.
    pub fn is_empty(&self) -> bool {
        self.parts
            .values()
            .all(|b| b.iter().all(|b| b.num_rows() == 0))
    }

    /// The part names.
    pub fn part_names(&self) -> Vec<String> {
        self.parts.keys().cloned().collect()
    }

    /// Add every part of `other`.
    pub fn extend(&mut self, other: OperatorState) {
        for (k, v) in other.parts {
            self.put(&k, v);
        }
    }

    /// Fail unless every part was taken (state the operator does not know
    /// means the plan changed under the checkpoint).
    pub fn expect_consumed(&self, what: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        Err(crate::EddyError::Internal(format!(
            "checkpointed state parts {} are not known to the {what} operator",
            self.part_names().join(", ")
        )))
    }
}

/// What [`StreamOperator::restore`] is told besides the state.
#[derive(Debug, Clone, Copy)]
pub struct RestoreContext<'a> {
    /// Which partition this instance is.
    pub partition: Partition,
    /// Each input port's watermark at the checkpoint.
    pub watermarks: &'a [Option<EventTime>],
}

impl RestoreContext<'_> {
    /// The rows of `batches` that belong to this partition, keyed by
    /// `keys` evaluated over each batch (the rows' own shape).
    pub fn keep_by(
        &self,
        batches: Vec<RecordBatch>,
        keys: &[Arc<dyn PhysicalExpr>],
    ) -> Result<Vec<RecordBatch>> {
        batches
            .iter()
            .map(|b| self.partition.keep(b, &evaluate(keys, b)?))
            .collect()
    }
}

/// One partition of a node that runs on several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This partition, `0..count`.
    pub index: usize,
    /// How many there are.
    pub count: usize,
}

impl Partition {
    /// The only partition of a node that runs on one.
    pub const SINGLE: Partition = Partition { index: 0, count: 1 };

    /// The rows of `batch` whose `keys` hash to this partition (the same
    /// routing as the hash exchange, so state follows its rows when the
    /// partition count changes).
    pub fn keep(&self, batch: &RecordBatch, keys: &[ArrayRef]) -> Result<RecordBatch> {
        if self.count <= 1 {
            return Ok(batch.clone());
        }
        if keys.is_empty() {
            // No key: every row is routed to the first partition.
            return Ok(if self.index == 0 {
                batch.clone()
            } else {
                batch.slice(0, 0)
            });
        }
        let mask: BooleanArray = route(keys, batch.num_rows(), self.count)?
            .into_iter()
            .map(|p| Some(p == self.index))
            .collect();
        Ok(filter_record_batch(batch, &mask)?)
    }
}

/// Seed of the hash that routes keys to partitions (fixed: checkpointed
/// state is routed the same way after a restart).
pub const PARTITION_SEED: u64 = 0x5eed;

/// The partition, out of `count`, of each of `rows` rows keyed by `keys`.
pub fn route(keys: &[ArrayRef], rows: usize, count: usize) -> Result<Vec<usize>> {
    if count <= 1 || keys.is_empty() {
        return Ok(vec![0; rows]);
    }
    let mut hashes = vec![0u64; rows];
    create_hashes(keys, &RandomState::with_seed(PARTITION_SEED), &mut hashes)?;
    Ok(hashes
        .iter()
        .map(|h| (*h % count as u64) as usize)
        .collect())
}

/// How a node's input port must be fed.
#[derive(Debug, Clone)]
pub enum Distribution {
    /// Any partition may see any row (stateless operators).
    Any,
    /// Rows with equal values of these expressions (over the port's rows)
    /// meet in one partition.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// Every row goes to one partition.
    Single,
}

/// How an operator's output event time relates to its input's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMapping {
    /// Output rows keep their input's event time.
    Same,
    /// Output watermark = input watermark − this many ns (a windowed
    /// aggregate: every later window starts above it).
    Delayed(i64),
}

/// An operator's plan-time contract: the planner and EXPLAIN read this,
/// never the operator's kind.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// How each input port must be fed.
    pub inputs: Vec<Distribution>,
    /// Whether the operator accepts retractions (−1 rows) on its inputs.
    pub accepts_retractions: bool,
    /// Whether its output may hold retractions.
    pub emits_retractions: bool,
    /// Input time → output time.
    pub time: TimeMapping,
    /// Whether its state holds every output row that still stands (a
    /// grouped aggregate without windows), so that
    /// [`StreamOperator::standing`] can restate them.
    pub restates: bool,
}

impl OperatorSpec {
    /// A one-input stateless operator: any feeding, retractions pass
    /// through, event time kept.
    pub fn stateless() -> Self {
        OperatorSpec {
            inputs: vec![Distribution::Any],
            accepts_retractions: true,
            emits_retractions: true,
            time: TimeMapping::Same,
            restates: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(keys: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(keys))]).unwrap()
    }

    /// Every row lands in exactly one partition, and the same key in the same one.
    #[test]
    fn keep_splits_rows_by_key_without_loss() {
        let b = batch((0..100).map(|i| i % 17).collect());
        let keys = vec![b.column(0).clone()];
        let parts: Vec<RecordBatch> = (0..3)
            .map(|index| Partition { index, count: 3 }.keep(&b, &keys).unwrap())
            .collect();
        assert_eq!(parts.iter().map(|p| p.num_rows()).sum::<usize>(), 100);
        let owner = |k: i64| {
            parts
                .iter()
                .position(|p| {
                    let c = p.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    c.values().contains(&k)
                })
                .unwrap()
        };
        let routed = route(&keys, 100, 3).unwrap();
        for (i, p) in routed.iter().enumerate() {
            assert_eq!(*p, owner((i % 17) as i64));
        }
        assert!(parts.iter().filter(|p| p.num_rows() > 0).count() > 1);
        let all = Partition::SINGLE.keep(&b, &keys).unwrap();
        assert_eq!(all.column(0).len(), 100);
        // Without a key, rows go where the exchange sends them: the first partition.
        let first = Partition { index: 0, count: 3 }.keep(&b, &[]).unwrap();
        let second = Partition { index: 1, count: 3 }.keep(&b, &[]).unwrap();
        assert_eq!((first.num_rows(), second.num_rows()), (100, 0));
        assert_eq!(route(&[], 2, 3).unwrap(), [0, 0]);
    }

    #[test]
    fn merged_waits_for_every_port() {
        assert_eq!(merged(&[Some(5), None]), None);
        assert_eq!(merged(&[Some(5), Some(3)]), Some(3));
        assert_eq!(merged(&[]), None);
    }

    #[test]
    fn state_parts_skip_empty_batches_and_report_leftovers() {
        let mut s = OperatorState::single("rows", vec![batch(vec![])]);
        assert!(s.is_empty());
        s.put("rows", vec![batch(vec![1])]);
        assert!(s.expect_consumed("test").is_err());
        assert_eq!(s.take("rows").len(), 1);
        assert!(s.expect_consumed("test").is_ok());
    }
}
