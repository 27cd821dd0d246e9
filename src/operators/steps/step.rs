//! Stateless operators: filters and projections evaluated with DataFusion
//! physical expressions, one batch at a time. Weights ride along unchanged,
//! so the same steps serve append-only and updating streams.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt64Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{EddyError, Result};
use crate::types::Changes;

/// One stateless step.
#[derive(Clone)]
pub enum Step {
    /// Keep rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns.
    Project {
        /// One expression per output column.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// Output schema.
        schema: SchemaRef,
    },
    /// One row per element of the list in `column` (the element replaces the
    /// list; other columns and the weight repeat).
    Unnest {
        /// The list column.
        column: usize,
        /// A NULL list gives one row with a NULL element (else no row).
        preserve_nulls: bool,
        /// Output schema.
        schema: SchemaRef,
    },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Filter(p) => write!(f, "Filter: {p}"),
            Step::Project { exprs, schema } => {
                let cols: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, field)| {
                        let plain = e
                            .as_ref()
                            .downcast_ref::<datafusion::physical_expr::expressions::Column>();
                        // A column named after the expression that computed it
                        // (a window function's output): its position says enough.
                        if let Some(c) = plain.filter(|c| c.name().contains(" BETWEEN ")) {
                            return format!("@{} AS {}", c.index(), field.name());
                        }
                        let e = e.to_string();
                        let col = format!("{}@", field.name());
                        if e.starts_with(&col) {
                            field.name().clone()
                        } else {
                            format!("{e} AS {}", field.name())
                        }
                    })
                    .collect();
                write!(f, "Project: {}", cols.join(", "))
            }
            Step::Unnest { column, schema, .. } => {
                write!(f, "Unnest: {}", schema.field(*column).name())
            }
        }
    }
}

/// Apply `steps` in order.
pub fn apply_steps(steps: &[Step], mut changes: Changes) -> Result<Changes> {
    for step in steps {
        if changes.num_rows() == 0 {
            // Still project so the schema is right downstream.
            if let Step::Project { schema, .. } | Step::Unnest { schema, .. } = step {
                changes = Changes::inserts(RecordBatch::new_empty(schema.clone()));
            }
            continue;
        }
        changes = match step {
            Step::Filter(pred) => {
                let v = pred
                    .evaluate(&changes.batch)?
                    .into_array(changes.num_rows())?;
                let mask = v
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| EddyError::Internal("filter did not yield booleans".into()))?;
                if mask.true_count() == mask.len() && mask.null_count() == 0 {
                    changes
                } else {
                    changes.filter(mask)?
                }
            }
            Step::Project { exprs, schema } => {
                let n = changes.num_rows();
                let cols = exprs
                    .iter()
                    .map(|e| e.evaluate(&changes.batch).and_then(|v| v.into_array(n)))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let opts = RecordBatchOptions::new().with_row_count(Some(n));
                let batch = RecordBatch::try_new_with_options(schema.clone(), cols, &opts)?;
                Changes {
                    batch,
                    weights: changes.weights,
                }
            }
            Step::Unnest {
                column,
                preserve_nulls,
                schema,
            } => unnest(&changes, *column, *preserve_nulls, schema)?,
        };
    }
    Ok(changes)
}

/// Expand the list column `column` of `changes` into one row per element.
fn unnest(
    changes: &Changes,
    column: usize,
    preserve_nulls: bool,
    schema: &SchemaRef,
) -> Result<Changes> {
    let batch = &changes.batch;
    let col = batch.column(column);
    let (values, offsets): (ArrayRef, Vec<usize>) = match col.data_type() {
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            (
                l.values().clone(),
                l.offsets().iter().map(|&o| o as usize).collect(),
            )
        }
        DataType::LargeList(_) => {
            let l = col.as_list::<i64>();
            (
                l.values().clone(),
                l.offsets().iter().map(|&o| o as usize).collect(),
            )
        }
        other => {
            return Err(EddyError::Execution(format!(
                "unnest expects a list, got {other}"
            )))
        }
    };
    let mut parent: Vec<u64> = Vec::with_capacity(values.len());
    let mut child: Vec<Option<u64>> = Vec::with_capacity(values.len());
    for row in 0..batch.num_rows() {
        if col.is_null(row) {
            if preserve_nulls {
                parent.push(row as u64);
                child.push(None);
            }
            continue;
        }
        for i in offsets[row]..offsets[row + 1] {
            parent.push(row as u64);
            child.push(Some(i as u64));
        }
    }
    let parent = UInt64Array::from(parent);
    let child = UInt64Array::from(child);
    let cols = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == column {
                take(values.as_ref(), &child, None)
            } else {
                take(c.as_ref(), &parent, None)
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let opts = RecordBatchOptions::new().with_row_count(Some(parent.len()));
    let out = RecordBatch::try_new_with_options(schema.clone(), cols, &opts)?;
    let weights = match &changes.weights {
        None => None,
        Some(w) => {
            let taken = take(w.as_ref(), &parent, None)?;
            Some(Arc::new(taken.as_primitive::<Int64Type>().clone()))
        }
    };
    Ok(Changes {
        batch: out,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    #[test]
    fn filter_then_project_keeps_weights() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 5, 9]))],
        )
        .unwrap();
        let changes = Changes::with_weights(batch, Int64Array::from(vec![1, -1, 1]));
        let a = col("a", &schema).unwrap();
        let gt = binary(
            a.clone(),
            Operator::Gt,
            lit(ScalarValue::Int64(Some(2))),
            &schema,
        )
        .unwrap();
        let plus = binary(a, Operator::Plus, lit(ScalarValue::Int64(Some(1))), &schema).unwrap();
        let out_schema = Arc::new(Schema::new(vec![Field::new("b", DataType::Int64, false)]));
        let out = apply_steps(
            &[
                Step::Filter(gt),
                Step::Project {
                    exprs: vec![plus],
                    schema: out_schema,
                },
            ],
            changes,
        )
        .unwrap();
        let b = out
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(b.values(), &[6, 10]);
        assert_eq!(out.weights.unwrap().values(), &[-1, 1]);
    }
}
