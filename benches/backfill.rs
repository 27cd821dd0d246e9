//! What a backfill costs the views that are already running, and how fast it
//! reads: in-process (the same engine the server runs, without the wire
//! protocol).
//!
//! A live view counts an unthrottled datagen source per key (1,000 keys, as
//! fast as the machine goes: it leaves no core idle). Its rate is measured alone, then while a new view backfills a file
//! source of `EDDY_BENCH_ROWS` JSON rows (default 2,000,000; its first view
//! read it before, and the source keeps only 10,000 of them, so the new view
//! must read the file again), unthrottled and with
//! `backfill.rows_per_second`. Printed per run: the live view's rows/s, its
//! share lost to the backfill, the backfill's rows/s and duration, and that
//! the backfilled view counted every row exactly once. Last, the live view
//! is replaced in place (`CREATE OR REPLACE`, same operators) five times
//! under load, then five times with a new `HAVING` (the aggregate's state
//! carried into a new view): how long the statement takes (its inputs are
//! held meanwhile).
//!
//! Run: `cargo bench --bench backfill` (`EDDY_BENCH_ROWS=N`,
//! `EDDY_BENCH_THROTTLE=rows/s`, default 200,000).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use eddy::engine::{Engine, Limits, Outcome};
use eddy::sql::parse;

/// The server's allocator (see `src/main.rs`), so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the live view's rate is measured alone.
const BASELINE: Duration = Duration::from_secs(4);

async fn run(engine: &Engine, sql: &str) {
    for stmt in parse(sql).expect("parse") {
        engine.execute(stmt).await.expect("execute");
    }
}

/// The first column of the first row, as text.
async fn value(engine: &Engine, sql: &str) -> Option<String> {
    let stmt = parse(sql).expect("parse").remove(0);
    let Outcome::Rows(df) = engine.execute(stmt).await.expect("execute") else {
        return None;
    };
    let batches = df.collect().await.expect("collect");
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let c = b.column(0);
    if let Some(i) = c.as_any().downcast_ref::<Int64Array>() {
        return i.is_valid(0).then(|| i.value(0).to_string());
    }
    c.as_any()
        .downcast_ref::<StringArray>()
        .map(|s| s.value(0).to_string())
}

async fn count(engine: &Engine, view: &str) -> i64 {
    value(
        engine,
        &format!("SELECT CAST(sum(n) AS BIGINT) FROM {view}"),
    )
    .await
    .and_then(|v| v.parse().ok())
    .unwrap_or(0)
}

async fn wait_for(engine: &Engine, view: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(engine, view).await < n {
        assert!(Instant::now() < deadline, "{view} never counted {n} rows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live view's rows/s over `d`.
async fn live_rate(engine: &Engine, d: Duration) -> f64 {
    let (t0, n0) = (Instant::now(), count(engine, "live").await);
    tokio::time::sleep(d).await;
    (count(engine, "live").await - n0) as f64 / t0.elapsed().as_secs_f64()
}

/// Create view `name` on the file (a backfill) and measure until it has
/// caught up: (live rows/s meanwhile, backfill seconds).
async fn during_backfill(engine: &Engine, name: &str, with: &str, rows: i64) -> (f64, f64) {
    let (t0, n0) = (Instant::now(), count(engine, "live").await);
    run(
        engine,
        &format!("CREATE MATERIALIZED VIEW {name} {with} AS SELECT count(*) AS n FROM history"),
    )
    .await;
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let status = value(
            engine,
            &format!("SELECT status FROM eddy.views WHERE name = '{name}'"),
        )
        .await;
        if status.as_deref() == Some("running") && count(engine, name).await == rows {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: backfill did not end ({status:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let live = (count(engine, "live").await - n0) as f64 / secs;
    (live, secs)
}

fn main() {
    let rows: i64 = std::env::var("EDDY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let throttle: i64 = std::env::var("EDDY_BENCH_THROTTLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("eddy-bench-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("history.json");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).expect("file"));
        for i in 0..rows {
            writeln!(
                w,
                r#"{{"id": {i}, "account": "acct-{}", "amount": {}}}"#,
                i % 1000,
                i % 97
            )
            .expect("write");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let limits = Limits {
            table_retain_rows: 10_000,
            ..Limits::default()
        };
        let engine = Arc::new(Engine::new(limits).expect("engine"));
        run(
            &engine,
            &format!(
                "CREATE SOURCE history (id BIGINT, account VARCHAR, amount BIGINT)
                   WITH (connector = 'file', path = '{}', format = 'json');
                 CREATE MATERIALIZED VIEW first AS SELECT count(*) AS n FROM history;",
                file.display()
            ),
        )
        .await;
        wait_for(&engine, "first", rows).await;
        run(
            &engine,
            "CREATE SOURCE events (k BIGINT, v BIGINT)
               WITH (connector = 'datagen', rows_per_second = '0', seed = '1',
                     'fields.k.min' = '0', 'fields.k.max' = '999');
             CREATE MATERIALIZED VIEW live AS SELECT k, count(*) AS n, max(v) AS top
               FROM events GROUP BY k;",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let alone = live_rate(&engine, BASELINE).await;
        println!("live view alone                    {alone:>12.0} rows/s");
        for (name, with) in [
            ("unthrottled", String::new()),
            (
                "throttled",
                format!("WITH (backfill.rows_per_second = {throttle})"),
            ),
        ] {
            let (live, secs) = during_backfill(&engine, name, &with, rows).await;
            println!(
                "live view during a {name:<11} backfill {live:>12.0} rows/s  ({:>4.1} % less)  \
                 backfill: {rows} rows in {secs:.2} s = {:.0} rows/s",
                100.0 * (1.0 - live / alone),
                rows as f64 / secs
            );
            let again = live_rate(&engine, BASELINE).await;
            println!("live view after it                 {again:>12.0} rows/s");
        }
        // The live view replaced in place (same operators): how long its inputs are held.
        let mut took = Vec::new();
        for i in 0..5 {
            let t = Instant::now();
            run(
                &engine,
                &format!(
                    "CREATE OR REPLACE MATERIALIZED VIEW live WITH (state_ttl = '{} hours') AS \
                     SELECT k, count(*) AS n, max(v) AS top FROM events GROUP BY k",
                    i + 1
                ),
            )
            .await;
            took.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        took.sort_by(f64::total_cmp);
        println!(
            "in-place CREATE OR REPLACE of the live view under load: median {:.1} ms, max {:.1} ms",
            took[took.len() / 2],
            took[took.len() - 1]
        );
        // Only what follows the aggregate changes: a new view takes over the aggregate's
        // state and is given its 1,000 groups first.
        let mut took = Vec::new();
        for i in 0..5 {
            let t = Instant::now();
            run(
                &engine,
                &format!(
                    "CREATE OR REPLACE MATERIALIZED VIEW live AS \
                     SELECT k, count(*) AS n, max(v) AS top FROM events GROUP BY k \
                     HAVING count(*) > {i}"
                ),
            )
            .await;
            took.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let groups = value(&engine, "SELECT count(*) FROM live").await;
            assert_eq!(groups.as_deref(), Some("1000"), "the kept groups");
        }
        took.sort_by(f64::total_cmp);
        println!(
            "CREATE OR REPLACE keeping the aggregate (new HAVING) under load: median {:.1} ms, \
             max {:.1} ms",
            took[took.len() / 2],
            took[took.len() - 1]
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
