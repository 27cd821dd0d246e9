//! A materialized view's rows: a multiset maintained from a changelog.
//!
//! Rows are kept in Arrow's row format (compact, hashable, convertible back
//! to columns) with a multiplicity. Changes with weight +1 add a copy of a
//! row, -1 remove one, so the same store serves append-only views and views
//! whose rows are updated (retract old, insert new). `SELECT` reads an
//! immutable snapshot of record batches, rebuilt lazily after changes.
//!
//! An append-only view (its plan never retracts) keeps its batches as they
//! come instead: no per-row hashing, no rehash pauses as the view grows, and
//! the snapshot is the list of batches. A retraction or a multiplicity above
//! one still arrives correctly: the store then moves its rows into the
//! multiset and goes on from there.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::RandomState;

use crate::error::{EddyError, Result};
use crate::types::Changes;

/// Rows per batch in a snapshot.
const SNAPSHOT_BATCH_ROWS: usize = 8192;

/// The multiset of a view's rows.
pub struct ViewStore {
    schema: SchemaRef,
    converter: RowConverter,
    rows: HashMap<Box<[u8]>, u64, RandomState>,
    total_rows: u64,
    bytes: usize,
    max_rows: u64,
    snapshot: Option<Arc<Vec<RecordBatch>>>,
    /// Append-only mode: the rows, as batches (`None`: multiset mode).
    appended: Option<Vec<RecordBatch>>,
}

impl ViewStore {
    /// An empty store for rows of a view that only ever appends.
    pub fn append_only(schema: SchemaRef, max_rows: u64) -> Result<Self> {
        let mut store = Self::new(schema, max_rows)?;
        store.appended = Some(Vec::new());
        Ok(store)
    }

