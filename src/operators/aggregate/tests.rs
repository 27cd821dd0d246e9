//! The columnar layout against the boxed one: the same spec, the same batches, the same
//! output, batch by batch; and checkpoints that restore across layouts.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::functions_aggregate::{average, count, covariance, min_max, sum, variance};
use datafusion::logical_expr::{AggregateUDF, Operator};
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{binary, cast, lit, Column};
use datafusion::physical_expr::PhysicalExpr;

use super::*;
use crate::sql::EmitMode;
use crate::types::Changes;

const S: i64 = 1_000_000_000;

/// Input: (k, v, window_start), as window assignment leaves it.
fn input_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("window_start", ts, false),
    ]))
}

/// How the aggregate is grouped and emits.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `GROUP BY window_start, k` over TUMBLE 10 s.
    Tumble(EmitMode),
    /// `GROUP BY window_start, k` over HOP 10 s / 2 s, aggregated per pane.
    Hop(EmitMode),
    /// `GROUP BY k`, no window.
    Keyed,
    /// No GROUP BY.
    Global,
}

fn call(
    udf: Arc<AggregateUDF>,
    arg: Arc<dyn PhysicalExpr>,
    name: &str,
) -> Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr> {
    Arc::new(
        AggregateExprBuilder::new(udf, vec![arg])
            .schema(input_schema())
            .alias(name)
            .build()
            .expect("aggregate"),
    )
}

fn spec(shape: Shape) -> Arc<AggregateSpec> {
    let k: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
    let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 1));
    let ws: Arc<dyn PhysicalExpr> = Arc::new(Column::new("window_start", 2));
    // avg's argument as the analyzer coerces it.
    let vf = cast(v.clone(), &input_schema(), DataType::Float64).expect("cast");
    let big = binary(v.clone(), Operator::Gt, lit(50i64), &input_schema()).expect("filter");
    let aggs = vec![
        AggCall {
            func: call(count::count_udaf(), lit(1i64), "n"),
            args: vec![lit(1i64)],
            filter: None,
        },
        AggCall {
            func: call(sum::sum_udaf(), v.clone(), "s"),
            args: vec![v.clone()],
            filter: None,
        },
        AggCall {
            func: call(min_max::max_udaf(), v.clone(), "m"),
            args: vec![v.clone()],
            filter: None,
        },
        AggCall {
            func: call(average::avg_udaf(), vf.clone(), "a"),
            args: vec![vf.clone()],
            filter: None,
        },
        AggCall {
            func: call(sum::sum_udaf(), v.clone(), "big"),
            args: vec![v.clone()],
            filter: Some(big),
        },
        AggCall {
            func: call(min_max::min_udaf(), v.clone(), "lo"),
            args: vec![v],
            filter: None,
        },
        AggCall {
            func: call(variance::var_samp_udaf(), vf.clone(), "var"),
            args: vec![vf],
            filter: None,
        },
    ];
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let mut fields = match shape {
        Shape::Tumble(_) | Shape::Hop(_) => vec![
            Field::new("window_start", ts, false),
            Field::new("k", DataType::Int64, false),
        ],
        Shape::Keyed => vec![Field::new("k", DataType::Int64, false)],
        Shape::Global => vec![],
    };
    for a in &aggs {
        fields.push(a.func.field().as_ref().clone().with_nullable(true));
    }
    let (group_exprs, emit) = match shape {
        Shape::Tumble(e) | Shape::Hop(e) => (vec![ws, k], e),
        Shape::Keyed => (vec![k], EmitMode::OnUpdate),
        Shape::Global => (vec![], EmitMode::OnUpdate),
    };
    let windowed = matches!(shape, Shape::Tumble(_) | Shape::Hop(_));
    let hop = matches!(shape, Shape::Hop(_));
    Arc::new(AggregateSpec {
        group_exprs,
        aggs,
        output_schema: Arc::new(Schema::new(fields)),
        window: windowed.then_some(WindowKey {
            group_index: 0,
            is_end: false,
            size_ns: 10 * S,
        }),
        session: None,
        emit,
        max_groups: 1_000_000,
        retract: false,
        panes: hop.then_some(PaneSpec {
            slide_ns: 2 * S,
            size_ns: 10 * S,
            start_group: Some(0),
            end_group: None,
        }),
    })
}

