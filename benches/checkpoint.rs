//! Checkpoint cost at scale: a view holding ~1 million groups, fed by a
//! datagen source at full speed, checkpointed while ingestion runs.
//!
//! Run: `cargo bench --bench checkpoint` (EDDY_BENCH_GROUPS=N, default 1,000,000).
//! Prints the checkpoint's duration and size, the time until every source
//! had published its barrier, the longest stall of ingestion around the
//! checkpoint (rows read sampled every 5 ms) and the ingest rate before it,
//! then how long a restart takes to restore the checkpoint.

use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array};
use eddy::engine::{Engine, Limits, Outcome};
use eddy::sql::parse;

async fn query_i64(engine: &Engine, sql: &str) -> Vec<i64> {
    let mut stmts = parse(sql).expect("parse");
    let Outcome::Rows(df) = engine.execute(stmts.remove(0)).await.expect("execute") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in df.collect().await.expect("collect") {
        for c in b.columns() {
            if let Some(a) = c.as_any().downcast_ref::<Int64Array>() {
                out.extend((0..a.len()).filter(|i| a.is_valid(*i)).map(|i| a.value(i)));
            }
        }
    }
    out
}

async fn exec(engine: &Engine, sql: &str) {
    for stmt in parse(sql).expect("parse") {
        engine.execute(stmt).await.expect("execute");
    }
}

async fn rows_read(engine: &Engine) -> i64 {
    query_i64(engine, "SELECT CAST(rows_read AS BIGINT) FROM eddy.sources")
        .await
        .first()
        .copied()
        .unwrap_or(0)
}

fn main() {
    let groups: i64 = std::env::var("EDDY_BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("eddy-bench-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(Limits::default(), &dir).expect("engine");
        engine.restore().await;
        exec(
            &engine,
            &format!(
                "CREATE SOURCE g (k BIGINT, v BIGINT)
                   WITH (connector = 'datagen', rows_per_second = '0',
                         'fields.k.kind' = 'sequence', 'fields.k.start' = '0',
                         'fields.v.min' = '1', 'fields.v.max' = '1000');
                 CREATE MATERIALIZED VIEW per_key AS
                   SELECT k % {groups} AS key, count(*) AS n, sum(v) AS s, max(v) AS mx
                   FROM g GROUP BY k % {groups};"
            ),
        )
        .await;
        let start = Instant::now();
        while rows_read(&engine).await < groups + groups / 10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "too slow to fill"
            );
        }
        // Ingest rate before the checkpoint.
        let r0 = rows_read(&engine).await;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rate = (rows_read(&engine).await - r0) as f64 / t0.elapsed().as_secs_f64();
        // Checkpoint while sampling ingestion progress every 5 ms.
        for round in 1..=2 {
            let done = std::sync::atomic::AtomicBool::new(false);
            let checkpoint = async {
                let rec = engine.checkpoint("bench").await.expect("checkpoint");
                // Keep sampling a little so a stall ending after the checkpoint is seen.
                tokio::time::sleep(Duration::from_millis(500)).await;
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                rec
            };
            let sampler = async {
                let mut last = rows_read(&engine).await;
                let mut last_move = Instant::now();
                let mut longest = Duration::ZERO;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let now = rows_read(&engine).await;
                    if now != last {
                        last = now;
                        last_move = Instant::now();
                    }
                    longest = longest.max(last_move.elapsed());
                }
                longest
            };
            let (rec, stall) = tokio::join!(checkpoint, sampler);
            let held = query_i64(&engine, "SELECT CAST(count(*) AS BIGINT) FROM per_key").await;
            println!(
                "checkpoint {round} of {} groups: duration {} ms (barriers injected in {} ms), \
                 size {:.1} MiB; longest ingestion stall {} ms; ingest before: {:.0} rows/s",
                held.first().copied().unwrap_or(0),
                rec.duration_ms,
                rec.barrier_ms,
                rec.bytes as f64 / (1 << 20) as f64,
                stall.as_millis(),
                rate
            );
        }
    });
    drop(rt);
    // Restore time: a new engine on the same data dir.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = Instant::now();
        let engine = Engine::open(Limits::default(), &dir).expect("engine");
        engine.restore().await;
        let held = query_i64(&engine, "SELECT CAST(count(*) AS BIGINT) FROM per_key").await;
        println!(
            "restore: {} ms, view holds {} rows after it",
            t.elapsed().as_millis(),
            held.first().copied().unwrap_or(0)
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