    /// An empty store for rows of `schema`, holding at most `max_rows` rows.
    pub fn new(schema: SchemaRef, max_rows: u64) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(ViewStore {
            converter: RowConverter::new(fields)?,
            schema,
            rows: HashMap::default(),
            total_rows: 0,
            bytes: 0,
            max_rows,
            snapshot: Some(Arc::new(Vec::new())),
            appended: None,
        })
    }

    /// Number of rows (counting duplicates).
    pub fn row_count(&self) -> u64 {
        self.total_rows
    }

    /// Approximate bytes held by the rows.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Apply a batch of changes. A delete of a row that is not present is an
    /// internal error (the changelog is inconsistent); hitting `max_rows` is a
    /// limit error. On error the store is unchanged up to the failing row.
    pub fn apply(&mut self, changes: &Changes) -> Result<()> {
        if changes.num_rows() == 0 {
            return Ok(());
        }
        if self.appended.is_some() {
            if changes.is_append_only() {
                return self.append(changes);
            }
            self.switch_to_multiset()?;
        }
        let rows = self.converter.convert_columns(changes.batch.columns())?;
        for i in 0..changes.num_rows() {
            let row = rows.row(i).data();
            let w = changes.weight(i);
            if w > 0 {
                if self.total_rows + w as u64 > self.max_rows {
                    return Err(EddyError::LimitExceeded(format!(
                        "materialized view is full: {} rows (limit {})",
                        self.total_rows, self.max_rows
                    )));
                }
                match self.rows.get_mut(row) {
                    Some(c) => *c += w as u64,
                    None => {
                        self.bytes += row.len() + 32;
                        self.rows.insert(Box::from(row), w as u64);
                    }
                }
                self.total_rows += w as u64;
            } else if w < 0 {
                let Some(c) = self.rows.get_mut(row) else {
                    return Err(EddyError::Internal(
                        "view changelog deletes a row the view does not hold".into(),
                    ));
                };
                let d = (-w) as u64;
                if *c < d {
                    return Err(EddyError::Internal(
                        "view changelog deletes more copies of a row than the view holds".into(),
                    ));
                }
                *c -= d;
                self.total_rows -= d;
                if *c == 0 {
                    self.rows.remove(row);
                    self.bytes = self.bytes.saturating_sub(row.len() + 32);
                }
            }
        }
        self.snapshot = None;
        Ok(())
    }

    /// Append-only mode: keep the batch (copied out of its input's string buffers when it holds
    /// a small part of them).
    fn append(&mut self, changes: &Changes) -> Result<()> {
        let n = changes.num_rows() as u64;
        if self.total_rows + n > self.max_rows {
            return Err(EddyError::LimitExceeded(format!(
                "materialized view is full: {} rows (limit {})",
                self.total_rows, self.max_rows
            )));
        }
        let batch = crate::types::detach::compact_if_sparse(changes.batch.clone())?;
        self.bytes += batch.get_array_memory_size();
        self.total_rows += n;
        if let Some(list) = self.appended.as_mut() {
            list.push(batch);
        }
        self.snapshot = None;
        Ok(())
    }

    /// Leave append-only mode: the rows so far go into the multiset.
    fn switch_to_multiset(&mut self) -> Result<()> {
        let Some(list) = self.appended.take() else {
            return Ok(());
        };
        self.total_rows = 0;
        self.bytes = 0;
        for batch in list {
            self.apply(&Changes::inserts(batch))?;
        }
        Ok(())
    }

    /// The current rows as record batches (cached until the next change).
    pub fn snapshot(&mut self) -> Result<Arc<Vec<RecordBatch>>> {
        if let Some(s) = &self.snapshot {
            return Ok(s.clone());
        }
        if let Some(list) = &self.appended {
            let snap = Arc::new(list.clone());
            self.snapshot = Some(snap.clone());
            return Ok(snap);
        }
        let parser = self.converter.parser();
        let mut batches = Vec::new();
        let mut pending = Vec::with_capacity(SNAPSHOT_BATCH_ROWS);
        for (row, count) in &self.rows {
            for _ in 0..*count {
                pending.push(row.as_ref());
                if pending.len() == SNAPSHOT_BATCH_ROWS {
                    batches.push(self.to_batch(&parser, &pending)?);
                    pending.clear();
                }
            }
        }
        if !pending.is_empty() {
            batches.push(self.to_batch(&parser, &pending)?);
        }
        let snap = Arc::new(batches);
        self.snapshot = Some(snap.clone());
        Ok(snap)
    }

    fn to_batch(
        &self,
        parser: &datafusion::arrow::row::RowParser,
        rows: &[&[u8]],
    ) -> Result<RecordBatch> {
        let cols = self
            .converter
            .convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn changes(vals: &[i64], weights: &[i64]) -> (SchemaRef, Changes) {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vals.to_vec()))],
        )
        .unwrap();
        (
            schema,
            Changes::with_weights(batch, Int64Array::from(weights.to_vec())),
        )
    }

    #[test]
    fn applies_inserts_and_retractions() {
        let (schema, c) = changes(&[1, 1, 2], &[1, 1, 1]);
        let mut s = ViewStore::new(schema, 100).unwrap();
        s.apply(&c).unwrap();
        assert_eq!(s.row_count(), 3);
        let (_, d) = changes(&[1, 3], &[-1, 1]);
        s.apply(&d).unwrap();
        let snap = s.snapshot().unwrap();
        let mut vals: Vec<i64> = snap
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        vals.sort();
        assert_eq!(vals, vec![1, 2, 3]);
    }

    #[test]
    fn append_only_store_moves_to_the_multiset_on_a_retraction() {
        let (schema, c) = changes(&[1, 1, 2], &[1, 1, 1]);
        let mut s = ViewStore::append_only(schema, 100).unwrap();
        s.apply(&c).unwrap();
        assert_eq!((s.row_count(), s.snapshot().unwrap().len()), (3, 1));
        let (_, d) = changes(&[1, 3], &[-1, 1]);
        s.apply(&d).unwrap();
        assert!(s.appended.is_none());
        let mut vals: Vec<i64> = s
            .snapshot()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        vals.sort();
        assert_eq!(vals, vec![1, 2, 3]);
        let (_, e) = changes(&[4; 98], &[1; 98]);
        assert_eq!(s.apply(&e).unwrap_err().sqlstate(), "53400");
    }

    #[test]
    fn bad_delete_and_limit_are_errors() {
        let (schema, c) = changes(&[1], &[-1]);
        let mut s = ViewStore::new(schema.clone(), 1).unwrap();
        assert!(s.apply(&c).is_err());
        let (_, c) = changes(&[1, 2], &[1, 1]);
        assert_eq!(s.apply(&c).unwrap_err().sqlstate(), "53400");
    }
}
