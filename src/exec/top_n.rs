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

use datafusion::arrow::array::{ArrayRef, Int64Array, UInt64Array};
use datafusion::arrow::compute::concat_batches;
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
    parts: HashMap<Box<[u8]>, Vec<Entry>>,
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
        let parts = match &self.partition_conv {
            Some(conv) => {
                let cols = self
                    .spec
                    .partition_by
                    .iter()
                    .map(eval)
                    .collect::<Result<Vec<_>>>()?;
                Some(conv.convert_columns(&cols)?)
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
            let entries = self.parts.entry(key).or_default();
            let order: Box<[u8]> = orders.row(i).as_ref().into();
            self.seq += 1;
            let seq = self.seq;
            let pos = entries.partition_point(|e| (&e.order, e.seq) < (&order, seq));
            if pos >= self.spec.n {
                continue;
            }
            let row = batch.slice(i, 1);
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
        let all: Vec<&RecordBatch> = self.parts.values().flatten().map(|e| &e.row).collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![concat_batches(&self.spec.input_schema, all)?])
    }

    /// Hold checkpointed rows again (the view already has their ranked rows).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for b in batches {
            self.insert(b, false)?;
        }
        Ok(())
    }
}
