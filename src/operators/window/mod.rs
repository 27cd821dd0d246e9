//! Window assignment (TUMBLE, HOP, CUMULATE, and the row stamps SESSION and
//! count windows group by) and the late-row filter of join inputs. Both drop
//! rows below the input watermark and count them as late.

mod spec;

pub use crate::types::time::{event_times_ns, fmt_ns, nanos_per_unit};
pub use spec::*;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::SchemaRef;

use super::{Output, RestoreContext, StreamOperator};
use crate::error::Result;
use crate::operators::OperatorState;
use crate::types::{Changes, EventTime};

/// Gives each row its window(s): `window_start` and `window_end` columns.
pub struct WindowAssign {
    /// The window.
    spec: WindowSpec,
    /// The input's columns, then the window bounds.
    schema: SchemaRef,
    /// The input watermark: rows below it are late.
    watermark: Option<EventTime>,
    /// Its EXPLAIN line.
    shown: String,
    /// Processing time at the last tick (for `PROCTIME()` windows).
    now: EventTime,
}

impl WindowAssign {
    /// An operator assigning `spec`'s windows; `schema` is its output schema.
    pub fn new(spec: WindowSpec, schema: SchemaRef) -> Self {
        WindowAssign {
            shown: describe(&spec),
            spec,
            schema,
            watermark: None,
            now: 0,
        }
    }

    /// The assignment of a HOP window whose aggregate shares work per slide:
    /// each row once, in its `pane` (a TUMBLE of the slide).
    pub fn panes(hop: &WindowSpec, pane: WindowSpec, schema: SchemaRef) -> Self {
        let shown = format!(
            "{}; each row once, in its {} pane, whose groups feed the {} windows holding it",
            describe(hop),
            fmt_ns(hop.slide_ns),
            hop.size_ns / hop.slide_ns.max(1)
        );
        WindowAssign {
            shown,
            ..WindowAssign::new(pane, schema)
        }
    }
}

/// `changes` with the processing time `now` appended as a column (the
/// window input's time column; `schema` is the window's output schema,
/// whose column before `window_start` it is).
fn stamp(changes: &Changes, now: EventTime, schema: &SchemaRef) -> Result<Changes> {
    use datafusion::arrow::array::TimestampNanosecondArray;
    let b = &changes.batch;
    let mut columns = b.columns().to_vec();
    columns.push(std::sync::Arc::new(TimestampNanosecondArray::from(vec![
        now;
        b.num_rows()
    ])));
    let fields: Vec<_> = schema.fields()[..columns.len()].to_vec();
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
        std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        columns,
    )?;
    Ok(Changes {
        batch,
        weights: changes.weights.clone(),
    })
}

/// Keep the (one) input port's watermark, below which rows are late, and
/// forward it.
fn follow(watermark: &mut Option<EventTime>, ports: &[Option<EventTime>]) -> Option<EventTime> {
    *watermark = ports.first().copied().flatten();
    *watermark
}

/// The EXPLAIN line of a window assignment.
pub fn describe(w: &WindowSpec) -> String {
    let what = match w.kind {
        WindowKind::Tumble => format!("TUMBLE({}, size {})", w.time_column, fmt_ns(w.size_ns)),
        WindowKind::Hop => format!(
            "HOP({}, slide {}, size {})",
            w.time_column,
            fmt_ns(w.slide_ns),
            fmt_ns(w.size_ns)
        ),
        WindowKind::Rows => format!("TUMBLE_ROWS({}, {} rows)", w.time_column, w.size_ns),
        WindowKind::Session => format!("SESSION({}, gap {})", w.time_column, fmt_ns(w.size_ns)),
        WindowKind::Cumulate => format!(
            "CUMULATE({}, step {}, size {})",
            w.time_column,
            fmt_ns(w.slide_ns),
            fmt_ns(w.size_ns)
        ),
    };
    if w.processing_time {
        return format!(
            "WindowAssign: {what}; rows stamped with the processing time they arrive at, \
             the watermark follows the clock"
        );
    }
    format!("WindowAssign: {what}; drops rows below the watermark (counted as late)")
}

impl StreamOperator for WindowAssign {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        if self.spec.processing_time {
            // Stamped with the time they arrive at: never late.
            let stamped = stamp(&changes, self.now, &self.schema)?;
            let (windowed, _) = assign(&self.spec, &self.schema, &stamped, None)?;
            out.emit(windowed);
            return Ok(());
        }
        let (windowed, late) = assign(&self.spec, &self.schema, &changes, self.watermark)?;
        out.late(late);
        out.emit(windowed);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        _out: &mut Output,
    ) -> Result<Option<EventTime>> {
        if self.spec.processing_time {
            // The input's event time does not order processing-time windows.
            return Ok(None);
        }
        Ok(follow(&mut self.watermark, ports))
    }

    fn on_tick(&mut self, now_ns: i64, out: &mut Output) -> Result<()> {
        if self.spec.processing_time {
            self.now = self.now.max(now_ns);
            out.advance_watermark(self.now);
        }
        Ok(())
    }

    fn restore(&mut self, state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        state.expect_consumed("window")?;
        follow(&mut self.watermark, ctx.watermarks);
        Ok(())
    }

    fn explain(&self) -> String {
        self.shown.clone()
    }
}

/// Drops rows whose event time (column `col`) is below the input
/// watermark: a join frees rows by the other side's watermark, so a late
/// row could miss its matches.
pub struct DropLate {
    /// The event-time column.
    col: usize,
    /// The input watermark.
    watermark: Option<EventTime>,
}

impl DropLate {
    /// An operator dropping rows late by column `col`.
    pub fn new(col: usize) -> Self {
        DropLate {
            col,
            watermark: None,
        }
    }
}

impl StreamOperator for DropLate {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        let Some(w) = self.watermark else {
            out.emit(changes);
            return Ok(());
        };
        let t = event_times_ns(changes.batch.column(self.col))?;
        let keep: BooleanArray = t.iter().map(|t| Some(t.is_some_and(|t| t >= w))).collect();
        let late = keep.false_count() as u64;
        if late == 0 {
            out.emit(changes);
        } else {
            out.late(late);
            out.emit(changes.filter(&keep)?);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        _out: &mut Output,
    ) -> Result<Option<EventTime>> {
        Ok(follow(&mut self.watermark, ports))
    }

    fn restore(&mut self, state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        state.expect_consumed("late-row filter")?;
        follow(&mut self.watermark, ctx.watermarks);
        Ok(())
    }

    fn explain(&self) -> String {
        "DropLate: rows below this input's watermark (counted as late)".into()
    }
}

/// Passes rows on and holds the watermark `ns` back: after an aggregate
/// whose output time column (a window's start) trails the input watermark
/// by up to a window, downstream operators see a watermark that column
/// really rises with.
pub struct Delay {
    ns: i64,
}

impl Delay {
    /// A delay of `ns` nanoseconds.
    pub fn new(ns: i64) -> Self {
        Delay { ns }
    }
}

impl StreamOperator for Delay {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(changes);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        _out: &mut Output,
    ) -> Result<Option<EventTime>> {
        Ok(super::merged(ports).map(|t| t.saturating_sub(self.ns)))
    }

    fn explain(&self) -> String {
        format!("Delay: the watermark by {}", fmt_ns(self.ns))
    }
}
