//! Stateless operators: filters and projections evaluated with DataFusion
//! physical expressions, one batch at a time. Weights ride along unchanged,
//! so the same steps serve append-only and updating streams.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;

use super::message::Changes;
use crate::error::{EddyError, Result};

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
        }
    }
}

/// Apply `steps` in order.
pub fn apply_steps(steps: &[Step], mut changes: Changes) -> Result<Changes> {
    for step in steps {
        if changes.num_rows() == 0 {
            // Still project so the schema is right downstream.
            if let Step::Project { schema, .. } = step {
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
        };
    }
    Ok(changes)
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
