//! SESSION windows: rows wait per session key (the group key without the
//! window columns) until the watermark closes their session.
//!
//! A row at event time `t` opens the interval `[t, t + gap)`; every open
//! session of its key that intersects or touches it merges with it (as in
//! Flink: rows at most `gap` apart share a session), so a row that arrives
//! out of order (but not late) and bridges two sessions joins them. A
//! session `[first, last + gap)` closes when the watermark passes its end;
//! its rows then go to the aggregate with `window_start` and `window_end`
//! set to the session's bounds. Window assignment dropped rows below the
//! watermark, so no later row can reach a closed session.
//!
//! TUMBLE_ROWS (`rows` in the spec) uses the same buffer: per key, rows
//! collect in arrival order until there are `rows` of them; the complete
//! window goes to the aggregate at once with `window_start` / `window_end`
//! set to its earliest and latest event time.
//!
//! Held rows are bounded ([`SessionBuffer::new`]'s `max_rows`, error 53400)
//! and are part of the view's checkpoint; since a session is a function of
//! its rows' times, re-inserting them after a restart rebuilds it exactly.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::physical_expr::PhysicalExpr;

use super::groups::{AggregateSpec, SessionSpec};
use crate::error::{EddyError, Result};
use crate::operators::window::{event_times_ns, nanos_per_unit};
use crate::types::{Changes, EventTime};

struct Session {
    start: EventTime,
    end: EventTime,
    /// Rows already held.
    batches: Vec<RecordBatch>,
    /// Rows of the batch being inserted.
    pending: Vec<u32>,
}

/// The open sessions of one aggregate partition.
pub struct SessionBuffer {
    spec: SessionSpec,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    converter: Option<RowConverter>,
    sessions: HashMap<Box<[u8]>, Vec<Session>, RandomState>,
    /// No session ends before this (skips scans on most watermarks).
    min_end: EventTime,
    rows: usize,
    bytes: usize,
    max_rows: usize,
}

