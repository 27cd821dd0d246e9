//! Micro-benchmarks of the streaming operators, built by the real planner.
//!
//! Run: `cargo bench --bench operators` (criterion reports time per batch and
//! rows/s as "elements").

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionConfig;
use eddy::operators::{Output, Partition, StreamOperator};
use eddy::plan::{plan_view, PlanInputs, ViewPlan};
use eddy::sql::{parse, Statement};
use eddy::types::Changes;

const BATCH_ROWS: usize = 8192;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]))
}

/// Event-time step between consecutive bids: 100,000 bids per second, 1 M in a 10 s window (so
/// the window state can hold up to 1 M keys).
const STEP_NS: i64 = 10_000;

/// A batch of `rows` bids from bid number `start` on: auctions cycle through `keys` distinct
/// values (bid i bids on auction i × 7919 mod `keys`, so a run of `keys` bids covers them all),
/// event times [`STEP_NS`] apart.
fn batch_of(rows: usize, keys: i64, start: i64) -> Changes {
    let n = rows as i64;
    let auction = Int64Array::from_iter_values((0..n).map(|i| ((start + i) * 7919) % keys));
    let price = Int64Array::from_iter_values((0..n).map(|i| (i * 31) % 1000));
    let ts = TimestampNanosecondArray::from_iter_values((0..n).map(|i| (start + i) * STEP_NS));
    let b = RecordBatch::try_new(
        schema(),
        vec![Arc::new(auction), Arc::new(price), Arc::new(ts)],
    )
    .expect("batch");
    Changes::inserts(b)
}

/// A batch of [`BATCH_ROWS`] bids.
fn batch(keys: i64, start: i64) -> Changes {
    batch_of(BATCH_ROWS, keys, start)
}

fn plan(sql: &str) -> ViewPlan {
    let Statement::CreateView(v) = parse(sql).expect("parse").remove(0) else {
        panic!("not a view")
    };
    let mut inputs = HashMap::new();
    inputs.insert(
        "bids".to_string(),
        PlanInputs {
            schema: schema(),
            time_column: Some("ts".into()),
            updating: false,
            kind: "table".into(),
            upsert: false,
        },
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(plan_view(
        &v,
        &inputs,
        SessionConfig::new(),
        &[],
        1,
        10_000_000,
    ))
    .expect("plan")
}

const TUMBLE: &str = "CREATE MATERIALIZED VIEW v AS SELECT window_start, auction, count(*) AS n, \
    sum(price) AS s, max(price) AS m FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) \
    GROUP BY window_start, auction";
const HOP: &str = "CREATE MATERIALIZED VIEW v AS SELECT window_start, auction, count(*) AS n, \
    sum(price) AS s, max(price) AS m FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
    GROUP BY window_start, auction";

/// The operators of a view whose graph is a line (one input), on one
/// partition, run one after the other as the runtime's chained task runs them.
struct Line {
    ops: Vec<Box<dyn StreamOperator>>,
}

impl Line {
    /// The operators of `plan` whose id starts with `kind` (all with "").
    fn new(plan: &ViewPlan, kind: &str) -> Self {
        let ops = plan
            .graph
            .nodes
            .iter()
            .filter(|n| n.id.starts_with(kind))
            .map(|n| (n.make)(Partition::SINGLE).expect("operator"))
            .collect();
        Line { ops }
    }

    /// Rows out of the last operator for `changes` into the first.
    fn push(&mut self, changes: &Changes) -> usize {
        let mut batches = vec![changes.clone()];
        for op in &mut self.ops {
            let mut out = Output::default();
            for c in batches {
                op.on_data(0, c, &mut out).expect("on_data");
            }
            batches = out.take().0;
        }
        batches.iter().map(|c| c.num_rows()).sum()
    }

    /// The input watermark reaches `t`.
    fn watermark(&mut self, t: i64) {
        let mut w = Some(t);
        for op in &mut self.ops {
            let mut out = Output::default();
            w = op.on_watermark(0, &[w], &mut out).expect("watermark");
        }
    }
}

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("window_aggregate");
    let tumble_close = format!("{TUMBLE} EMIT ON WINDOW CLOSE");
    let hop_close = format!("{HOP} EMIT ON WINDOW CLOSE");
    for (name, sql) in [
        ("tumble_10s", TUMBLE),
        ("hop_10s_2s", HOP),
        ("tumble_10s_close", tumble_close.as_str()),
        ("hop_10s_2s_close", hop_close.as_str()),
    ] {
        let plan = plan(sql);
        for (rows, keys) in [
            (BATCH_ROWS, 10i64),
            (BATCH_ROWS, 10_000),
            (BATCH_ROWS, 1_000_000),
            (256, 10_000),
            (1024, 10_000),
            (65_536, 10_000),
        ] {
            group.throughput(Throughput::Elements(rows as u64));
            let mut line = Line::new(&plan, "");
            let mut start = 0i64;
            let id = BenchmarkId::new(name, format!("{rows}rows_{keys}keys"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    // Advance time so windows close and state stays bounded.
                    let input = batch_of(rows, keys, start);
                    start += rows as i64;
                    let out = line.push(&input);
                    line.watermark(start * STEP_NS - 1_000_000_000);
                    out
                })
            });
        }
    }
    group.finish();
}

