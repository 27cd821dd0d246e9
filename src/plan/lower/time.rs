//! Constants of a view definition: window sizes, row counts, intervals, `state_ttl`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::sql::sqlparser::ast;

use crate::error::{EddyError, Result};

use super::PlanInputs;
use crate::operators::window::{WindowKind, WindowSpec};
use crate::sql::window::{WindowFnArgs, WindowTvf};
use crate::sql::CreateView;

pub(super) fn window_spec(
    state: &SessionState,
    w: &WindowTvf,
    input: &PlanInputs,
) -> Result<WindowSpec> {
    if w.processing_time {
        // The arrival time, in a column appended to the input's.
        let size = window_sizes(state, w)?;
        let spec = WindowSpec::new(
            size.0,
            size.1,
            size.2,
            input.schema.fields().len(),
            w.time_column.clone(),
        )?;
        return Ok(spec.over_processing_time());
    }
    let time_index = input.schema.index_of(&w.time_column).map_err(|_| {
        EddyError::UndefinedColumn(format!(
            "column \"{}\" does not exist in \"{}\"",
            w.time_column, w.input
        ))
    })?;
    if !matches!(
        input.schema.field(time_index).data_type(),
        DataType::Timestamp(_, _)
    ) {
        return Err(EddyError::DatatypeMismatch(format!(
            "window time column \"{}\" must be a TIMESTAMP, not {}",
            w.time_column,
            input.schema.field(time_index).data_type()
        )));
    }
    if let Some(tc) = &input.time_column {
        if tc != &w.time_column {
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "\"{}\" has its watermark on \"{tc}\", so windows over it must use \"{tc}\", not \"{}\"",
                    w.input, w.time_column
                ),
                hint: None,
            });
        }
    }
    let (kind, size, slide) = window_sizes(state, w)?;
    WindowSpec::new(kind, size, slide, time_index, w.time_column.clone())
}

/// The window kind, size and slide (ns; rows for TUMBLE_ROWS) of `w`.
fn window_sizes(state: &SessionState, w: &WindowTvf) -> Result<(WindowKind, i64, i64)> {
    Ok(match &w.args {
        WindowFnArgs::Tumble { size } => {
            let s = interval_ns(state, size)?;
            (WindowKind::Tumble, s, s)
        }
        WindowFnArgs::Hop { slide, size } => (
            WindowKind::Hop,
            interval_ns(state, size)?,
            interval_ns(state, slide)?,
        ),
        WindowFnArgs::Rows { count } => {
            let n = row_count(state, count)?;
            (WindowKind::Rows, n, n)
        }
        WindowFnArgs::Session { gap } => {
            let g = interval_ns(state, gap)?;
            (WindowKind::Session, g, g)
        }
        WindowFnArgs::Cumulate { step, size } => (
            WindowKind::Cumulate,
            interval_ns(state, size)?,
            interval_ns(state, step)?,
        ),
    })
}

/// Evaluate a constant expression (`None` if it is not one).
fn constant(state: &SessionState, e: &ast::Expr) -> Result<Option<ScalarValue>> {
    let empty = DFSchema::empty();
    let expr = state.create_logical_expr(&e.to_string(), &empty)?;
    let phys = crate::plan::physical_expr(state, expr, &empty)?;
    let batch = datafusion::arrow::record_batch::RecordBatch::new_empty(Arc::new(
        datafusion::arrow::datatypes::Schema::empty(),
    ));
    Ok(match phys.evaluate(&batch)? {
        datafusion::logical_expr::ColumnarValue::Scalar(s) => Some(s),
        _ => None,
    })
}

/// Evaluate a constant row count (TUMBLE_ROWS) to a positive integer.
fn row_count(state: &SessionState, e: &ast::Expr) -> Result<i64> {
    let n = match constant(state, e)?
        .map(|s| s.cast_to(&datafusion::arrow::datatypes::DataType::Int64))
    {
        Some(Ok(ScalarValue::Int64(Some(n)))) => n,
        _ => 0,
    };
    if !(1..=1_000_000).contains(&n) {
        return Err(EddyError::InvalidParameter {
            message: format!("TUMBLE_ROWS needs a row count from 1 to 1000000, got {e}"),
            hint: None,
        });
    }
    Ok(n)
}

/// The `state_ttl` view option in nanoseconds (how long an unbounded join keeps a row).
pub(super) fn state_ttl(view: &CreateView) -> Result<Option<i64>> {
    view.options
        .get("state_ttl")
        .map(|text| parse_state_ttl(text))
        .transpose()
}

/// A `state_ttl` value (`'1 hour'`, `'30 minutes'`, `'90 s'`) in nanoseconds.
pub fn parse_state_ttl(text: &str) -> Result<i64> {
    let bad = || EddyError::InvalidParameter {
        message: format!("invalid state_ttl '{text}'"),
        hint: Some("Give a duration such as '1 hour', '30 minutes' or '90 s'.".into()),
    };
    let v = datafusion::arrow::compute::cast(
        &datafusion::arrow::array::StringArray::from(vec![text]),
        &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
    )
    .map_err(|_| bad())?;
    let v = ScalarValue::try_from_array(&v, 0)?;
    match interval_value_ns(&v) {
        Some(ns) if ns > 0 => Ok(ns),
        _ => Err(bad()),
    }
}

/// A fixed-length interval constant in nanoseconds.
pub(super) fn interval_value_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v * 1_000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v * 1_000_000),
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1_000_000_000),
        _ => None,
    }
}

/// Evaluate a constant interval expression to nanoseconds.
fn interval_ns(state: &SessionState, e: &ast::Expr) -> Result<i64> {
    let bad = |why: &str| EddyError::InvalidParameter {
        message: format!("invalid window interval {e}: {why}"),
        hint: Some("Use a fixed interval such as INTERVAL '10' SECOND.".into()),
    };
    let Some(s) = constant(state, e)? else {
        return Err(bad("not a constant"));
    };
    match s {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return Err(bad("months have no fixed length"));
            }
            Ok(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Ok(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(_) => Err(bad("months have no fixed length")),
        ScalarValue::DurationNanosecond(Some(v)) => Ok(v),
        _ => Err(bad("not an interval")),
    }
}
