//! The OVER operator against DataFusion's batch answer over the same rows.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use super::*;
use crate::operators::{Partition, StreamOperator};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(i64, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

const FUNCTIONS: &str = "sum(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s2, \
     lag(v) OVER (PARTITION BY k ORDER BY ts) AS prev, \
     lead(v, 2) OVER (PARTITION BY k ORDER BY ts) AS next2, \
     max(v) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '3 nanoseconds' PRECEDING AND CURRENT ROW) AS m3";

/// The batch answer over `rows`, as sorted lines.
async fn batch_answer(rows: &[(i64, i64, i64)], functions: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema(), vec![vec![batch(rows)]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let df = ctx
        .sql(&format!("SELECT k, ts, v, {functions} FROM t"))
        .await
        .unwrap();
    let mut lines: Vec<String> = df.collect().await.unwrap().iter().flat_map(lines).collect();
    lines.sort();
    lines
}

fn lines(b: &RecordBatch) -> Vec<String> {
    (0..b.num_rows())
        .map(|i| {
            b.columns()
                .iter()
                .map(|c| array_value_to_string(c, i).unwrap())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// The spec DataFusion's planner gives `functions` over `t`.
async fn spec(functions: &str, evict: bool) -> Arc<OverSpec> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema(), vec![vec![]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let plan = ctx
        .state()
        .create_logical_plan(&format!("SELECT k, ts, v, {functions} FROM t"))
        .await
        .unwrap();
    // Type coercion sets the frame bounds' types, as for a view.
    let state = ctx.state();
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .unwrap();
    let mut w = &plan;
    while !matches!(w, LogicalPlan::Window(_)) {
        w = w.inputs()[0];
    }
    let LogicalPlan::Window(w) = w else {
        unreachable!()
    };
    let in_schema = w.input.schema();
    let planning =
        datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
    let functions: Vec<_> = w
        .window_expr
        .iter()
        .map(|e| {
            datafusion::physical_planner::create_window_expr(
                e,
                in_schema,
                state.execution_props(),
                &planning,
            )
            .unwrap()
        })
        .collect();
    let key = Arc::new(datafusion::physical_expr::expressions::Column::new("k", 0));
    let ts = Arc::new(datafusion::physical_expr::expressions::Column::new("ts", 1));
    Arc::new(OverSpec {
        partition_by: vec![key],
        order_by: vec![datafusion::physical_expr::PhysicalSortExpr {
            expr: ts,
            options: Default::default(),
        }],
        shown: w
            .window_expr
            .iter()
            .map(|e| e.schema_name().to_string())
            .collect(),
        functions,
        before: vec![
            Extent::Rows(2),
            Extent::Rows(1),
            Extent::Range(Some(datafusion::common::ScalarValue::IntervalMonthDayNano(
                Some(datafusion::arrow::datatypes::IntervalMonthDayNano::new(
                    0, 0, 3,
                )),
            ))),
        ],
        after: vec![Extent::Rows(0), Extent::Rows(2), Extent::Range(None)],
        input_schema: schema(),
        output_schema: w.schema.inner().clone(),
        max_rows: 10_000,
        evict_by: evict.then_some(1),
    })
}

/// The view's rows: what the output changes add up to.
#[derive(Default)]
struct View(HashMap<String, i64>);

impl View {
    fn apply(&mut self, out: &mut Output) {
        for c in out.take().0 {
            for (i, line) in lines(&c.batch).into_iter().enumerate() {
                *self.0.entry(line).or_default() += c.weight(i);
            }
        }
    }

    fn rows(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .iter()
            .flat_map(|(l, n)| {
                assert!(*n >= 0, "row {l} retracted more often than inserted");
                std::iter::repeat_n(l.clone(), *n as usize)
            })
            .collect();
        v.sort();
        v
    }
}

/// Random inserts and retractions, in and out of order: after every batch
/// the view equals the batch answer over the rows held.
#[tokio::test]
async fn random_changes_match_the_batch_answer() {
    let spec = spec(FUNCTIONS, false).await;
    let mut op = Over::new(spec.clone()).unwrap();
    let mut view = View::default();
    let mut held: Vec<(i64, i64, i64)> = Vec::new();
    let mut seed = 7u64;
    let mut next = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    for round in 0..60 {
        let mut rows = Vec::new();
        let mut weights = Vec::new();
        for _ in 0..1 + next(4) {
            if !held.is_empty() && next(4) == 0 {
                let r = held.remove(next(held.len() as u64) as usize);
                rows.push(r);
                weights.push(-1);
            } else {
                // Unique times per key: ROWS frames and LAG are then well defined.
                let k = next(3) as i64;
                let ts = loop {
                    let t = next(40) as i64;
                    if !held.iter().chain(&rows).any(|r| r.0 == k && r.1 == t) {
                        break t;
                    }
                };
                let r = (k, ts, next(100) as i64);
                held.push(r);
                rows.push(r);
                weights.push(1);
            }
        }
        let changes = Changes::with_weights(batch(&rows), Int64Array::from(weights));
        let mut out = Output::default();
        op.on_data(0, changes, &mut out).unwrap();
        view.apply(&mut out);
        assert_eq!(
            view.rows(),
            batch_answer(&held, FUNCTIONS).await,
            "after round {round}"
        );
    }
    assert!(op.state_bytes() > 0);
    // A restore on two partitions splits the rows by key, and each goes on alike.
    let state = op.checkpoint().unwrap();
    let mut total = 0;
    for index in 0..2 {
        let mut part = Over::new(spec.clone()).unwrap();
        let ctx = RestoreContext {
            partition: Partition { index, count: 2 },
            watermarks: &[None],
        };
        part.restore(state.clone(), &ctx).unwrap();
        let rows = part.checkpoint().unwrap().take("rows");
        total += rows.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    assert_eq!(total, held.len());
}

/// In order by event time with a watermark: each row's output comes once,
/// and state stays bounded.
#[tokio::test]
async fn watermark_frees_rows_no_frame_reaches() {
    let functions =
        "sum(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s2";
    let mut spec = Arc::unwrap_or_clone(spec(functions, true).await);
    spec.before = vec![Extent::Rows(2)];
    spec.after = vec![Extent::Rows(0)];
    let mut op = Over::new(Arc::new(spec)).unwrap();
    let mut view = View::default();
    let mut all = Vec::new();
    for t in 0..200 {
        let row = (t % 2, t, t);
        all.push(row);
        let mut out = Output::default();
        op.on_data(0, Changes::inserts(batch(&[row])), &mut out)
            .unwrap();
        let (changes, _) = out.take();
        // In order: one insert, nothing retracted.
        assert_eq!(changes.iter().map(|c| c.num_rows()).sum::<usize>(), 1);
        assert!(changes
            .iter()
            .all(|c| c.is_append_only() || c.weight(0) == 1));
        for c in changes {
            for (i, line) in lines(&c.batch).into_iter().enumerate() {
                *view.0.entry(line).or_default() += c.weight(i);
            }
        }
        op.on_watermark(0, &[Some(t - 1)], &mut Output::default())
            .unwrap();
    }
    assert_eq!(view.rows(), batch_answer(&all, functions).await);
    // Per key: the rows at or above the watermark, and the three before them.
    let held = op.checkpoint().unwrap().take("rows")[0].num_rows();
    assert!(held <= 10, "{held} rows held");
}

#[tokio::test]
async fn explain_names_functions_and_reach() {
    let op = Over::new(spec(FUNCTIONS, false).await).unwrap();
    let line = op.explain();
    assert!(
        line.starts_with("Over: [sum(t.v) PARTITION BY [t.k]"),
        "{line}"
    );
    assert!(line.contains("] per [k@0] by [ts@1 ASC]"), "{line}");
    assert!(
        line.contains("reach 2 rows, 1 rows, range 3 ns before"),
        "{line}"
    );
    assert!(line.contains("0 rows, 2 rows, peers after"), "{line}");
    assert!(line.ends_with("state every row"), "{line}");
}
