//! Upsert tables: `CREATE TABLE t (…, PRIMARY KEY (k))`.
//!
//! An upsert table holds one current row per key. `INSERT` of a row whose
//! key is present replaces the old row, `DELETE` removes rows by key. Its
//! views see an updating stream: an insert (+1) for a new key, a retraction
//! of the old row (-1) and an insert of the new one for a replaced key, a
//! retraction for a delete. `SELECT` reads the current rows.
//!
//! Every operation is one row of the table's log: the table's columns plus
//! [`OP_COLUMN`] (true = upsert, false = delete), applied in order, so
//! replaying the log after a restart rebuilds the same rows.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use crate::error::{EddyError, Result};
use crate::types::Changes;

/// The log column that says whether a row is an upsert (true) or a delete.
pub const OP_COLUMN: &str = "__eddy_op";

/// The log schema of an upsert table: its columns, then [`OP_COLUMN`].
pub fn log_schema(table: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// `batch` (table rows) as log rows of one kind: upserts or deletes.
pub fn with_op(batch: &RecordBatch, upsert: bool) -> Result<RecordBatch> {
    let mut cols = batch.columns().to_vec();
    cols.push(Arc::new(BooleanArray::from(vec![upsert; batch.num_rows()])));
    Ok(RecordBatch::try_new(log_schema(&batch.schema()), cols)?)
}

/// The current rows of an upsert table, by key.
pub struct UpsertState {
    schema: SchemaRef,
    key_cols: Vec<usize>,
    key_conv: RowConverter,
    row_conv: RowConverter,
    rows: HashMap<Box<[u8]>, OwnedRow>,
    max_rows: usize,
    bytes: usize,
}

impl UpsertState {
    /// An empty table of `schema` keyed by `key_cols`, holding at most `max_rows` keys.
    pub fn new(schema: SchemaRef, key_cols: Vec<usize>, max_rows: usize) -> Result<Self> {
        let sort = |i: &usize| SortField::new(schema.field(*i).data_type().clone());
        let key_conv = RowConverter::new(key_cols.iter().map(sort).collect())?;
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let row_conv = RowConverter::new(all.iter().map(sort).collect())?;
        Ok(UpsertState {
            schema,
            key_cols,
            key_conv,
            row_conv,
            rows: HashMap::new(),
            max_rows,
            bytes: 0,
        })
    }

    /// The key columns' names.
    pub fn key_names(&self) -> Vec<String> {
        self.key_cols
            .iter()
            .map(|i| self.schema.field(*i).name().clone())
            .collect()
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Rows> {
        let cols: Vec<_> = self
            .key_cols
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        Ok(self.key_conv.convert_columns(&cols)?)
    }

    /// Fail if upserting `batches` (log rows) would hold more than the bound.
    pub fn check_capacity(&self, batches: &[RecordBatch]) -> Result<()> {
        let mut new = std::collections::HashSet::new();
        for b in batches {
            let keys = self.keys(b)?;
            for i in 0..b.num_rows() {
                let k = keys.row(i);
                if !self.rows.contains_key(k.as_ref()) {
                    new.insert(k.as_ref().to_vec());
                }
            }
        }
        if self.rows.len() + new.len() > self.max_rows {
            return Err(EddyError::LimitExceeded(format!(
                "the upsert table would hold more than {} keys (it holds {}, the INSERT adds {})",
                self.max_rows,
                self.rows.len(),
                new.len()
            )));
        }
        Ok(())
    }

    /// Apply log rows in order; returns the changes to publish.
    pub fn apply(&mut self, log: &RecordBatch) -> Result<Changes> {
        let width = self.schema.fields().len();
        let ops = log
            .columns()
            .get(width)
            .and_then(|c| c.as_boolean_opt())
            .ok_or_else(|| EddyError::Internal("upsert log row without its op".into()))?
            .clone();
        let table = RecordBatch::try_new(self.schema.clone(), log.columns()[..width].to_vec())?;
        let keys = self.keys(&table)?;
        let rows = self.row_conv.convert_columns(table.columns())?;
        let mut out: Vec<(OwnedRow, i64)> = Vec::new();
        for i in 0..table.num_rows() {
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            if ops.value(i) {
                let new = rows.row(i).owned();
                if !self.rows.contains_key(&key) && self.rows.len() >= self.max_rows {
                    return Err(EddyError::LimitExceeded(format!(
                        "the upsert table holds more than {} keys",
                        self.max_rows
                    )));
                }
                self.bytes += new.as_ref().len() + key.len();
                match self.rows.insert(key.clone(), new.clone()) {
                    Some(old) if old == new => {
                        self.bytes -= old.as_ref().len() + key.len();
                    }
                    Some(old) => {
                        self.bytes -= old.as_ref().len() + key.len();
                        out.push((old, -1));
                        out.push((new, 1));
                    }
                    None => out.push((new, 1)),
                }
            } else if let Some(old) = self.rows.remove(&key) {
                self.bytes -= old.as_ref().len() + key.len();
                out.push((old, -1));
            }
        }
        let cols = self
            .row_conv
            .convert_rows(out.iter().map(|(r, _)| r.row()))?;
        let batch = RecordBatch::try_new(self.schema.clone(), cols)?;
        let weights = Int64Array::from_iter_values(out.iter().map(|(_, w)| *w));
        Ok(Changes::with_weights(batch, weights))
    }

    /// The current rows.
    pub fn rows(&self) -> Result<Vec<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let cols = self
            .row_conv
            .convert_rows(self.rows.values().map(|r| r.row()))?;
        Ok(vec![RecordBatch::try_new(self.schema.clone(), cols)?])
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn ops(rows: &[(i64, &str)], upsert: bool) -> RecordBatch {
        let b = RecordBatch::try_new(
            table(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        with_op(&b, upsert).unwrap()
    }

    fn changes(c: &Changes) -> Vec<(i64, String, i64)> {
        let id = c.batch.column(0).as_primitive::<Int64Type>();
        let name = c.batch.column(1).as_string::<i32>();
        (0..c.num_rows())
            .map(|i| (id.value(i), name.value(i).to_string(), c.weight(i)))
            .collect()
    }

    #[test]
    fn upserts_replace_and_deletes_retract() {
        let mut t = UpsertState::new(table(), vec![0], 2).unwrap();
        let c = t
            .apply(&ops(&[(1, "a"), (2, "b"), (1, "c")], true))
            .unwrap();
        assert_eq!(
            changes(&c),
            vec![
                (1, "a".into(), 1),
                (2, "b".into(), 1),
                (1, "a".into(), -1),
                (1, "c".into(), 1)
            ]
        );
        // The same row again changes nothing; a delete of a missing key neither.
        let c = t.apply(&ops(&[(2, "b")], true)).unwrap();
        assert_eq!(c.num_rows(), 0);
        let c = t.apply(&ops(&[(2, "x"), (9, "x")], false)).unwrap();
        assert_eq!(changes(&c), vec![(2, "b".into(), -1)]);
        assert_eq!(t.len(), 1);
        // Two keys at most.
        assert!(t.check_capacity(&[ops(&[(3, "d")], true)]).is_ok());
        assert!(t
            .check_capacity(&[ops(&[(3, "d"), (4, "e")], true)])
            .is_err());
        assert!(t.apply(&ops(&[(3, "d"), (4, "e")], true)).is_err());
    }
}
