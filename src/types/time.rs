//! Event-time helpers: timestamp units, a timestamp column as nanoseconds,
//! durations for humans.

use datafusion::arrow::array::{ArrayRef, PrimitiveArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};

use crate::error::{EddyError, Result};

/// Nanoseconds per unit of a timestamp type.
pub fn nanos_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// Human form of a nanosecond duration.
pub fn fmt_ns(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{} s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{} ms", ns / 1_000_000)
    } else {
        format!("{ns} ns")
    }
}

/// Event times of a timestamp column in nanoseconds (nulls stay null).
pub fn event_times_ns(col: &ArrayRef) -> Result<PrimitiveArray<TimestampNanosecondType>> {
    let as_ns = match col.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, None) => col.clone(),
        DataType::Timestamp(_, _) => cast(col, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
        other => {
            return Err(EddyError::DatatypeMismatch(format!(
                "event-time column must be a TIMESTAMP, found {other}"
            )))
        }
    };
    as_ns
        .as_any()
        .downcast_ref::<PrimitiveArray<TimestampNanosecondType>>()
        .cloned()
        .ok_or_else(|| EddyError::Internal("timestamp cast failed".into()))
}