/// Not timed: state bytes per group of a window holding 1 M keys (count, sum and max), as the
/// operators report them, for each way of emitting.
fn state_per_group(_: &mut Criterion) {
    const KEYS: i64 = 1_000_000;
    for (name, sql) in [
        ("on update", TUMBLE.to_string()),
        ("on window close", format!("{TUMBLE} EMIT ON WINDOW CLOSE")),
    ] {
        let plan = plan(&sql);
        let mut line = Line::new(&plan, "");
        // 1 M bids, keys 0..1 M in one 10 s window.
        for start in (0..KEYS).step_by(BATCH_ROWS) {
            let n = BATCH_ROWS.min((KEYS - start) as usize);
            let auction = Int64Array::from_iter_values(start..start + n as i64);
            let price = Int64Array::from_iter_values((0..n as i64).map(|i| i % 1000));
            let ts = TimestampNanosecondArray::from_iter_values((0..n as i64).map(|_| 0));
            let b = RecordBatch::try_new(
                schema(),
                vec![Arc::new(auction), Arc::new(price), Arc::new(ts)],
            )
            .expect("batch");
            line.push(&Changes::inserts(b));
        }
        let bytes: usize = line.ops.iter().map(|o| o.state_bytes()).sum();
        println!(
            "window_aggregate state, {name}: {} bytes per group ({} MiB for {KEYS} groups)",
            bytes as i64 / KEYS,
            bytes >> 20
        );
    }
}

fn window_assign(c: &mut Criterion) {
    let mut group = c.benchmark_group("window_assign");
    group.throughput(Throughput::Elements(BATCH_ROWS as u64));
    for (name, sql) in [("tumble", TUMBLE), ("hop_5_windows", HOP)] {
        let plan = plan(sql);
        let mut line = Line::new(&plan, "window");
        let input = batch(100, 0);
        group.bench_function(name, |b| b.iter(|| line.push(&input)));
    }
    group.finish();
}

/// A TUMBLE 10 s count + sum + max over 1 M keys, next to DataFusion's own hash aggregate over
/// the same batches (one core each): 2 M bids in 8,192-row batches, two windows of 1 M keys.
/// eddy's side runs the view's whole line (window assignment, exchange, aggregate) with a
/// watermark after every batch and emits every window; DataFusion's groups by
/// `date_bin('10 s', ts), auction` in one `GROUP BY` over an in-memory table.
fn against_datafusion(c: &mut Criterion) {
    const KEYS: i64 = 1_000_000;
    const ROWS: i64 = 2 * KEYS;
    let batches: Vec<Changes> = (0..ROWS)
        .step_by(BATCH_ROWS)
        .map(|start| batch_of(BATCH_ROWS.min((ROWS - start) as usize), KEYS, start))
        .collect();
    let mut group = c.benchmark_group("aggregate_1m_keys");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    let close = plan(&format!("{TUMBLE} EMIT ON WINDOW CLOSE"));
    group.bench_function("eddy_tumble_10s_close", |b| {
        b.iter(|| {
            let mut line = Line::new(&close, "");
            let mut out = 0;
            for c in &batches {
                out += line.push(c);
                line.watermark(ts_of(c) - 1);
            }
            line.watermark(i64::MAX - 1);
            out
        })
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ctx = datafusion::prelude::SessionContext::new_with_config(
        SessionConfig::new().with_target_partitions(1),
    );
    let raw: Vec<RecordBatch> = batches.iter().map(|c| c.batch.clone()).collect();
    let table =
        datafusion::datasource::MemTable::try_new(schema(), vec![raw]).expect("memory table");
    ctx.register_table("bids", Arc::new(table))
        .expect("register");
    let sql = "SELECT date_bin(INTERVAL '10 seconds', ts) AS window_start, auction, count(*), \
        sum(price), max(price) FROM bids GROUP BY 1, 2";
    group.bench_function("datafusion_hash_aggregate", |b| {
        b.iter(|| {
            rt.block_on(async {
                let batches = ctx.sql(sql).await?.collect().await?;
                Ok::<_, datafusion::error::DataFusionError>(
                    batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                )
            })
            .expect("query")
        })
    });
    group.finish();
}

/// The event time (ns) of the first row of `c` (the bench's batches are in time order).
fn ts_of(c: &Changes) -> i64 {
    c.batch
        .column(2)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .map_or(0, |t| t.value(0))
}

fn planner(c: &mut Criterion) {
    c.bench_function("plan_tumble_view", |b| {
        b.iter(|| plan(TUMBLE).graph.nodes.len())
    });
}

criterion_group!(
    benches,
    window_assign,
    aggregate,
    state_per_group,
    against_datafusion,
    planner
);
criterion_main!(benches);
