//! Rows an operator keeps for long must not pin the batch they came from.
//!
//! `take` copies primitive and `Utf8` values, but a `Utf8View`/`BinaryView` result still points
//! into the input's data buffers: one kept row would hold every string of its input batch alive
//! (and `get_array_memory_size` would count those buffers once per kept row).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// `batch` with its view columns copied into buffers of their own (other columns shared).
pub fn detach(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .columns()
        .iter()
        .any(|c| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView))
    {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| -> ArrayRef {
            match c.data_type() {
                DataType::Utf8View => Arc::new(c.as_string_view().gc()),
                DataType::BinaryView => Arc::new(c.as_binary_view().gc()),
                _ => c.clone(),
            }
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
}

/// `batch`, with a view column copied only when it references less than half of the string
/// bytes it keeps alive (a filtered or sliced batch): rows kept for long stay compact, and a
/// batch that owns its strings is not copied.
pub fn compact_if_sparse(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let sparse = |c: &ArrayRef| match c.data_type() {
        DataType::Utf8View => {
            let a = c.as_string_view();
            let held: usize = a.data_buffers().iter().map(|b| b.len()).sum();
            a.total_buffer_bytes_used() * 2 < held
        }
        DataType::BinaryView => {
            let a = c.as_binary_view();
            let held: usize = a.data_buffers().iter().map(|b| b.len()).sum();
            a.total_buffer_bytes_used() * 2 < held
        }
        _ => false,
    };
    if batch.columns().iter().any(sparse) {
        detach(batch)
    } else {
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringViewArray, UInt32Array};
    use datafusion::arrow::compute::take_record_batch;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn a_kept_row_does_not_hold_its_batch() {
        let long: Vec<String> = (0..1000).map(|i| format!("{i:0>64}")).collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringViewArray::from_iter_values(&long))],
        )
        .unwrap();
        let row = take_record_batch(&batch, &UInt32Array::from(vec![7])).unwrap();
        let pinned = row.get_array_memory_size();
        let row = detach(row).unwrap();
        assert!(row.get_array_memory_size() * 100 < pinned, "{pinned}");
        assert_eq!(row.column(0).as_string_view().value(0), long[7]);
        // A whole batch owns its strings: kept as it is; one row of it is copied.
        let whole = compact_if_sparse(batch.clone()).unwrap();
        assert_eq!(whole.get_array_memory_size(), batch.get_array_memory_size());
        let one = compact_if_sparse(batch.slice(3, 1)).unwrap();
        assert!(one.get_array_memory_size() * 100 < pinned);
    }
}
