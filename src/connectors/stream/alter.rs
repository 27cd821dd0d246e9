//! Handing a running stream over to a stream of the same source with more
//! columns (`ALTER SOURCE … ADD COLUMN`): the position it reached, its
//! counters and the rows it keeps for `SELECT`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::{new_null_array, ArrayRef};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::{Retained, StreamObject};
use crate::error::Result;
use crate::state::StreamPosition;

impl StreamObject {
    /// Where the stream is, read as [`StreamObject::inject_barrier`] reads it
    /// but without publishing anything. `held` is this stream's
    /// [`StreamObject::hold`] guard: nothing is published meanwhile, so the
    /// position is exactly what the subscribers have seen.
    pub fn position_while_held(&self, held: &tokio::sync::MutexGuard<'_, ()>) -> StreamPosition {
        let _ = held;
        let p = self.position.lock();
        StreamPosition {
            rows: p.rows,
            watermark: self.tracker.lock().current(),
            connector: p.connector.clone(),
            current: self.keyed_rows(),
        }
    }

    /// Take over `old`'s counters (`eddy.sources`) and the rows it keeps for
    /// `SELECT`, those given NULL in the columns `old` lacks. Call before
    /// the connector starts, with `old` held.
    pub fn carry_over(&self, old: &StreamObject) -> Result<()> {
        let (m, o) = (&self.metrics, &old.metrics);
        for (to, from) in [
            (&m.rows_read, &o.rows_read),
            (&m.rows_rejected, &o.rows_rejected),
            (&m.rows_late, &o.rows_late),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (to, from) in [
            (&m.watermark, &o.watermark),
            (&m.max_event_time, &o.max_event_time),
            (&m.lag, &o.lag),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        *m.status.lock() = o.status.lock().clone();
        *m.last_error.lock() = o.last_error.lock().clone();
        *m.partitions.lock() = o.partitions.lock().clone();
        let (Some(to), Some(from)) = (&self.retained, &old.retained) else {
            return Ok(());
        };
        let from = from.lock();
        let batches = from
            .batches
            .iter()
            .map(|b| widen(b, &self.schema))
            .collect::<Result<VecDeque<_>>>()?;
        let mut to = to.lock();
        *to = Retained {
            batches,
            rows: from.rows,
            max_rows: to.max_rows,
            evicted_rows: from.evicted_rows,
        };
        Ok(())
    }
}

/// `batch` with `schema`'s columns: its own by name, NULL for the others.
pub fn widen(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.schema().index_of(f.name()) {
            Ok(i) => batch.column(i).clone(),
            Err(_) => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::sql::ObjectKind;

    #[tokio::test]
    async fn carries_position_counters_and_rows() {
        let old_schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let new_schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let stream = |schema: SchemaRef| {
            StreamObject::new(
                "s".into(),
                ObjectKind::Source,
                "file".into(),
                schema,
                None,
                10,
            )
        };
        let (old, new) = (stream(old_schema.clone()), stream(new_schema));
        let batch = RecordBatch::try_new(
            old_schema,
            vec![Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef],
        )
        .unwrap();
        old.push_at(batch, None, Some(serde_json::json!({"line": 2})))
            .await
            .unwrap();
        let held = old.hold().await;
        let pos = old.position_while_held(&held);
        assert_eq!(pos.rows, 2);
        new.restore_position(&pos).await;
        new.carry_over(&old).unwrap();
        drop(held);
        assert_eq!(new.resume_position(), Some(serde_json::json!({"line": 2})));
        assert_eq!(new.metrics.rows_read.load(Ordering::Relaxed), 2);
        let rows = new.snapshot_messages();
        let [crate::types::Message::Data(c)] = rows.as_slice() else {
            panic!("one batch")
        };
        assert_eq!(c.batch.num_columns(), 2);
        assert_eq!(c.batch.column(1).null_count(), 2);
    }
}
