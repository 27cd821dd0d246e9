//! Top-N per partition key: `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()`
//! `OVER (PARTITION BY … ORDER BY …)` filtered to `rank <= N` (also dedup:
//! `ROW_NUMBER() … = 1`).
//!
//! Per partition key the operator holds rows in order. For each batch it
//! takes the ranked top N of every partition the batch touches before and
//! after applying it, and emits the difference: a row that left the top N
//! or changed rank is retracted at its old rank, a row that entered or
//! moved is inserted at its new one. Over an append-only input a row below
//! the top N can never come back, so only the top N are kept; over an
//! updating input (a view whose rows are retracted) every row is kept, since
//! a retraction in the top N brings the next row up. The output has the
//! input's columns plus the rank (UInt64), like DataFusion's window node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use crate::error::{EddyError, Result};
use crate::types::Changes;

/// Which ranking function numbers the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankKind {
    /// 1, 2, 3, … (ties in arrival order).
    RowNumber,
    /// Ties share a rank; the next rank skips (1, 1, 3).
    Rank,
    /// Ties share a rank; the next rank follows (1, 1, 2).
    DenseRank,
}

/// A Top-N step, fixed at planning time.
#[derive(Debug)]
pub struct TopNSpec {
    /// The ranking function.
    pub kind: RankKind,
    /// `PARTITION BY` expressions over the input.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` expressions over the input, with direction and nulls order.
    pub order_by: Vec<PhysicalSortExpr>,
    /// Rows with a rank up to this are kept.
    pub n: usize,
    /// The input schema.
    pub input_schema: SchemaRef,
    /// The output schema: the input's columns, then the rank.
    pub output_schema: SchemaRef,
    /// Most partition keys held (and, over an updating input, most rows).
    pub max_keys: usize,
    /// When a `PARTITION BY` expression is a window bound: its index, whether
    /// it is `window_end` (else `window_start`) and the window size (ns). A
    /// partition is dropped once the watermark passes its window's end.
    pub window: Option<(usize, bool, i64)>,
    /// The input is updating: every row is kept, not just the top N.
    pub keep_all: bool,
}

/// Position of a row in its partition: order key, then arrival number (unique per row).
type Slot = (Box<[u8]>, u64);

/// A partition's ranked rows: (slot, rank).
type Ranks = Vec<(Slot, u64)>;

/// The rows of one partition key, and its window's end when windowed. Rows are kept in
/// Arrow's row format (the whole input row), not as one-row batches.
#[derive(Default)]
struct Partition {
    entries: BTreeMap<Slot, Box<[u8]>>,
    /// Full row → slots holding that row (to find a retracted row); only when every row is
    /// kept.
    by_row: HashMap<Box<[u8]>, Vec<Slot>, RandomState>,
    end: Option<i64>,
}

impl Partition {
    /// The ranked top N, in order: (slot, rank, row).
    fn ranked(&self, kind: RankKind, n: usize) -> impl Iterator<Item = (&Slot, u64, &[u8])> {
        let mut prev: Option<&[u8]> = None;
        let mut rank = 0u64;
        self.entries
            .iter()
            .enumerate()
            .map_while(move |(i, (slot, row))| {
                let tie = prev == Some(&slot.0[..]);
                rank = match kind {
                    RankKind::RowNumber => i as u64 + 1,
                    RankKind::Rank if tie => rank,
                    RankKind::Rank => i as u64 + 1,
                    RankKind::DenseRank if tie => rank,
                    RankKind::DenseRank => rank + 1,
                };
                if rank > n as u64 {
                    return None;
                }
                prev = Some(&slot.0);
                Some((slot, rank, &row[..]))
            })
    }
}

/// Bytes a held row costs: its row, its order key and the map entry.
fn row_bytes(row: &[u8], order: &[u8]) -> usize {
    row.len() + order.len() + std::mem::size_of::<(Slot, Box<[u8]>)>()
}

