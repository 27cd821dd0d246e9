//! Checkpointing the aggregate operator: its groups as one Arrow batch.
//!
//! One row per group, columns:
//!
//! | column          | meaning                                                  |
//! |-----------------|----------------------------------------------------------|
//! | `window_end`    | the group's window end in ns (`i64::MAX` = not windowed)  |
//! | group columns   | the group key, as typed values (named like the output)    |
//! | `rows`          | net input rows of the group                               |
//! | `s{j}_{k}`      | field `k` of aggregate `j`'s intermediate state           |
//! | `emitted`       | whether a result row was emitted                          |
//! | `e{j}`          | aggregate `j`'s last emitted value                        |
//!
//! Intermediate state is DataFusion's own (`Accumulator::state`, restored with
//! `merge_batch`, the calls its multi-phase aggregation uses), so every
//! aggregate checkpoints without eddy knowing its insides. Keys are stored as
//! values, not in Arrow's row format (which is not stable across versions).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatchOptions;
use datafusion::arrow::array::{
    new_empty_array, Array, ArrayRef, BooleanArray, Int64Array, RecordBatch,
};
use datafusion::arrow::compute::{cast, filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;

use super::groups::{AggregateOperator, AggregateSpec, NO_WINDOW};
use crate::error::{EddyError, Result};

impl AggregateOperator {
    /// The schema of [`AggregateOperator::snapshot`]'s batch.
    pub fn state_schema(&self) -> Result<SchemaRef> {
        state_schema(&self.spec)
    }

    /// Every group as one batch (see the module docs). The accumulators keep
    /// their state: each is rebuilt from the state it hands out.
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let schema = self.state_schema()?;
        let n_groups = self.spec.group_exprs.len();
        let n_aggs = self.spec.aggs.len();
        let mut ends = Vec::with_capacity(self.groups);
        let mut keys: Vec<Box<[u8]>> = Vec::with_capacity(self.groups);
        let mut rows = Vec::with_capacity(self.groups);
        let mut emitted_flags = Vec::with_capacity(self.groups);
        // One list of scalars per state column, then per emitted column.
        let n_state_cols = schema.fields().len() - 3 - n_groups - n_aggs;
        let mut state_cols: Vec<Vec<ScalarValue>> = vec![Vec::new(); n_state_cols];
        let mut emitted_cols: Vec<Vec<ScalarValue>> = vec![Vec::new(); n_aggs];
        let emitted_types: Vec<DataType> = self.spec.output_schema.fields()[n_groups..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let spec = self.spec.clone();
        let mut fresh = Vec::new();
        for (end, window) in self.windows.iter_mut() {
            for (key, group) in window.iter_mut() {
                ends.push(*end);
                keys.push(key.clone());
                rows.push(group.rows);
                let mut col = 0;
                for (j, acc) in group.accs.iter_mut().enumerate() {
                    let state = acc.state()?;
                    // `state` consumes the accumulator's state: rebuild it from the copy.
                    let arrays = state
                        .iter()
                        .map(|s| s.to_array())
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    let mut rebuilt = if spec.retract {
                        super::retracting(&spec.aggs[j].func)?
                    } else {
                        spec.aggs[j].func.create_accumulator()?
                    };
                    rebuilt.merge_batch(&arrays)?;
                    fresh.push((j, rebuilt));
                    for s in state {
                        if let Some(c) = state_cols.get_mut(col) {
                            c.push(s);
                        }
                        col += 1;
                    }
                }
                for (j, rebuilt) in fresh.drain(..) {
                    group.accs[j] = rebuilt;
                }
                emitted_flags.push(group.emitted.is_some());
                for (j, list) in emitted_cols.iter_mut().enumerate() {
                    let v = match &group.emitted {
                        Some(vals) => vals[j].clone(),
                        None => ScalarValue::try_from(&emitted_types[j])?,
                    };
                    list.push(v);
                }
            }
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ends))];
        if n_groups > 0 {
            let parser = self.converter.parser();
            let key_cols = if keys.is_empty() {
                schema.fields()[1..=n_groups]
                    .iter()
                    .map(|f| new_empty_array(f.data_type()))
                    .collect()
            } else {
                self.converter
                    .convert_rows(keys.iter().map(|k| parser.parse(k)))?
            };
            cols.extend(key_cols);
        }
        cols.push(Arc::new(Int64Array::from(rows)));
        let state_fields = &schema.fields()[2 + n_groups..2 + n_groups + n_state_cols];
        for (list, field) in state_cols.into_iter().zip(state_fields) {
            cols.push(to_array(list, field.data_type())?);
        }
        cols.push(Arc::new(BooleanArray::from(emitted_flags)));
        for (list, t) in emitted_cols.into_iter().zip(&emitted_types) {
            cols.push(to_array(list, t)?);
        }
        Ok(RecordBatch::try_new(schema, cols)?)
    }

    /// Load groups from snapshot batches (of [`AggregateOperator::state_schema`]).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let n_groups = self.spec.group_exprs.len();
        let state_counts: Vec<usize> = state_types(&self.spec)?.iter().map(Vec::len).collect();
        for batch in batches {
            let cp = Checkpoint::read(&self.spec, batch)?;
            let n = batch.num_rows();
            let keys = (n_groups > 0)
                .then(|| self.converter.convert_columns(cp.keys))
                .transpose()?;
            for r in 0..n {
                let mut group = self.new_group()?;
                let mut col = 0;
                for (acc, count) in group.accs.iter_mut().zip(&state_counts) {
                    let slices: Vec<ArrayRef> = cp.states[col..col + count]
                        .iter()
                        .map(|c| c.slice(r, 1))
                        .collect();
                    acc.merge_batch(&slices)?;
                    col += count;
                }
                group.rows = cp.rows.value(r);
                if cp.emitted.value(r) {
                    let vals = cp
                        .values
                        .iter()
                        .map(|v| ScalarValue::try_from_array(v, r))
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    group.emitted = Some(vals);
                }
                let key: Box<[u8]> = match &keys {
                    Some(k) => Box::from(k.row(r).data()),
                    None => Box::from(&[][..]),
                };
                group.bytes = key.len() + group.accs.iter().map(|a| a.size()).sum::<usize>();
                self.state_bytes += group.bytes;
                let end = if self.spec.window.is_some() {
                    cp.ends.value(r)
                } else {
                    NO_WINDOW
                };
                if self
                    .windows
                    .entry(end)
                    .or_default()
                    .insert(key, group)
                    .is_none()
                {
                    self.groups += 1;
                }
            }
        }
        Ok(())
    }
}

