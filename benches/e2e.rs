//! End-to-end throughput: a datagen source, unthrottled, through a windowed
//! materialized view, in-process (the same engine the server runs, without
//! the wire protocol).
//!
//! Run: `cargo bench --bench e2e` (`EDDY_BENCH_EVENTS=N` to change the size,
//! default 2,000,000; `EDDY_BENCH_ONLY=<part of a name>` to run some of the
//! queries). Prints events/s for each query: filter, TUMBLE, HOP,
//! CUMULATE, approx_top_k, and joins (each bid joined with itself by its
//! unique id, so the join emits one row per event; and a lookup join with a
//! 1,000-row upsert table).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array};
use eddy::engine::{Engine, Limits, Outcome};

/// The server's allocator (see `src/main.rs`), so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use eddy::sql::parse;

async fn run(engine: &Engine, sql: &str) -> Option<i64> {
    let mut last = None;
    for stmt in parse(sql).expect("parse") {
        if let Outcome::Rows(df) = engine.execute(stmt).await.expect("execute") {
            let batches = df.collect().await.expect("collect");
            last = batches.first().and_then(|b| {
                let c = b.column(0).as_any().downcast_ref::<Int64Array>()?;
                (!c.is_empty() && c.is_valid(0)).then(|| c.value(0))
            });
        }
    }
    last
}

async fn measure(name: &str, view_sql: &str, count_sql: &str, events: i64) {
    if std::env::var("EDDY_BENCH_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let engine = Arc::new(Engine::new(Limits::default()).expect("engine"));
    run(
        &engine,
        &format!(
            "CREATE SOURCE bids (id BIGINT NOT NULL, auction BIGINT NOT NULL, price BIGINT, \
             ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND) \
             WITH (connector = 'datagen', 'fields.id.kind' = 'sequence', \
             rows_per_second = '0', number_of_rows = '{events}', seed = '1', \
             'fields.auction.min' = '0', 'fields.auction.max' = '999', \
             'fields.price.min' = '1', 'fields.price.max' = '10000')"
        ),
    )
    .await;
    let start = Instant::now();
    run(&engine, view_sql).await;
    let deadline = start + Duration::from_secs(600);
    loop {
        if run(&engine, count_sql).await == Some(events) {
            break;
        }
        assert!(Instant::now() < deadline, "{name}: did not finish in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "{name:<28} {events:>10} events  {secs:>7.2} s  {:>12.0} events/s  ({:.0} events/s per core)",
        events as f64 / secs,
        events as f64 / secs / cores
    );
}

fn main() {
    let events: i64 = std::env::var("EDDY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        measure(
            "filter + global count",
            "CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM bids WHERE price > 0",
            "SELECT n FROM v",
            events,
        )
        .await;
        measure(
            "tumble 10s, 1000 keys",
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, auction, count(*) AS n, \
             max(price) AS top FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) \
             GROUP BY window_start, auction",
            "SELECT CAST(sum(n) AS BIGINT) FROM v",
            events,
        )
        .await;
        measure(
            "hop 10s/2s, 1000 keys",
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, auction, count(*) AS n \
             FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
             GROUP BY window_start, auction",
            "SELECT CAST(sum(n) / 5 AS BIGINT) FROM v",
            events,
        )
        .await;
        // Every row is in exactly one 10 s (full-size) window.
        measure(
            "cumulate 2s/10s, 1000 keys",
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, window_end, auction, count(*) AS n \
             FROM CUMULATE(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end, auction",
            "SELECT CAST(sum(n) AS BIGINT) FROM v \
             WHERE window_end = window_start + INTERVAL '10' SECOND",
            events,
        )
        .await;
        measure(
            "approx_top_k(auction, 10)",
            "CREATE MATERIALIZED VIEW v AS SELECT approx_top_k(auction, 10) AS top, \
             count(*) AS n FROM bids",
            "SELECT n FROM v",
            events,
        )
        .await;
        measure(
            "interval self-join (±1 s)",
            "CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM bids a JOIN bids b \
             ON a.id = b.id AND b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts + INTERVAL '1' SECOND",
            "SELECT n FROM v",
            events,
        )
        .await;
        measure(
            "window self-join (tumble 10s)",
            "CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n \
             FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) a \
             JOIN TUMBLE(bids, ts, INTERVAL '10' SECOND) b ON a.id = b.id \
             AND a.window_start = b.window_start AND a.window_end = b.window_end",
            "SELECT n FROM v",
            events,
        )
        .await;
        measure(
            "lookup join (1000-row table)",
            "CREATE TABLE auctions (id BIGINT, seller BIGINT, PRIMARY KEY (id)); \
             INSERT INTO auctions SELECT value, value % 100 FROM generate_series(0, 999); \
             CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n, count(DISTINCT a.seller) AS s \
             FROM bids b JOIN auctions a ON b.auction = a.id",
            "SELECT n FROM v",
            events,
        )
        .await;
    });
}