/// The operator (one per view; it runs in the view's front task).
pub struct TopNOperator {
    spec: Arc<TopNSpec>,
    partition_conv: Option<RowConverter>,
    order_conv: RowConverter,
    /// Whole input rows.
    row_conv: RowConverter,
    parts: HashMap<Box<[u8]>, Partition, RandomState>,
    seq: u64,
    rows: usize,
    bytes: usize,
}

impl TopNOperator {
    /// An operator for `spec` with no state.
    pub fn new(spec: Arc<TopNSpec>) -> Result<Self> {
        let types = |exprs: &mut dyn Iterator<Item = &Arc<dyn PhysicalExpr>>| {
            exprs
                .map(|e| Ok(e.data_type(&spec.input_schema)?))
                .collect::<Result<Vec<_>>>()
        };
        let part_types = types(&mut spec.partition_by.iter())?;
        let partition_conv = if part_types.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                part_types.into_iter().map(SortField::new).collect(),
            )?)
        };
        let order_types = types(&mut spec.order_by.iter().map(|s| &s.expr))?;
        let order_conv = RowConverter::new(
            order_types
                .into_iter()
                .zip(&spec.order_by)
                .map(|(t, s)| SortField::new_with_options(t, s.options))
                .collect(),
        )?;
        let row_conv = RowConverter::new(
            spec.input_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(TopNOperator {
            spec,
            partition_conv,
            order_conv,
            row_conv,
            parts: HashMap::default(),
            seq: 0,
            rows: 0,
            bytes: 0,
        })
    }

    /// Approximate bytes held.
    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Fold in changes; returns the changes to the ranked output.
    pub fn process(&mut self, changes: &Changes) -> Result<Changes> {
        if !self.spec.keep_all && !changes.is_append_only() {
            return Err(EddyError::Internal(
                "Top-N planned for an append-only input got a retraction".into(),
            ));
        }
        self.apply(changes, true)
    }

    fn apply(&mut self, changes: &Changes, emit: bool) -> Result<Changes> {
        let batch = &changes.batch;
        let n = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| -> Result<ArrayRef> {
            Ok(e.evaluate(batch)?.into_array(n)?)
        };
        let part_cols = self
            .spec
            .partition_by
            .iter()
            .map(eval)
            .collect::<Result<Vec<_>>>()?;
        let parts = match &self.partition_conv {
            Some(conv) => Some(conv.convert_columns(&part_cols)?),
            None => None,
        };
        let ends = match self.spec.window {
            Some((i, is_end, size)) => {
                let t = crate::operators::window::event_times_ns(&part_cols[i])?;
                Some((t, if is_end { 0 } else { size }))
            }
            None => None,
        };
        let order_cols = self
            .spec
            .order_by
            .iter()
            .map(|s| eval(&s.expr))
            .collect::<Result<Vec<_>>>()?;
        let orders = self.order_conv.convert_columns(&order_cols)?;
        let full = self.row_conv.convert_columns(batch.columns())?;
        // The top N of each touched partition before the batch (in first-touch order), and
        // the rows the batch removed (a retraction of one of them needs its values).
        let mut before: Vec<(&[u8], Ranks)> = Vec::new();
        let mut touched: HashSet<&[u8], RandomState> = HashSet::default();
        let mut removed: HashMap<u64, Box<[u8]>, RandomState> = HashMap::default();
        let (kind, limit, keep_all) = (self.spec.kind, self.spec.n, self.spec.keep_all);
        for i in 0..n {
            let key: &[u8] = parts.as_ref().map_or(&[][..], |p| p.row(i).data());
            if !self.parts.contains_key(key) {
                if self.parts.len() >= self.spec.max_keys {
                    return Err(EddyError::LimitExceeded(format!(
                        "Top-N holds more than {} partition keys",
                        self.spec.max_keys
                    )));
                }
                self.parts.insert(key.into(), Partition::default());
            }
            let Some(part) = self.parts.get_mut(key) else {
                return Err(EddyError::Internal("Top-N partition vanished".into()));
            };
            if emit && touched.insert(key) {
                let top = part.ranked(kind, limit).map(|(s, r, _)| (s.clone(), r));
                before.push((key, top.collect()));
            }
            if let Some((t, add)) = &ends {
                part.end = Some(t.value(i).saturating_add(*add));
            }
            let row = full.row(i).data();
            if changes.weight(i) > 0 {
                if keep_all && self.rows >= self.spec.max_keys {
                    return Err(EddyError::LimitExceeded(format!(
                        "Top-N over an updating input holds more than {} rows",
                        self.spec.max_keys
                    )));
                }
                self.seq += 1;
                let order: Box<[u8]> = orders.row(i).data().into();
                self.bytes += row_bytes(row, &order);
                self.rows += 1;
                let slot = (order, self.seq);
                if keep_all {
                    self.bytes += row.len();
                    part.by_row
                        .entry(row.into())
                        .or_default()
                        .push(slot.clone());
                }
                part.entries.insert(slot, row.into());
            } else if keep_all {
                // Retract one copy of an identical row (absent: nothing to do).
                let slot = part.by_row.get_mut(row).and_then(|v| v.pop());
                if part.by_row.get(row).is_some_and(|v| v.is_empty()) {
                    part.by_row.remove(row);
                    self.bytes = self.bytes.saturating_sub(row.len());
                }
                if let Some((slot, held)) =
                    slot.and_then(|s| part.entries.remove(&s).map(|r| (s, r)))
                {
                    self.bytes = self.bytes.saturating_sub(row_bytes(&held, &slot.0));
                    self.rows -= 1;
                    if emit {
                        removed.insert(slot.1, held);
                    }
                }
            }
            if !keep_all {
                // Append-only: a row below the top N never comes back.
                let kept = part.ranked(kind, limit).count();
                while part.entries.len() > kept {
                    if let Some((slot, held)) = part.entries.pop_last() {
                        self.bytes = self.bytes.saturating_sub(row_bytes(&held, &slot.0));
                        self.rows -= 1;
                        if emit {
                            removed.insert(slot.1, held);
                        }
                    }
                }
            }
        }
        let mut out: Vec<(&[u8], u64, i64)> = Vec::new();
        for (key, old) in &before {
            let part = self.parts.get(*key);
            let new: Vec<(&Slot, u64, &[u8])> = part
                .map(|p| p.ranked(kind, limit).collect())
                .unwrap_or_default();
            for (slot, rank) in old {
                if !new.iter().any(|(s, r, _)| *s == slot && r == rank) {
                    let row = part
                        .and_then(|p| p.entries.get(slot))
                        .or_else(|| removed.get(&slot.1))
                        .ok_or_else(|| EddyError::Internal("a ranked row vanished".into()))?;
                    out.push((&row[..], *rank, -1));
                }
            }
            for (slot, rank, row) in &new {
                if !old.iter().any(|(s, r)| s == *slot && r == rank) {
                    out.push((row, *rank, 1));
                }
            }
        }
        self.output(&out)
    }

    /// Rows (row format) with their rank appended, and their weights.
    fn output(&self, rows: &[(&[u8], u64, i64)]) -> Result<Changes> {
        if rows.is_empty() {
            return Ok(Changes::inserts(RecordBatch::new_empty(
                self.spec.output_schema.clone(),
            )));
        }
        let parser = self.row_conv.parser();
        let mut cols = self
            .row_conv
            .convert_rows(rows.iter().map(|r| parser.parse(r.0)))?;
        cols.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.1),
        )));
        let batch = RecordBatch::try_new(self.spec.output_schema.clone(), cols)?;
        let weights = Int64Array::from_iter_values(rows.iter().map(|r| r.2));
        Ok(Changes::with_weights(batch, weights))
    }

    /// The rows held, in order per partition key (input schema).
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let parser = self.row_conv.parser();
        let all: Vec<_> = self
            .parts
            .values()
            .flat_map(|p| p.entries.values())
            .map(|r| parser.parse(r))
            .collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let cols = self.row_conv.convert_rows(all)?;
        Ok(vec![RecordBatch::try_new(
            self.spec.input_schema.clone(),
            cols,
        )?])
    }

    /// The watermark passed `w`: drop the partitions of windows that ended
    /// (their ranked rows stay in the view; no later row can change them).
    pub fn on_watermark(&mut self, w: i64) {
        if self.spec.window.is_none() {
            return;
        }
        let (mut freed, mut rows) = (0, 0);
        self.parts.retain(|_, p| {
            let keep = p.end.is_none_or(|end| end > w);
            if !keep {
                rows += p.entries.len();
                freed += p
                    .entries
                    .iter()
                    .map(|(slot, row)| row_bytes(row, &slot.0))
                    .sum::<usize>()
                    + p.by_row.keys().map(|k| k.len()).sum::<usize>();
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        self.rows = self.rows.saturating_sub(rows);
    }

    /// Hold checkpointed rows again (the view already has their ranked rows).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for b in batches {
            self.apply(&Changes::inserts(b.clone()), false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, UInt64Type};
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    const S: i64 = 1_000_000_000;

    /// Top 2 by v DESC per window_start (the input's event time).
    fn op() -> (TopNOperator, SchemaRef) {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let input = Arc::new(Schema::new(vec![
            Field::new("window_start", ts, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("rn", DataType::UInt64, false));
        let spec = TopNSpec {
            partition_by: vec![Arc::new(Column::new("window_start", 0))],
            order_by: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 1)),
                options: datafusion::arrow::compute::SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            }],
            n: 2,
            input_schema: input.clone(),
            output_schema: Arc::new(Schema::new(fields)),
            max_keys: 10,
            window: Some((0, false, 1)),
            kind: RankKind::RowNumber,
            keep_all: false,
        };
        (TopNOperator::new(Arc::new(spec)).unwrap(), input)
    }

    fn rows(schema: &SchemaRef, rows: &[(i64, i64)]) -> Changes {
        let ts = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.0 * S));
        let v = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        Changes::inserts(
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ts), Arc::new(v)]).unwrap(),
        )
    }

    /// (v, rank, weight) of the output.
    fn out(c: &Changes) -> Vec<(i64, u64, i64)> {
        let v = c
            .batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let rn = c.batch.column(2).as_primitive::<UInt64Type>();
        (0..c.num_rows())
            .map(|i| (v.value(i), rn.value(i), c.weight(i)))
            .collect()
    }

    #[test]
    fn entering_rows_shift_ranks_and_push_the_last_out() {
        let (mut op, schema) = op();
        assert_eq!(
            out(&op.process(&rows(&schema, &[(10, 5), (10, 3)])).unwrap()),
            vec![(5, 1, 1), (3, 2, 1)]
        );
        // 9 enters at rank 1, 5 moves to 2, 3 leaves (4 came and went within the batch).
        assert_eq!(
            out(&op
                .process(&rows(&schema, &[(10, 4), (10, 9), (10, 1)]))
                .unwrap()),
            vec![(5, 1, -1), (3, 2, -1), (9, 1, 1), (5, 2, 1)]
        );
        let held = op.snapshot().unwrap();
        assert_eq!(held[0].num_rows(), 2);
        // Rows of window_start 10 s may still come at watermark 10 s; past it the partition goes.
        assert!(op.state_bytes() > 0);
        op.on_watermark(10 * S);
        assert!(op.state_bytes() > 0);
        op.on_watermark(10 * S + 1);
        assert_eq!(op.state_bytes(), 0);
        assert!(op.snapshot().unwrap().is_empty());
    }
}