/// The schema of an aggregate's checkpoint batch (see the module docs); every state layout
/// writes it.
pub(super) fn state_schema(spec: &AggregateSpec) -> Result<SchemaRef> {
    let n_groups = spec.group_exprs.len();
    let mut fields = vec![Field::new("window_end", DataType::Int64, false)];
    for f in &spec.output_schema.fields()[..n_groups] {
        fields.push(Field::new(
            format!("k_{}", f.name()),
            f.data_type().clone(),
            true,
        ));
    }
    fields.push(Field::new("rows", DataType::Int64, false));
    for (j, types) in state_types(spec)?.into_iter().enumerate() {
        for (k, t) in types.into_iter().enumerate() {
            fields.push(Field::new(format!("s{j}_{k}"), t, true));
        }
    }
    fields.push(Field::new("emitted", DataType::Boolean, false));
    for (j, f) in spec.output_schema.fields()[n_groups..].iter().enumerate() {
        fields.push(Field::new(format!("e{j}"), f.data_type().clone(), true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Per aggregate, the types of its intermediate state. The retractable ("sliding")
/// accumulators keep more than their plain counterparts (a sum also keeps its count), so
/// their state is asked for directly.
pub(super) fn state_types(spec: &AggregateSpec) -> Result<Vec<Vec<DataType>>> {
    spec.aggs
        .iter()
        .map(|a| {
            if spec.retract {
                let state = super::retracting(&a.func)?.state()?;
                Ok(state.iter().map(|s| s.data_type()).collect())
            } else {
                Ok(a.func
                    .state_fields()?
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect())
            }
        })
        .collect()
}

/// A checkpoint batch's columns by meaning (see the module docs), every layout's restore reads.
pub(super) struct Checkpoint<'a> {
    /// Window ends (ns).
    pub(super) ends: &'a Int64Array,
    /// Group key columns.
    pub(super) keys: &'a [ArrayRef],
    /// Net input rows per group.
    pub(super) rows: &'a Int64Array,
    /// Intermediate state columns, all aggregates.
    pub(super) states: &'a [ArrayRef],
    /// Whether a group emitted a row.
    pub(super) emitted: &'a BooleanArray,
    /// The values it emitted.
    pub(super) values: &'a [ArrayRef],
}

impl<'a> Checkpoint<'a> {
    /// Split `batch`, which must have `spec`'s [`state_schema`].
    pub(super) fn read(spec: &AggregateSpec, batch: &'a RecordBatch) -> Result<Self> {
        if batch.schema().fields() != state_schema(spec)?.fields() {
            return Err(EddyError::Internal(
                "checkpointed aggregate state does not match the view's plan".into(),
            ));
        }
        let n_groups = spec.group_exprs.len();
        let n_states: usize = state_types(spec)?.iter().map(Vec::len).sum();
        let c = batch.columns();
        let first_state = 2 + n_groups;
        let flag_at = first_state + n_states;
        Ok(Checkpoint {
            ends: int64(&c[0])?,
            keys: &c[1..=n_groups],
            rows: int64(&c[1 + n_groups])?,
            states: &c[first_state..flag_at],
            emitted: c[flag_at]
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| EddyError::Internal("bad emitted column".into()))?,
            values: &c[flag_at + 1..],
        })
    }
}

/// The result rows the groups of a checkpoint `batch` last emitted, in
/// `spec`'s output shape (group columns, then one per aggregate).
pub fn standing(spec: &AggregateSpec, batch: &RecordBatch) -> Result<RecordBatch> {
    let cp = Checkpoint::read(spec, batch)?;
    let cols = cp
        .keys
        .iter()
        .chain(cp.values)
        .map(|c| filter(c.as_ref(), cp.emitted))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let rows = cp.emitted.true_count();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        spec.output_schema.clone(),
        cols,
        &options,
    )?)
}

pub(super) fn to_array(list: Vec<ScalarValue>, t: &DataType) -> Result<ArrayRef> {
    if list.is_empty() {
        return Ok(new_empty_array(t));
    }
    let arr = ScalarValue::iter_to_array(list)?;
    Ok(if arr.data_type() == t {
        arr
    } else {
        cast(&arr, t)?
    })
}

pub(super) fn int64(a: &ArrayRef) -> Result<&Int64Array> {
    a.as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| EddyError::Internal("bad int64 column in checkpointed state".into()))
}