/// A deterministic batch: `rows` rows over `keys` keys, times from `t0` (s) on, windows (or
/// panes) of `pane` seconds; some values null.
fn batch(seed: u64, rows: usize, keys: i64, t0: i64, pane: i64) -> Changes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as i64
    };
    let mut k = Vec::new();
    let mut v = Vec::new();
    let mut ws = Vec::new();
    for _ in 0..rows {
        k.push(next() % keys);
        let r = next() % 100;
        v.push((r >= 5).then_some(r));
        let t = t0 + next() % 6;
        ws.push(t.div_euclid(pane) * pane * S);
    }
    let b = RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(Int64Array::from(k)),
            Arc::new(Int64Array::from(v)),
            Arc::new(TimestampNanosecondArray::from(ws)),
        ],
    )
    .expect("batch");
    Changes::inserts(b)
}

/// Rows of `c` as sorted text lines with their weights.
fn lines(c: Option<Changes>) -> Vec<String> {
    let Some(c) = c else { return vec![] };
    let mut out: Vec<String> = (0..c.num_rows())
        .map(|i| {
            let cols: Vec<String> = c
                .batch
                .columns()
                .iter()
                .map(|a| match a.as_primitive_opt::<Float64Type>() {
                    // Merging partial states rounds differently from adding rows one by one
                    // (variance): compare floats to 12 significant digits.
                    Some(f) if f.is_valid(i) => format!("{:.11e}", f.value(i)),
                    _ => array_value_to_string(a, i).expect("display"),
                })
                .collect();
            format!("{:+} {}", c.weight(i), cols.join("|"))
        })
        .collect();
    out.sort();
    out
}

/// The layouts, behind one interface.
trait Layout {
    fn process(&mut self, c: &Changes) -> crate::error::Result<Option<Changes>>;
    fn on_watermark(&mut self, wm: i64) -> crate::error::Result<Option<Changes>>;
    fn snapshot(&mut self) -> crate::error::Result<RecordBatch>;
    fn restore(&mut self, b: &[RecordBatch]) -> crate::error::Result<()>;
    fn groups(&self) -> usize;
}

macro_rules! layout {
    ($t:ty) => {
        impl Layout for $t {
            fn process(&mut self, c: &Changes) -> crate::error::Result<Option<Changes>> {
                <$t>::process(self, c)
            }
            fn on_watermark(&mut self, wm: i64) -> crate::error::Result<Option<Changes>> {
                <$t>::on_watermark(self, wm)
            }
            fn snapshot(&mut self) -> crate::error::Result<RecordBatch> {
                <$t>::snapshot(self)
            }
            fn restore(&mut self, b: &[RecordBatch]) -> crate::error::Result<()> {
                <$t>::restore(self, b)
            }
            fn groups(&self) -> usize {
                <$t>::groups(self)
            }
        }
    };
}
layout!(AggregateOperator);
layout!(Columnar);
layout!(Closing);

/// Which layout a test runs against the boxed one.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Columnar,
    Closing,
}

/// The layout `kind` and the boxed one for `shape`.
fn pair(shape: Shape, kind: Kind) -> (Box<dyn Layout>, Box<dyn Layout>) {
    let s = spec(shape);
    let tested: Box<dyn Layout> = match kind {
        Kind::Columnar => Box::new(
            Columnar::try_new(s.clone())
                .expect("columnar")
                .expect("count, sum, max and avg have GroupsAccumulators"),
        ),
        Kind::Closing => Box::new(
            Closing::try_new(s.clone())
                .expect("closing")
                .expect("a windowed aggregate emitting on close"),
        ),
    };
    (tested, Box::new(AggregateOperator::new(s).expect("boxed")))
}

/// Run 30 batches through `kind` and the boxed layout, with watermarks, checking every
/// output; halfway, each restores from the other's checkpoint.
fn same_output(shape: Shape, kind: Kind, keys: i64, rows: usize) {
    let pane = if matches!(shape, Shape::Hop(_)) {
        2
    } else {
        10
    };
    let what = format!("{kind:?} {shape:?}");
    let (mut col, mut boxed) = pair(shape, kind);
    let mut emitted = 0;
    for step in 0..30u64 {
        let t0 = step as i64;
        let b = batch(step, rows, keys, t0, pane);
        let (a, e) = (
            col.process(&b).expect("tested"),
            boxed.process(&b).expect("boxed"),
        );
        let a = lines(a);
        emitted += a.len();
        assert_eq!(a, lines(e), "{what}: batch {step}");
        let wm = (t0 - 2) * S;
        let (a, e) = (
            col.on_watermark(wm).expect("c"),
            boxed.on_watermark(wm).expect("b"),
        );
        let a = lines(a);
        emitted += a.len();
        assert_eq!(a, lines(e), "{what}: watermark after batch {step}");
        if matches!((kind, shape), (Kind::Closing, Shape::Hop(_))) {
            // A pane's group feeds several windows: only the absence of state compares.
            assert_eq!(col.groups() == 0, boxed.groups() == 0, "{what}: groups");
        } else {
            assert_eq!(
                col.groups(),
                boxed.groups(),
                "{what}: groups after batch {step}"
            );
        }
        if step == 15 {
            let (c_snap, b_snap) = (col.snapshot().expect("c"), boxed.snapshot().expect("b"));
            assert_eq!(c_snap.num_rows(), b_snap.num_rows());
            let (mut c2, mut b2) = pair(shape, kind);
            c2.restore(&[b_snap]).expect("tested from boxed");
            b2.restore(&[c_snap]).expect("boxed from tested");
            (col, boxed) = (c2, b2);
        }
    }
    let (a, e) = (
        col.on_watermark(i64::MAX - 1).expect("c"),
        boxed.on_watermark(i64::MAX - 1).expect("b"),
    );
    assert_eq!(lines(a), lines(e), "{what}: final watermark");
    assert!(emitted > 0, "{what}: the test emitted nothing");
}

