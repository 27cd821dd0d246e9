//! The messages operators exchange: change batches, watermarks and barriers.
//!
//! A stream is a sequence of [`Message`]s on a bounded channel. Data travels
//! as a [`Changes`] batch: Arrow rows, each with a weight (+1 insert, -1
//! delete), so append-only streams and updating streams (an aggregate's
//! retractions) share one representation. A [`Message::Watermark`] promises
//! that no later row of this stream has event time below it (rows that break
//! the promise are *late*); watermarks never go backwards. A
//! [`Message::Barrier`] marks a checkpoint epoch and is forwarded only after
//! the operator's state for that epoch is captured.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;

/// Event time in nanoseconds since the Unix epoch (the unit of SQL `TIMESTAMP`).
pub type EventTime = i64;

/// A batch of row changes: `batch.num_rows()` rows, each with a weight.
///
/// `weights == None` means every row is an insert (+1): the common,
/// append-only case costs nothing extra.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The rows.
    pub batch: RecordBatch,
    /// One weight per row (+1 insert, -1 delete); `None` = all +1.
    pub weights: Option<Arc<Int64Array>>,
}

impl Changes {
    /// Append-only changes: every row is an insert.
    pub fn inserts(batch: RecordBatch) -> Self {
        Changes {
            batch,
            weights: None,
        }
    }

    /// Changes with explicit weights; `weights.len()` must equal the row count.
    pub fn with_weights(batch: RecordBatch, weights: Int64Array) -> Self {
        debug_assert_eq!(batch.num_rows(), weights.len());
        Changes {
            batch,
            weights: Some(Arc::new(weights)),
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// True when every row is an insert.
    pub fn is_append_only(&self) -> bool {
        match &self.weights {
            None => true,
            Some(w) => w.values().iter().all(|v| *v == 1),
        }
    }

    /// The weight of row `i`.
    pub fn weight(&self, i: usize) -> i64 {
        self.weights.as_ref().map_or(1, |w| w.value(i))
    }

    /// Keep the rows where `mask` is true (nulls count as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Changes> {
        let batch = filter_record_batch(&self.batch, mask)?;
        let weights = match &self.weights {
            None => None,
            Some(w) => {
                let kept = datafusion::arrow::compute::filter(w.as_ref(), mask)?;
                let kept = kept
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
                    .unwrap_or_else(|| Int64Array::from(Vec::<i64>::new()));
                Some(Arc::new(kept))
            }
        };
        Ok(Changes { batch, weights })
    }
}

/// A watermark: no later row should have event time below `0`, or the input is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// All later rows have event time >= this.
    EventTime(EventTime),
    /// The input has no data for now and must not hold back the combined watermark.
    Idle,
}

/// One message on a stream channel.
#[derive(Debug, Clone)]
pub enum Message {
    /// Row changes.
    Data(Changes),
    /// Event-time progress.
    Watermark(Watermark),
    /// Checkpoint barrier for an epoch (aligned across inputs).
    Barrier(u64),
}

/// Tracks a watermark that never goes backwards.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatermarkTracker {
    current: Option<EventTime>,
}

impl WatermarkTracker {
    /// The current watermark, if any has been seen.
    pub fn current(&self) -> Option<EventTime> {
        self.current
    }

    /// Advance to `candidate` if it is ahead; returns the new watermark when it moved.
    pub fn advance(&mut self, candidate: EventTime) -> Option<EventTime> {
        match self.current {
            Some(c) if c >= candidate => None,
            _ => {
                self.current = Some(candidate);
                self.current
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_never_goes_backwards() {
        let mut t = WatermarkTracker::default();
        assert_eq!(t.advance(10), Some(10));
        assert_eq!(t.advance(5), None);
        assert_eq!(t.current(), Some(10));
        assert_eq!(t.advance(11), Some(11));
    }
}
