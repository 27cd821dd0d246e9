//! State stays bounded in a long run: a datagen stream (event time = wall
//! clock) through an interval self-join, a window self-join, a per-window
//! count(DISTINCT) and a per-window Top-N, over the real server. The views'
//! results are small, so `eddy.views.state_bytes` is mostly operator state;
//! it must level off, not grow with the number of events.
//!
//! `EDDY_STATE_RATE` (rows/s, default 20,000) and `EDDY_STATE_SECS` (default
//! 18) scale the run: `EDDY_STATE_RATE=100000 EDDY_STATE_SECS=200` is 20 M events.

mod common;

use std::time::{Duration, Instant};

use common::{rows, Server};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const VIEWS: [&str; 4] = ["pairs", "wpairs", "distinct_per_s", "top3_per_s"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_bytes_level_off() {
    let rate = env("EDDY_STATE_RATE", 20_000);
    let secs = env("EDDY_STATE_SECS", 18);
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE SOURCE bids (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP NOT NULL,
                             WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
           WITH (connector = 'datagen', rows_per_second = '{rate}',
                 number_of_rows = '{}', seed = '7',
                 'fields.auction.min' = '0', 'fields.auction.max' = '9999',
                 'fields.price.min' = '1', 'fields.price.max' = '1000000');
         CREATE MATERIALIZED VIEW pairs AS
           SELECT count(*) AS n FROM bids a JOIN bids b ON a.auction = b.auction
             AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '300' MILLISECOND;
         CREATE MATERIALIZED VIEW wpairs AS
           SELECT count(*) AS n FROM TUMBLE(bids, ts, INTERVAL '1' SECOND) a
           JOIN TUMBLE(bids, ts, INTERVAL '1' SECOND) b ON a.auction = b.auction
             AND a.window_start = b.window_start AND a.window_end = b.window_end;
         CREATE MATERIALIZED VIEW distinct_per_s AS
           SELECT window_start, count(DISTINCT auction) AS n
           FROM TUMBLE(bids, ts, INTERVAL '1' SECOND) GROUP BY window_start
           EMIT ON WINDOW CLOSE;
         CREATE MATERIALIZED VIEW top3_per_s AS
           SELECT window_start, auction, price, rn FROM (
             SELECT window_start, auction, price,
                    ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY price DESC) AS rn
             FROM TUMBLE(bids, ts, INTERVAL '1' SECOND))
           WHERE rn <= 3;",
        rate * secs
    ))
    .await
    .unwrap_or_else(|e| panic!("ddl: {}", common::error_text(&e)));
    // Sample every view's state_bytes twice a second while the events flow.
    let start = Instant::now();
    let mut samples: Vec<(f64, Vec<i64>)> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = rows(
            &c,
            "SELECT name, state_bytes, status FROM eddy.views ORDER BY name",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for row in &r {
            assert_eq!(row[2], "running", "{row:?}");
        }
        let bytes = VIEWS
            .iter()
            .map(|v| {
                r.iter()
                    .find(|row| row[0] == *v)
                    .and_then(|row| row[1].parse().ok())
                    .unwrap_or_else(|| panic!("no state_bytes for {v}: {r:?}"))
            })
            .collect();
        samples.push((start.elapsed().as_secs_f64(), bytes));
    }
    let read = rows(&c, "SELECT rows_read FROM eddy.sources WHERE name = 'bids'")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("events read: {read:?}");
    // Skip the first third (warm-up); the last third must not hold much more
    // than the middle one. Means, not maxima: state swings as windows close
    // and a single sample can catch a peak, while a leak lifts the mean.
    let third = samples.len() / 3;
    for (i, v) in VIEWS.iter().enumerate() {
        let mean =
            |s: &[(f64, Vec<i64>)]| s.iter().map(|x| x.1[i]).sum::<i64>() / (s.len().max(1) as i64);
        let middle = mean(&samples[third..2 * third]);
        let last = mean(&samples[2 * third..]);
        let series: Vec<String> = samples
            .iter()
            .map(|(t, b)| format!("{t:.1}s:{}K", b[i] / 1024))
            .collect();
        eprintln!("{v}: {}", series.join(" "));
        assert!(middle > 0, "{v} holds no state: {series:?}");
        assert!(
            (last as f64) < 1.5 * middle as f64 + 256.0 * 1024.0,
            "{v}: state grew from {middle} to {last} bytes (mean): {series:?}"
        );
    }
}

/// Rows past a join's `state_ttl` go while no input arrives and no
/// checkpoint runs: the runtime ticks operators on processing time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_ttl_frees_rows_while_inputs_are_quiet() {
    let server = Server::start_with_args(&["--checkpoint-interval", "0"]).await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE orders (id BIGINT, customer BIGINT);
         CREATE TABLE customers (id BIGINT, name VARCHAR);
         CREATE MATERIALIZED VIEW lonely WITH (state_ttl = '1 second') AS
           SELECT o.id, c.name FROM orders o JOIN customers c ON o.customer = c.id;
         INSERT INTO orders VALUES (1, 10), (2, 20);",
    )
    .await
    .expect("DDL");
    let held = "SELECT CASE WHEN state_bytes > 0 THEN 'holds rows' ELSE 'empty' END \
                FROM eddy.views WHERE name = 'lonely'";
    common::eventually(&c, held, &[&["holds rows"]]).await;
    let quiet = Instant::now();
    common::eventually(&c, held, &[&["empty"]]).await;
    assert!(
        quiet.elapsed() < Duration::from_secs(5),
        "freed after {:?}",
        quiet.elapsed()
    );
}
