//! Window assignment: adds `window_start` and `window_end` to each row of an
//! event-time stream (one row per window: one for TUMBLE, size/slide for HOP,
//! up to size/step for CUMULATE) and drops late rows (event time below the current watermark), counting them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EddyError, Result};
use crate::types::time::{event_times_ns, fmt_ns, nanos_per_unit};
use crate::types::{Changes, EventTime};

/// The kind of window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows.
    Tumble,
    /// Overlapping windows of `size` starting every `slide`.
    Hop,
    /// Windows starting every `size` (= the longest window), growing by
    /// `slide` (the step): `[s, s + step)`, `[s, s + 2·step)`, … `[s, s + size)`.
    Cumulate,
    /// Per group key, rows less than `size` (the gap) apart share a window
    /// `[first row, last row + gap)`. Assignment only marks each row with its
    /// event time; the aggregate's session buffer finds the sessions.
    Session,
    /// Per group key, windows of `size_ns` (a row count here, not a time)
    /// rows in arrival order; like SESSION, found by the aggregate's buffer.
    Rows,
}

/// Most windows one row may belong to: `size / slide` for HOP, `size / step` for CUMULATE.
/// Every window a row falls in holds state of its own (and, where rows are expanded per
/// window, a row of its own), so one row must not reach an unbounded number of them. A
/// day in 10-second slides is 8,640 windows.
pub const MAX_WINDOWS_PER_ROW: i64 = 10_000;

/// A validated window definition (sizes in nanoseconds).
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Tumble or hop.
    pub kind: WindowKind,
    /// Window length.
    pub size_ns: i64,
    /// Distance between window starts (= size for TUMBLE); the step for CUMULATE.
    pub slide_ns: i64,
    /// Index of the event-time column in the input.
    pub time_index: usize,
    /// Name of the event-time column.
    pub time_column: String,
    /// `PROCTIME()` windows: rows are stamped with the processing time
    /// they arrive at (a column appended at `time_index`), and the
    /// watermark is the wall clock.
    pub processing_time: bool,
}

impl WindowSpec {
    /// Validate sizes: positive, and for HOP the slide divides the size.
    pub fn new(
        kind: WindowKind,
        size_ns: i64,
        slide_ns: i64,
        time_index: usize,
        time_column: String,
    ) -> Result<Self> {
        if size_ns <= 0 || slide_ns <= 0 {
            return Err(EddyError::InvalidParameter {
                message: "window size and slide must be positive intervals".into(),
                hint: Some("Use e.g. INTERVAL '10' SECOND.".into()),
            });
        }
        if matches!(kind, WindowKind::Hop | WindowKind::Cumulate)
            && (slide_ns > size_ns || size_ns % slide_ns != 0)
        {
            let (name, what) = match kind {
                WindowKind::Cumulate => ("CUMULATE", "step"),
                _ => ("HOP", "slide"),
            };
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "{name} {what} ({}) must divide the window size ({})",
                    fmt_ns(slide_ns),
                    fmt_ns(size_ns)
                ),
                hint: Some(format!(
                    "Pick a size that is a whole multiple of the {what}."
                )),
            });
        }
        if matches!(kind, WindowKind::Hop | WindowKind::Cumulate)
            && size_ns / slide_ns > MAX_WINDOWS_PER_ROW
        {
            let (name, what) = match kind {
                WindowKind::Cumulate => ("CUMULATE", "step"),
                _ => ("HOP", "slide"),
            };
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "{name} puts every row in {} windows (size {} / {what} {}); at most \
                     {MAX_WINDOWS_PER_ROW} are allowed",
                    size_ns / slide_ns,
                    fmt_ns(size_ns),
                    fmt_ns(slide_ns)
                ),
                hint: Some(format!(
                    "Use a larger {what} or a smaller size, so that size / {what} is at most \
                     {MAX_WINDOWS_PER_ROW}."
                )),
            });
        }
        Ok(WindowSpec {
            kind,
            size_ns,
            slide_ns,
            time_index,
            time_column,
            processing_time: false,
        })
    }

    /// The same window over processing time (see [`WindowSpec::processing_time`]).
    pub fn over_processing_time(self) -> Self {
        WindowSpec {
            processing_time: true,
            ..self
        }
    }

    /// The schema with `window_start`, `window_end` appended (typed like the time column).
    pub fn output_schema(input: &Schema, time_type: &DataType) -> SchemaRef {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", time_type.clone(), false));
        fields.push(Field::new("window_end", time_type.clone(), false));
        Arc::new(Schema::new(fields))
    }
}

