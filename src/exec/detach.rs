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
    }
}