#[test]
fn tumble_on_update_matches_the_boxed_layout() {
    same_output(Shape::Tumble(EmitMode::OnUpdate), Kind::Columnar, 7, 40);
    same_output(Shape::Tumble(EmitMode::OnUpdate), Kind::Columnar, 500, 300);
}

#[test]
fn tumble_on_window_close_matches_the_boxed_layout() {
    same_output(
        Shape::Tumble(EmitMode::OnWindowClose),
        Kind::Columnar,
        50,
        200,
    );
    same_output(
        Shape::Tumble(EmitMode::OnWindowClose),
        Kind::Closing,
        50,
        200,
    );
    same_output(
        Shape::Tumble(EmitMode::OnWindowClose),
        Kind::Closing,
        3,
        500,
    );
}

#[test]
fn hop_panes_match_the_boxed_layout() {
    same_output(Shape::Hop(EmitMode::OnUpdate), Kind::Columnar, 5, 60);
    same_output(
        Shape::Hop(EmitMode::OnWindowClose),
        Kind::Columnar,
        300,
        400,
    );
    same_output(Shape::Hop(EmitMode::OnWindowClose), Kind::Closing, 300, 400);
    same_output(Shape::Hop(EmitMode::OnWindowClose), Kind::Closing, 4, 100);
    same_output(Shape::Hop(EmitMode::OnWindowClose), Kind::Closing, 1, 30);
}

#[test]
fn unwindowed_and_global_aggregates_match_the_boxed_layout() {
    same_output(Shape::Keyed, Kind::Columnar, 20, 50);
    same_output(Shape::Global, Kind::Columnar, 1, 50);
}

#[test]
fn a_full_state_is_a_clear_error_and_keeps_what_it_held() {
    let mut s = Arc::unwrap_or_clone(spec(Shape::Keyed));
    s.max_groups = 10;
    let mut col = Columnar::try_new(Arc::new(s))
        .expect("c")
        .expect("columnar");
    col.process(&batch(1, 50, 10, 0, 10)).expect("ten keys fit");
    let e = col.process(&batch(2, 50, 11, 0, 10)).unwrap_err();
    assert_eq!(e.sqlstate(), "53400");
    assert_eq!(col.groups(), 10);
}

#[test]
fn a_full_window_state_is_a_clear_error_too() {
    let mut s = Arc::unwrap_or_clone(spec(Shape::Tumble(EmitMode::OnWindowClose)));
    s.max_groups = 10;
    let mut closing = Closing::try_new(Arc::new(s)).expect("c").expect("closing");
    closing
        .process(&batch(1, 50, 10, 0, 10))
        .expect("ten keys fit");
    let e = closing.process(&batch(2, 50, 11, 0, 10)).unwrap_err();
    assert_eq!(e.sqlstate(), "53400");
    assert_eq!(closing.groups(), 10);
    // What it held still closes.
    let out = closing
        .on_watermark(i64::MAX - 1)
        .expect("close")
        .expect("rows");
    assert_eq!(out.num_rows(), 10);
}