/// Assign windows to the rows of `changes`, dropping rows below `watermark`.
/// Returns the windowed changes and the number of late rows dropped.
pub fn assign(
    spec: &WindowSpec,
    out_schema: &SchemaRef,
    changes: &Changes,
    watermark: Option<EventTime>,
) -> Result<(Changes, u64)> {
    let batch = &changes.batch;
    let time_col = batch.column(spec.time_index);
    let DataType::Timestamp(unit, _) = time_col.data_type().clone() else {
        return Err(EddyError::DatatypeMismatch(format!(
            "window time column {} must be a TIMESTAMP",
            spec.time_column
        )));
    };
    let per = nanos_per_unit(unit);
    let ts = event_times_ns(time_col)?;
    let mut indices: Vec<u32> = Vec::with_capacity(batch.num_rows());
    let mut starts: Vec<i64> = Vec::with_capacity(batch.num_rows());
    let mut ends: Vec<i64> = Vec::with_capacity(batch.num_rows());
    let mut late = 0u64;
    for i in 0..ts.len() {
        if ts.is_null(i) {
            // No event time: no window. Counted as late-ish would be wrong; skip silently
            // is wrong too, so it is counted as late (it can never be placed).
            late += 1;
            continue;
        }
        let t = ts.value(i);
        if watermark.is_some_and(|w| t < w) {
            late += 1;
            continue;
        }
        if matches!(spec.kind, WindowKind::Session | WindowKind::Rows) {
            indices.push(i as u32);
            starts.push(t);
            ends.push(t);
            continue;
        }
        if spec.kind == WindowKind::Cumulate {
            // Every window of this period whose end is past t.
            let start = t - t.rem_euclid(spec.size_ns);
            let mut end = t - t.rem_euclid(spec.slide_ns) + spec.slide_ns;
            while end <= start + spec.size_ns {
                indices.push(i as u32);
                starts.push(start);
                ends.push(end);
                end += spec.slide_ns;
            }
            continue;
        }
        let last_start = t - t.rem_euclid(spec.slide_ns);
        let mut start = last_start;
        while start > t - spec.size_ns {
            indices.push(i as u32);
            starts.push(start);
            ends.push(start + spec.size_ns);
            start -= spec.slide_ns;
        }
    }
    let idx = UInt32Array::from(indices);
    let mut cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<_, _>>()?;
    let time_type = time_col.data_type();
    let to_unit = |v: i64| v / per;
    let start_arr: ArrayRef = Arc::new(Int64Array::from_iter_values(
        starts.iter().map(|s| to_unit(*s)),
    ));
    let end_arr: ArrayRef = Arc::new(Int64Array::from_iter_values(
        ends.iter().map(|e| to_unit(*e)),
    ));
    cols.push(cast(&start_arr, time_type)?);
    cols.push(cast(&end_arr, time_type)?);
    let out = RecordBatch::try_new(out_schema.clone(), cols)?;
    let weights = match &changes.weights {
        None => None,
        Some(w) => {
            let taken = take(w.as_ref(), &idx, None)?;
            taken
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .map(Arc::new)
        }
    };
    Ok((
        Changes {
            batch: out,
            weights,
        },
        late,
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;
    use datafusion::arrow::array::TimestampNanosecondArray;

    const S: i64 = 1_000_000_000;

    fn input(ts: &[i64]) -> (Changes, SchemaRef, SchemaRef) {
        let t = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let schema = Arc::new(Schema::new(vec![Field::new("ts", t.clone(), false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(TimestampNanosecondArray::from(ts.to_vec()))],
        )
        .unwrap();
        let out = WindowSpec::output_schema(&schema, &t);
        (Changes::inserts(batch), schema, out)
    }

    fn starts(c: &Changes) -> Vec<i64> {
        let a = c
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        a.values().iter().map(|v| v / S).collect()
    }

    #[test]
    fn tumble_aligns_to_epoch() {
        let spec = WindowSpec::new(WindowKind::Tumble, 10 * S, 10 * S, 0, "ts".into()).unwrap();
        let (c, _, out) = input(&[S, 9 * S, 10 * S, -S]);
        let (w, late) = assign(&spec, &out, &c, None).unwrap();
        assert_eq!(late, 0);
        assert_eq!(starts(&w), vec![0, 0, 10, -10]);
    }

    #[test]
    fn hop_gives_size_over_slide_windows_and_drops_late() {
        let spec = WindowSpec::new(WindowKind::Hop, 10 * S, 5 * S, 0, "ts".into()).unwrap();
        let (c, _, out) = input(&[7 * S, 2 * S]);
        let (w, late) = assign(&spec, &out, &c, Some(3 * S)).unwrap();
        assert_eq!(late, 1);
        assert_eq!(starts(&w), vec![5, 0]);
    }

    fn ends(c: &Changes) -> Vec<i64> {
        let a = c
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        a.values().iter().map(|v| v / S).collect()
    }

    #[test]
    fn cumulate_gives_the_growing_windows_that_end_after_the_row() {
        let spec = WindowSpec::new(WindowKind::Cumulate, 10 * S, 2 * S, 0, "ts".into()).unwrap();
        // 5 s: [0,6) [0,8) [0,10); 0 s: all five; 19.5 s: [10,20); -1 s: [-10,0).
        let (c, _, out) = input(&[5 * S, 0, 19 * S + S / 2, -S]);
        let (w, late) = assign(&spec, &out, &c, None).unwrap();
        assert_eq!(late, 0);
        assert_eq!(starts(&w), vec![0, 0, 0, 0, 0, 0, 0, 0, 10, -10]);
        assert_eq!(ends(&w), vec![6, 8, 10, 2, 4, 6, 8, 10, 20, 0]);
    }

    #[test]
    fn invalid_windows_are_rejected() {
        let e = WindowSpec::new(WindowKind::Cumulate, 10 * S, 4 * S, 0, "ts".into()).unwrap_err();
        assert!(e.to_string().contains("CUMULATE step (4 s)"), "{e}");
        assert!(WindowSpec::new(WindowKind::Hop, 10 * S, 3 * S, 0, "ts".into()).is_err());
        assert!(WindowSpec::new(WindowKind::Tumble, 0, 0, 0, "ts".into()).is_err());
        let e = WindowSpec::new(WindowKind::Hop, 10 * S, 3 * S, 0, "ts".into()).unwrap_err();
        assert_eq!(e.sqlstate(), "22023");
        // 100 days in 1 ms slides would put each row in 8.64 billion windows.
        let day = 86_400 * S;
        let e = WindowSpec::new(WindowKind::Hop, 100 * day, 1_000_000, 0, "ts".into()).unwrap_err();
        assert_eq!(e.sqlstate(), "22023");
        assert!(e.to_string().contains("8640000000 windows"), "{e}");
        assert!(e.to_string().contains("at most 10000"), "{e}");
        let e = WindowSpec::new(WindowKind::Cumulate, day, 1_000_000, 0, "ts".into()).unwrap_err();
        assert!(
            e.to_string().starts_with("CUMULATE puts every row in"),
            "{e}"
        );
        // The limit itself is allowed: a day in 10-second slides.
        assert!(WindowSpec::new(WindowKind::Hop, day, 10 * S, 0, "ts".into()).is_ok());
        assert!(WindowSpec::new(WindowKind::Hop, 10_001 * S, S, 0, "ts".into()).is_err());
    }
}
