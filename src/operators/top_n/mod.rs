//! Top-N: the rows ranked up to N per partition key (see
//! [`crate::operators::top_n`]).

mod ranking;

pub use ranking::*;

use std::sync::Arc;

use super::{OperatorState, Output, RestoreContext, StreamOperator};
use crate::error::Result;
use crate::types::{Changes, EventTime};

/// A Top-N over one input.
pub struct TopN {
    /// The ranking state machine.
    op: TopNOperator,
    /// Its spec.
    spec: Arc<TopNSpec>,
}

impl TopN {
    /// A Top-N for `spec`.
    pub fn new(spec: Arc<TopNSpec>) -> Result<Self> {
        Ok(TopN {
            op: TopNOperator::new(spec.clone())?,
            spec,
        })
    }
}

impl StreamOperator for TopN {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(self.op.process(&changes)?);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _port: usize,
        ports: &[Option<EventTime>],
        _out: &mut Output,
    ) -> Result<Option<EventTime>> {
        let w = ports.first().copied().flatten();
        if let Some(w) = w {
            self.op.on_watermark(w);
        }
        Ok(w)
    }

    fn checkpoint(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::single("rows", self.op.snapshot()?))
    }

    fn restore(&mut self, mut state: OperatorState, ctx: &RestoreContext<'_>) -> Result<()> {
        // Rows are held in the input's shape: a partition keeps its keys' rows.
        let mine = ctx.keep_by(state.take("rows"), &self.spec.partition_by)?;
        self.op.restore(&mine)?;
        if let Some(w) = ctx.watermarks.first().copied().flatten() {
            self.op.on_watermark(w);
        }
        state.expect_consumed("Top-N")
    }

    fn explain(&self) -> String {
        let t = &self.spec;
        let list = |v: Vec<String>| v.join(", ");
        let what = match t.kind {
            RankKind::RowNumber => format!("{} rows", t.n),
            RankKind::Rank => format!("rank() <= {}", t.n),
            RankKind::DenseRank => format!("dense_rank() <= {}", t.n),
        };
        format!(
            "TopN: {what} per [{}] by [{}], with their rank; state {}",
            list(t.partition_by.iter().map(|e| e.to_string()).collect()),
            list(t.order_by.iter().map(|e| e.to_string()).collect()),
            if t.keep_all {
                "every row (the input is updating)"
            } else {
                "the top rows per key"
            }
        )
    }

    fn state_bytes(&self) -> usize {
        self.op.state_bytes()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::PhysicalSortExpr;

    use super::*;
    use crate::operators::{evaluate, route, Partition};

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    /// The largest v per k.
    fn spec() -> Arc<TopNSpec> {
        let mut fields: Vec<Field> = input()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("rn", DataType::UInt64, false));
        Arc::new(TopNSpec {
            kind: RankKind::RowNumber,
            partition_by: vec![Arc::new(Column::new("k", 0))],
            order_by: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 1)),
                options: SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            }],
            n: 1,
            input_schema: input(),
            output_schema: Arc::new(Schema::new(fields)),
            max_keys: 100,
            window: None,
            keep_all: false,
        })
    }

    fn rows(rows: &[(i64, i64)]) -> Changes {
        let k = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        let v = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        Changes::inserts(RecordBatch::try_new(input(), vec![Arc::new(k), Arc::new(v)]).unwrap())
    }

    fn rows_out(op: &mut TopN, c: Changes) -> usize {
        let mut out = Output::default();
        op.on_data(0, c, &mut out).unwrap();
        out.take().0.iter().map(Changes::num_rows).sum()
    }

    /// Ranked rows checkpointed on one partition and restored on two: each
    /// partition holds the keys the exchange routes to it, so a better row
    /// replaces the held one (a retraction and an insert) only there.
    #[test]
    fn restore_re_splits_ranked_rows_by_key() {
        let mut one = TopN::new(spec()).unwrap();
        let first: Vec<(i64, i64)> = (0..30).map(|k| (k, 10)).collect();
        assert_eq!(rows_out(&mut one, rows(&first)), 30);
        let state = one.checkpoint().unwrap();
        let mut parts: Vec<TopN> = (0..2)
            .map(|index| {
                let mut op = TopN::new(spec()).unwrap();
                let ctx = RestoreContext {
                    partition: Partition { index, count: 2 },
                    watermarks: &[None],
                };
                op.restore(state.clone(), &ctx).unwrap();
                op
            })
            .collect();
        for k in 0..30 {
            let better = rows(&[(k, 20)]);
            let keys = evaluate(&spec().partition_by, &better.batch).unwrap();
            let p = route(&keys, 1, 2).unwrap()[0];
            assert_eq!(rows_out(&mut parts[p], better.clone()), 2, "key {k}");
            // The other partition never held the key: a new first row.
            assert_eq!(rows_out(&mut parts[1 - p], better), 1, "key {k}");
        }
        assert!(parts.iter().all(|p| p.state_bytes() > 0));
    }
}