#[test]
fn a_full_pane_state_is_a_clear_error_and_undoes_the_batch() {
    let mut s = Arc::unwrap_or_clone(spec(Shape::Hop(EmitMode::OnWindowClose)));
    s.max_groups = 30;
    let mut panes = Closing::try_new(Arc::new(s)).expect("p").expect("panes");
    // Counting window groups, the boxed layout holds more: it keeps the default limit.
    let mut boxed =
        AggregateOperator::new(spec(Shape::Hop(EmitMode::OnWindowClose))).expect("boxed");
    // 200 rows, 10 keys, times over 6 s: 3 panes of 10 groups.
    let first = batch(1, 200, 10, 0, 2);
    panes.process(&first).expect("thirty groups fit");
    boxed.process(&first).expect("boxed");
    assert_eq!(panes.groups(), 30);
    // New keys in the same panes, and a fourth pane: nothing of the batch is kept.
    let e = panes.process(&batch(2, 200, 20, 2, 2)).unwrap_err();
    assert_eq!(e.sqlstate(), "53400");
    assert_eq!(panes.groups(), 30);
    let (a, b) = (
        panes.on_watermark(i64::MAX - 1).expect("close"),
        boxed.on_watermark(i64::MAX - 1).expect("close"),
    );
    let a = lines(a);
    assert_eq!(a.len(), 70, "7 windows of 10 keys");
    assert_eq!(a, lines(b));
    assert_eq!(panes.groups(), 0);
}

#[test]
fn a_retracting_input_or_an_aggregate_without_groups_accumulator_stays_boxed() {
    let mut s = Arc::unwrap_or_clone(spec(Shape::Keyed));
    s.retract = true;
    assert!(Columnar::try_new(Arc::new(s)).expect("ok").is_none());
    let mut s = Arc::unwrap_or_clone(spec(Shape::Keyed));
    let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 1));
    let vf = cast(v, &input_schema(), DataType::Float64).expect("cast");
    let covar = AggregateExprBuilder::new(covariance::covar_samp_udaf(), vec![vf.clone(); 2])
        .schema(input_schema())
        .alias("c")
        .build()
        .expect("covar_samp");
    s.aggs[0] = AggCall {
        func: Arc::new(covar),
        args: vec![vf.clone(); 2],
        filter: None,
    };
    assert!(Columnar::try_new(Arc::new(s)).expect("ok").is_none());
    // DISTINCT, and max over floats (PostgreSQL's max is NaN if there is one).
    let distinct = AggregateExprBuilder::new(count::count_udaf(), vec![vf.clone()])
        .schema(input_schema())
        .alias("d")
        .distinct()
        .build()
        .expect("count distinct");
    let float_max = call(min_max::max_udaf(), vf.clone(), "fm");
    for func in [Arc::new(distinct), float_max] {
        let mut s = Arc::unwrap_or_clone(spec(Shape::Keyed));
        s.aggs[0] = AggCall {
            func,
            args: vec![vf.clone()],
            filter: None,
        };
        assert!(Columnar::try_new(Arc::new(s)).expect("ok").is_none());
    }
}

/// What a sequence of changes adds up to: each row's net weight (rows netting zero left out).
fn integral(all: &[Changes]) -> Vec<String> {
    let mut net: std::collections::BTreeMap<String, i64> = Default::default();
    for c in all {
        for line in lines(Some(c.clone())) {
            let (w, row) = line.split_once(' ').expect("weight and row");
            *net.entry(row.to_string()).or_default() += w.parse::<i64>().expect("weight");
        }
    }
    net.into_iter()
        .filter(|(_, w)| *w != 0)
        .map(|(row, w)| format!("{w:+} {row}"))
        .collect()
}

/// An aggregate without windows restates exactly what its output adds up to (what a new
/// operator after it must start from), after a restore too; a windowed one refuses.
#[test]
fn standing_output_is_what_the_output_adds_up_to() {
    use crate::operators::{Output, StreamOperator};
    for shape in [Shape::Keyed, Shape::Global] {
        let mut op = Aggregate::new(spec(shape)).expect("aggregate");
        let mut emitted = Vec::new();
        for step in 0..12u64 {
            let mut out = Output::default();
            op.on_data(0, batch(step, 40, 5, step as i64, 10), &mut out)
                .expect("data");
            emitted.extend(out.take().0);
        }
        let want = integral(&emitted);
        assert!(!want.is_empty(), "{shape:?}: nothing emitted");
        assert!(want.iter().all(|l| l.starts_with("+1 ")), "{want:?}");
        assert_eq!(
            integral(&op.standing().expect("standing")),
            want,
            "{shape:?}"
        );
        let state = op.checkpoint().expect("checkpoint");
        let mut restored = Aggregate::new(spec(shape)).expect("aggregate");
        let ctx = crate::operators::RestoreContext {
            partition: crate::operators::Partition::SINGLE,
            watermarks: &[None],
        };
        restored.restore(state, &ctx).expect("restore");
        assert_eq!(
            integral(&restored.standing().expect("standing")),
            want,
            "{shape:?} restored"
        );
    }
    let mut windowed = Aggregate::new(spec(Shape::Tumble(EmitMode::OnUpdate))).expect("tumble");
    assert!(windowed.standing().is_err());
}