impl SessionBuffer {
    /// A buffer for the aggregate `agg` holding at most `max_rows` rows.
    pub fn new(agg: &AggregateSpec, spec: SessionSpec, max_rows: usize) -> Result<Self> {
        let is_window = |i: usize| spec.window_groups.contains(&Some(i));
        let key_exprs: Vec<_> = agg
            .group_exprs
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_window(*i))
            .map(|(_, e)| e.clone())
            .collect();
        let fields: Vec<SortField> = agg.output_schema.fields()[..agg.group_exprs.len()]
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_window(*i))
            .map(|(_, f)| SortField::new(f.data_type().clone()))
            .collect();
        let converter = if fields.is_empty() {
            None
        } else {
            Some(RowConverter::new(fields)?)
        };
        Ok(SessionBuffer {
            spec,
            key_exprs,
            converter,
            sessions: HashMap::default(),
            min_end: EventTime::MAX,
            rows: 0,
            bytes: 0,
            max_rows,
        })
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes held.
    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    fn time_col(&self) -> Result<usize> {
        self.spec
            .start_col
            .or(self.spec.end_col)
            .ok_or_else(|| EddyError::Internal("session window without a window column".into()))
    }

    /// Hold the rows of `changes` in their windows; returns the rows of
    /// TUMBLE_ROWS windows they complete (sessions complete on `close`).
    pub fn insert(&mut self, changes: &Changes) -> Result<Option<Changes>> {
        if !changes.is_append_only() {
            return Err(EddyError::Internal(
                "SESSION windows over retracted rows are not supported".into(),
            ));
        }
        let batch = &changes.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        if self.rows + n > self.max_rows {
            return Err(EddyError::LimitExceeded(format!(
                "SESSION windows hold more than {} rows in one partition (sessions that never \
                 close: check the gap and that the watermark advances)",
                self.max_rows
            )));
        }
        let times = event_times_ns(batch.column(self.time_col()?))?;
        let keys = match &self.converter {
            Some(conv) => {
                let cols = self
                    .key_exprs
                    .iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                    .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
                Some(conv.convert_columns(&cols)?)
            }
            None => None,
        };
        if let Some(size) = self.spec.rows {
            return self.insert_counted(batch, &times, keys.as_ref(), size);
        }
        let gap = self.spec.gap_ns;
        let mut touched: Vec<Box<[u8]>> = Vec::new();
        for i in 0..n {
            let t = times.value(i);
            let key: Box<[u8]> = keys
                .as_ref()
                .map_or_else(|| Box::from([]), |k| k.row(i).as_ref().into());
            let list = self.sessions.entry(key.clone()).or_default();
            if list.iter().all(|s| s.pending.is_empty()) {
                touched.push(key);
            }
            let mut merged = Session {
                start: t,
                end: t.saturating_add(gap),
                batches: Vec::new(),
                pending: vec![i as u32],
            };
            // Merging can widen the session into others: repeat until none intersects.
            while let Some(j) = list
                .iter()
                .position(|s| s.start <= merged.end && merged.start <= s.end)
            {
                let s = list.swap_remove(j);
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.batches.extend(s.batches);
                merged.pending.extend(s.pending);
            }
            self.min_end = self.min_end.min(merged.end);
            list.push(merged);
        }
        for key in touched {
            let Some(list) = self.sessions.get_mut(&key) else {
                continue;
            };
            for s in list.iter_mut().filter(|s| !s.pending.is_empty()) {
                let idx = UInt32Array::from(std::mem::take(&mut s.pending));
                let cols = batch
                    .columns()
                    .iter()
                    .map(|c| take(c.as_ref(), &idx, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let rows =
                    crate::types::detach::detach(RecordBatch::try_new(batch.schema(), cols)?)?;
                self.rows += rows.num_rows();
                self.bytes += rows.get_array_memory_size();
                s.batches.push(rows);
            }
        }
        Ok(None)
    }

    /// TUMBLE_ROWS: add rows to their key's open window in order; a window
    /// that reaches `size` rows is complete and returned.
    fn insert_counted(
        &mut self,
        batch: &RecordBatch,
        times: &datafusion::arrow::array::TimestampNanosecondArray,
        keys: Option<&datafusion::arrow::row::Rows>,
        size: usize,
    ) -> Result<Option<Changes>> {
        let take_rows = |idx: Vec<u32>| -> Result<RecordBatch> {
            let idx = UInt32Array::from(idx);
            let cols = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(batch.schema(), cols)?)
        };
        let mut done = Vec::new();
        let mut touched: Vec<Box<[u8]>> = Vec::new();
        for i in 0..batch.num_rows() {
            let t = times.value(i);
            let key: Box<[u8]> = keys.map_or_else(|| Box::from([]), |k| k.row(i).as_ref().into());
            let list = self.sessions.entry(key.clone()).or_default();
            if list.is_empty() {
                list.push(Session {
                    start: t,
                    end: t,
                    batches: Vec::new(),
                    pending: Vec::new(),
                });
            }
            let w = &mut list[0];
            if w.pending.is_empty() {
                touched.push(key.clone());
            }
            w.start = w.start.min(t);
            w.end = w.end.max(t);
            w.pending.push(i as u32);
            let held: usize = w.batches.iter().map(RecordBatch::num_rows).sum();
            if held + w.pending.len() == size {
                let Some(w) = self.sessions.remove(&key).and_then(|mut l| l.pop()) else {
                    continue;
                };
                for b in &w.batches {
                    self.rows -= b.num_rows();
                    self.bytes = self.bytes.saturating_sub(b.get_array_memory_size());
                }
                for b in w
                    .batches
                    .iter()
                    .chain(std::iter::once(&take_rows(w.pending)?))
                {
                    done.push(with_bounds(&self.spec, b, w.start, w.end)?);
                }
            }
        }
        // What stays open keeps this batch's rows.
        for key in touched {
            let Some(w) = self.sessions.get_mut(&key).and_then(|l| l.first_mut()) else {
                continue;
            };
            if w.pending.is_empty() {
                continue;
            }
            let rows = crate::types::detach::detach(take_rows(std::mem::take(&mut w.pending))?)?;
            self.rows += rows.num_rows();
            self.bytes += rows.get_array_memory_size();
            w.batches.push(rows);
        }
        let Some(first) = done.first() else {
            return Ok(None);
        };
        Ok(Some(Changes::inserts(concat_batches(
            &first.schema(),
            &done,
        )?)))
    }

    /// Take out the sessions the watermark `w` closes (end below `w`: a row
    /// at `w` is not late and could still touch a session ending at `w`),
    /// their rows carrying the session's bounds as `window_start` / `window_end`.
    pub fn close(&mut self, w: EventTime) -> Result<Option<Changes>> {
        if self.spec.rows.is_some() || w <= self.min_end {
            return Ok(None);
        }
        let mut closed = Vec::new();
        let mut min_end = EventTime::MAX;
        for list in self.sessions.values_mut() {
            let mut j = 0;
            while j < list.len() {
                if list[j].end < w {
                    closed.push(list.swap_remove(j));
                } else {
                    min_end = min_end.min(list[j].end);
                    j += 1;
                }
            }
        }
        self.sessions.retain(|_, list| !list.is_empty());
        self.min_end = min_end;
        let mut out = Vec::new();
        for s in closed {
            for b in s.batches {
                self.rows -= b.num_rows();
                self.bytes = self.bytes.saturating_sub(b.get_array_memory_size());
                out.push(with_bounds(&self.spec, &b, s.start, s.end)?);
            }
        }
        let Some(first) = out.first() else {
            return Ok(None);
        };
        Ok(Some(Changes::inserts(concat_batches(
            &first.schema(),
            &out,
        )?)))
    }

    /// Every held row (window columns still holding each row's event time).
    pub fn snapshot(&self) -> Vec<RecordBatch> {
        self.sessions
            .values()
            .flatten()
            .flat_map(|s| s.batches.iter().cloned())
            .collect()
    }

    /// Hold checkpointed rows again (rebuilding their windows: the
    /// snapshot keeps each key's rows in arrival order).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for b in batches {
            if self.insert(&Changes::inserts(b.clone()))?.is_some() {
                return Err(EddyError::Internal(
                    "restored TUMBLE_ROWS rows completed a window".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `b` with its window columns set to `[start, end)`.
fn with_bounds(
    spec: &SessionSpec,
    b: &RecordBatch,
    start: EventTime,
    end: EventTime,
) -> Result<RecordBatch> {
    let mut cols = b.columns().to_vec();
    for (col, v) in [(spec.start_col, start), (spec.end_col, end)] {
        let Some(c) = col else { continue };
        let t = cols[c].data_type().clone();
        let DataType::Timestamp(unit, _) = &t else {
            return Err(EddyError::Internal(format!(
                "session bound column has type {t}"
            )));
        };
        let raw: ArrayRef = Arc::new(Int64Array::from(vec![
            v / nanos_per_unit(*unit);
            b.num_rows()
        ]));
        cols[c] = cast(&raw, &t)?;
    }
    Ok(RecordBatch::try_new(b.schema(), cols)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::sql::EmitMode;

    const S: i64 = 1_000_000_000;

    /// Input (k, window_start): window assignment put each row's time in window_start.
    fn buffer() -> (SessionBuffer, Arc<Schema>) {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("window_start", ts, false),
        ]));
        let spec = AggregateSpec {
            group_exprs: vec![
                Arc::new(Column::new("k", 0)),
                Arc::new(Column::new("window_start", 1)),
            ],
            aggs: vec![],
            output_schema: schema.clone(),
            window: None,
            session: None,
            emit: EmitMode::OnWindowClose,
            max_groups: 100,
            retract: false,
            panes: None,
        };
        let session = SessionSpec {
            gap_ns: 5 * S,
            rows: None,
            start_col: Some(1),
            end_col: None,
            window_groups: [Some(1), None],
        };
        (SessionBuffer::new(&spec, session, 100).unwrap(), schema)
    }

    fn rows(schema: &Arc<Schema>, rows: &[(&str, i64)]) -> Changes {
        let keys = StringArray::from_iter_values(rows.iter().map(|r| r.0));
        let ts = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.1 * S));
        Changes::inserts(
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(ts)]).unwrap(),
        )
    }

    /// (key, window_start in s) of the closed rows, sorted.
    fn closed(buf: &mut SessionBuffer, w: i64) -> Vec<(String, i64)> {
        let Some(c) = buf.close(w * S).unwrap() else {
            return vec![];
        };
        let k = c.batch.column(0).as_string::<i32>();
        let t = event_times_ns(c.batch.column(1)).unwrap();
        let mut out: Vec<(String, i64)> = (0..k.len())
            .map(|i| (k.value(i).to_string(), t.value(i) / S))
            .collect();
        out.sort();
        out
    }

    use datafusion::arrow::array::AsArray;

    #[test]
    fn a_bridging_row_merges_sessions_which_close_after_the_watermark_passes() {
        let (mut buf, schema) = buffer();
        buf.insert(&rows(&schema, &[("a", 1), ("a", 10), ("b", 2)]))
            .unwrap();
        // [1,6) and [10,15) for a; [2,7) for b. 6 touches both of a's.
        buf.insert(&rows(&schema, &[("a", 6)])).unwrap();
        assert_eq!(buf.rows(), 4);
        // b ends at 7: not closed at 7 (a row at 7 could still join it), closed at 8.
        assert_eq!(closed(&mut buf, 7), vec![]);
        assert_eq!(closed(&mut buf, 8), vec![("b".into(), 2)]);
        // Snapshot and restore rebuild a's merged session.
        let (mut again, _) = buffer();
        again.restore(&buf.snapshot()).unwrap();
        let want: Vec<(String, i64)> = vec![("a".into(), 1), ("a".into(), 1), ("a".into(), 1)];
        assert_eq!(closed(&mut again, 16), want);
        assert_eq!(closed(&mut buf, 16), want);
        assert_eq!((buf.rows(), buf.state_bytes()), (0, 0));
    }

    #[test]
    fn tumble_rows_completes_a_window_every_n_rows_of_a_key() {
        let (mut buf, schema) = buffer();
        buf.spec.rows = Some(3);
        let out = buf
            .insert(&rows(
                &schema,
                &[("a", 1), ("b", 2), ("a", 4), ("a", 3), ("a", 6)],
            ))
            .unwrap()
            .expect("a's first window is complete");
        let t = event_times_ns(out.batch.column(1)).unwrap();
        // Three rows of a, each with window_start = the window's earliest time.
        assert_eq!(
            t.values().iter().map(|v| v / S).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
        assert_eq!(buf.rows(), 2);
        assert!(buf.insert(&rows(&schema, &[("b", 7)])).unwrap().is_none());
        assert!(buf.insert(&rows(&schema, &[("b", 8)])).unwrap().is_some());
    }

    #[test]
    fn held_rows_are_bounded() {
        let (mut buf, schema) = buffer();
        let many: Vec<(&str, i64)> = (0..101).map(|i| ("a", i)).collect();
        let e = buf.insert(&rows(&schema, &many)).unwrap_err();
        assert_eq!(e.sqlstate(), "53400");
    }
}
