//! Top-N per partition key: `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)`
//! filtered to `rn <= N` (also dedup: `rn = 1`).
//!
//! For each partition key the operator keeps the N best rows in order (an
//! append-only input can never bring back a row that fell out, so that is
//! all the state there is). A row that enters the top N is inserted with its
//! rank, every row it pushes down is retracted at its old rank and inserted
//! at the new one, and the row pushed out is retracted. The output has the
//! input's columns plus the rank (UInt64), like DataFusion's window node.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use super::message::Changes;
use crate::error::{EddyError, Result};

/// A Top-N step, fixed at planning time.
#[derive(Debug)]
pub struct TopNSpec {
    /// `PARTITION BY` expressions over the input.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` expressions over the input, with direction and nulls order.
    pub order_by: Vec<PhysicalSortExpr>,
    /// Rows kept per partition key.
    pub n: usize,
    /// The input schema.
    pub input_schema: SchemaRef,
    /// The output schema: the input's columns, then the rank.
    pub output_schema: SchemaRef,
    /// Most partition keys held.
    pub max_keys: usize,
    /// When a `PARTITION BY` expression is a window bound: its index, whether
    /// it is `window_end` (else `window_start`) and the window size (ns). A
    /// partition is dropped once the watermark passes its window's end.
    pub window: Option<(usize, bool, i64)>,
}

/// The rows of one partition key, and its window's end when windowed.
#[derive(Default)]
struct Partition {
    entries: Vec<Entry>,
    end: Option<i64>,
}

struct Entry {
    /// Row-format sort key (comparable bytes), then arrival number as a tiebreak.
    order: Box<[u8]>,
    seq: u64,
    row: RecordBatch,
}

/// The operator (one per view; it runs in the view's front task).
pub struct TopNOperator {
    spec: Arc<TopNSpec>,
    partition_conv: Option<RowConverter>,
    order_conv: RowConverter,
    parts: HashMap<Box<[u8]>, Partition>,
    seq: u64,
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
        Ok(TopNOperator {
            spec,
            partition_conv,
            order_conv,
            parts: HashMap::new(),
            seq: 0,
            bytes: 0,
        })
    }

    /// Approximate bytes held.
    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Fold in append-only rows; returns the changes to the ranked output.
    pub fn process(&mut self, changes: &Changes) -> Result<Changes> {
        if !changes.is_append_only() {
            return Err(EddyError::Internal(
                "Top-N over retracted rows is not supported".into(),
            ));
        }
        self.insert(&changes.batch, true)
    }

    fn insert(&mut self, batch: &RecordBatch, emit: bool) -> Result<Changes> {
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
                let t = super::window::event_times_ns(&part_cols[i])?;
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
        let mut out: Vec<(RecordBatch, u64, i64)> = Vec::new();
        for i in 0..n {
            let key: Box<[u8]> = parts
                .as_ref()
                .map_or_else(|| Box::from([]), |p| p.row(i).as_ref().into());
            if !self.parts.contains_key(&key) && self.parts.len() >= self.spec.max_keys {
                return Err(EddyError::LimitExceeded(format!(
                    "Top-N holds more than {} partition keys",
                    self.spec.max_keys
                )));
            }
            let part = self.parts.entry(key).or_default();
            if let Some((t, add)) = &ends {
                part.end = Some(t.value(i).saturating_add(*add));
            }
            let entries = &mut part.entries;
            let order: Box<[u8]> = orders.row(i).as_ref().into();
            self.seq += 1;
            let seq = self.seq;
            let pos = entries.partition_point(|e| (&e.order, e.seq) < (&order, seq));
            if pos >= self.spec.n {
                continue;
            }
            // A copy, not a slice: a slice would keep the whole input batch alive.
            let row = take_record_batch(batch, &UInt32Array::from(vec![i as u32]))?;
            self.bytes += row.get_array_memory_size() + order.len();
            if emit {
                out.push((row.clone(), pos as u64 + 1, 1));
                for (j, e) in entries
                    .iter()
                    .enumerate()
                    .skip(pos)
                    .take(self.spec.n - 1 - pos)
                {
                    out.push((e.row.clone(), j as u64 + 1, -1));
                    out.push((e.row.clone(), j as u64 + 2, 1));
                }
            }
            entries.insert(pos, Entry { order, seq, row });
            if entries.len() > self.spec.n {
                if let Some(gone) = entries.pop() {
                    self.bytes = self
                        .bytes
                        .saturating_sub(gone.row.get_array_memory_size() + gone.order.len());
                    if emit {
                        out.push((gone.row, self.spec.n as u64, -1));
                    }
                }
            }
        }
        self.ranked(out)
    }

    /// Rows with their rank appended, and their weights.
    fn ranked(&self, rows: Vec<(RecordBatch, u64, i64)>) -> Result<Changes> {
        if rows.is_empty() {
            return Ok(Changes::inserts(RecordBatch::new_empty(
                self.spec.output_schema.clone(),
            )));
        }
        let batches: Vec<&RecordBatch> = rows.iter().map(|r| &r.0).collect();
        let input = concat_batches(&self.spec.input_schema, batches)?;
        let mut cols = input.columns().to_vec();
        cols.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.1),
        )));
        let batch = RecordBatch::try_new(self.spec.output_schema.clone(), cols)?;
        let weights = Int64Array::from_iter_values(rows.iter().map(|r| r.2));
        Ok(Changes::with_weights(batch, weights))
    }

    /// The rows held, best first per partition key (input schema).
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let all: Vec<&RecordBatch> = self
            .parts
            .values()
            .flat_map(|p| p.entries.iter().map(|e| &e.row))
            .collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![concat_batches(&self.spec.input_schema, all)?])
    }

    /// The watermark passed `w`: drop the partitions of windows that ended
    /// (their ranked rows stay in the view; no later row can change them).
    pub fn on_watermark(&mut self, w: i64) {
        if self.spec.window.is_none() {
            return;
        }
        let mut freed = 0;
        self.parts.retain(|_, p| {
            let keep = p.end.is_none_or(|end| end > w);
            if !keep {
                freed += p
                    .entries
                    .iter()
                    .map(|e| e.row.get_array_memory_size() + e.order.len())
                    .sum::<usize>();
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// Hold checkpointed rows again (the view already has their ranked rows).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for b in batches {
            self.insert(b, false)?;
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
        // 4 enters at rank 2: 3 leaves. 9 enters at rank 1: 5 moves to 2, 4 leaves.
        assert_eq!(
            out(&op
                .process(&rows(&schema, &[(10, 4), (10, 9), (10, 1)]))
                .unwrap()),
            vec![
                (4, 2, 1),
                (3, 2, -1),
                (9, 1, 1),
                (5, 1, -1),
                (5, 2, 1),
                (4, 2, -1),
            ]
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
