//! A temporal filter: `WHERE ts > now() - INTERVAL '1' HOUR` kept true as
//! time passes, as Materialize does with `mz_now()`. A row comes through if
//! it is inside the interval when it arrives, and is retracted once
//! processing time moves past `ts + interval`. The operator holds exactly
//! the rows inside the interval, so it bounds the state of whatever reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use super::{OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::{EddyError, Result};
use crate::operators::window::{event_times_ns, fmt_ns};
use crate::types::Changes;

/// Checkpoint part of the rows inside the interval.
const PART: &str = "rows";

/// How a temporal filter is set up.
#[derive(Debug, Clone)]
pub struct TemporalSpec {
    /// The input's schema.
    pub schema: SchemaRef,
    /// The timestamp column compared with `now()`.
    pub col: usize,
    /// Its name (for EXPLAIN).
    pub name: String,
    /// The interval (ns).
    pub width_ns: i64,
    /// `>=` rather than `>`.
    pub inclusive: bool,
}

impl TemporalSpec {
    /// Processing time from which a row with event time `ts` is out.
    fn expires(&self, ts: i64) -> i64 {
        ts.saturating_add(self.width_ns)
            .saturating_add(i64::from(self.inclusive))
    }
}

/// The rows inside the interval, by the time they leave it.
pub struct TemporalFilter {
    spec: TemporalSpec,
    conv: RowConverter,
    /// (expires, arrival number) → row.
    rows: BTreeMap<(i64, u64), OwnedRow>,
    seq: u64,
    now_ns: i64,
    bytes: usize,
}

impl TemporalFilter {
    /// A filter for `spec`.
    pub fn new(spec: TemporalSpec) -> Result<Self> {
        let fields = spec
            .schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(TemporalFilter {
            conv: RowConverter::new(fields)?,
            spec,
            rows: BTreeMap::new(),
            seq: 0,
            now_ns: 0,
            bytes: 0,
        })
    }

    fn insert(&mut self, expires: i64, row: OwnedRow) {
        self.seq += 1;
        self.bytes += row.as_ref().len();
        self.rows.insert((expires, self.seq), row);
    }

    /// Take back one held row equal to `row` (a retraction of it).
    fn remove(&mut self, expires: i64, row: &OwnedRow) {
        let found = self
            .rows
            .range((expires, 0)..=(expires, u64::MAX))
            .find(|(_, r)| *r == row)
            .map(|(k, _)| *k);
        if let Some(k) = found {
            if let Some(r) = self.rows.remove(&k) {
                self.bytes = self.bytes.saturating_sub(r.as_ref().len());
            }
        }
    }

    /// The held rows and their expiry times as one batch.
    fn held(&self, rows: &[&OwnedRow]) -> Result<RecordBatch> {
        let cols = self.conv.convert_rows(rows.iter().map(|r| r.row()))?;
        Ok(RecordBatch::try_new(self.spec.schema.clone(), cols)?)
    }
}

impl StreamOperator for TemporalFilter {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        let batch = &changes.batch;
        let ts = event_times_ns(batch.column(self.spec.col))?;
        let rows = self.conv.convert_columns(batch.columns())?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let expires = (!ts.is_null(i)).then(|| self.spec.expires(ts.value(i)));
            let inside = expires.filter(|e| *e > self.now_ns);
            keep.push(inside.is_some());
            let Some(expires) = inside else {
                continue;
            };
            let row = rows.row(i).owned();
            if changes.weight(i) > 0 {
                self.insert(expires, row);
            } else {
                self.remove(expires, &row);
            }
        }
        let keep = BooleanArray::from(keep);
        if keep.false_count() == 0 {
            out.emit(changes);
        } else {
            out.emit(changes.filter(&keep)?);
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ns: i64, out: &mut Output) -> Result<()> {
        self.now_ns = self.now_ns.max(now_ns);
        let stay = self.rows.split_off(&(self.now_ns.saturating_add(1), 0));
        let gone = std::mem::replace(&mut self.rows, stay);
        if gone.is_empty() {
            return Ok(());
        }
        let rows: Vec<&OwnedRow> = gone.values().collect();
        self.bytes = self
            .bytes
            .saturating_sub(rows.iter().map(|r| r.as_ref().len()).sum());
        let batch = self.held(&rows)?;
        let n = batch.num_rows();
        out.emit(Changes::with_weights(batch, Int64Array::from(vec![-1; n])));
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        if self.rows.is_empty() {
            return Ok(OperatorState::default());
        }
        let rows: Vec<&OwnedRow> = self.rows.values().collect();
        let batch = self.held(&rows)?;
        let expires = Int64Array::from_iter_values(self.rows.keys().map(|(e, _)| *e));
        let mut fields: Vec<Field> = self
            .spec
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("__expires", DataType::Int64, false));
        let mut cols = batch.columns().to_vec();
        cols.push(Arc::new(expires));
        Ok(OperatorState::single(
            PART,
            vec![RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?],
        ))
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        let width = self.spec.schema.fields().len();
        for b in state.take(PART) {
            // Keyless: every held row goes to the first partition.
            let b = ctx.partition.keep(&b, &[])?;
            if b.num_columns() != width + 1 {
                return Err(EddyError::Internal(
                    "checkpointed temporal filter state does not match the filter".into(),
                ));
            }
            let rows = self.conv.convert_columns(&b.columns()[..width])?;
            let expires = b.columns()[width]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| EddyError::Internal("expiry column is not Int64".into()))?
                .clone();
            for i in 0..b.num_rows() {
                self.insert(expires.value(i), rows.row(i).owned());
            }
        }
        Ok(())
    }

    fn explain(&self) -> String {
        format!(
            "TemporalFilter: {} {} now() - {} (rows are retracted as processing time passes \
             them); state the rows inside",
            self.spec.name,
            if self.spec.inclusive { ">=" } else { ">" },
            fmt_ns(self.spec.width_ns)
        )
    }

    fn state_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;
    use crate::operators::Partition;

    const S: i64 = 1_000_000_000;

    fn filter() -> TemporalFilter {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )]));
        TemporalFilter::new(TemporalSpec {
            schema,
            col: 0,
            name: "ts".into(),
            width_ns: 10 * S,
            inclusive: false,
        })
        .unwrap()
    }

    fn rows(f: &TemporalFilter, secs: &[i64], weight: i64) -> Changes {
        let b = RecordBatch::try_new(
            f.spec.schema.clone(),
            vec![Arc::new(TimestampNanosecondArray::from_iter_values(
                secs.iter().map(|s| s * S),
            ))],
        )
        .unwrap();
        Changes::with_weights(b, Int64Array::from(vec![weight; secs.len()]))
    }

    fn seconds(out: &mut Output) -> Vec<(i64, i64)> {
        let (changes, _) = out.take();
        changes
            .iter()
            .flat_map(|c| {
                let ts = event_times_ns(c.batch.column(0)).unwrap();
                (0..c.num_rows())
                    .map(|i| (ts.value(i) / S, c.weight(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rows_leave_when_processing_time_passes_them_and_survive_a_restore() {
        let mut f = filter();
        let mut out = Output::default();
        f.on_tick(100 * S, &mut out).unwrap();
        // 85 s is already out of (90 s, now]; 95 s and 99 s are in.
        f.on_data(0, rows(&f, &[85, 95, 99], 1), &mut out).unwrap();
        assert_eq!(seconds(&mut out), vec![(95, 1), (99, 1)]);
        // A retraction of a held row passes and frees it.
        f.on_data(0, rows(&f, &[99], -1), &mut out).unwrap();
        assert_eq!(seconds(&mut out), vec![(99, -1)]);
        let saved = f.checkpoint().unwrap();
        // At 105 s, 95 s is out: retracted.
        f.on_tick(105 * S, &mut out).unwrap();
        assert_eq!(seconds(&mut out), vec![(95, -1)]);
        assert_eq!(f.state_bytes(), 0);
        // A restored filter holds 95 s again and retracts it on its first tick.
        let mut g = filter();
        g.restore(
            saved,
            &RestoreContext {
                partition: Partition::SINGLE,
                watermarks: &[],
            },
        )
        .unwrap();
        g.on_tick(105 * S, &mut out).unwrap();
        assert_eq!(seconds(&mut out), vec![(95, -1)]);
    }
}
