//! SUBSCRIBE, end to end against a real `eddy serve` (release): how soon a change reaches a
//! subscriber, and how many rows a second subscribers are sent.
//!
//! - latency: one `INSERT` of one row at a time into a table, timed until the row arrives at a
//!   `COPY (SUBSCRIBE …) TO STDOUT` reader of a view over it (p50, p99, max);
//! - throughput: `COPY … FROM STDIN` of N rows while 1 and then 4 subscribers read the view; the
//!   rows each received per second, from the first row sent to the last row received.
//!
//! Run: `cargo bench --bench subscribe` (`EDDY_BENCH_ROWS=N`, default 1,000,000;
//! `EDDY_BENCH_PINGS=N` latency samples, default 1,000).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;

const SETUP: &str = "
    CREATE TABLE bids (id BIGINT NOT NULL, auction BIGINT, price BIGINT, ts TIMESTAMP NOT NULL,
                       WATERMARK FOR ts AS ts - INTERVAL '4' SECOND);
    CREATE MATERIALIZED VIEW recent AS SELECT id, auction, price, ts FROM bids;";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The id (first column after position and diff) of a COPY row.
fn id_of(line: &[u8]) -> i64 {
    let text = std::str::from_utf8(line).expect("utf-8");
    text.split('\t')
        .nth(2)
        .and_then(|f| f.parse().ok())
        .expect("an id")
}

async fn latency(port: u16, client: &tokio_postgres::Client, pings: usize) {
    let reader = support::connect(port).await;
    let copy = reader
        .copy_out("COPY (SUBSCRIBE recent WITH (SNAPSHOT = false)) TO STDOUT")
        .await
        .expect("subscribe");
    futures::pin_mut!(copy);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..pings as i64 {
        let id = 10_000_000_000 + i;
        let sent = Instant::now();
        client
            .batch_execute(&format!(
                "INSERT INTO bids VALUES ({id}, 1, 1, '2026-01-01 00:00:00')"
            ))
            .await
            .expect("insert");
        loop {
            let line = copy.next().await.expect("open").expect("a row");
            if id_of(&line) == id {
                break;
            }
        }
        hist.record(sent.elapsed().as_micros() as u64)
            .expect("record");
    }
    println!(
        "latency INSERT → subscriber (COPY)      {pings:>6} pings  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.max() as f64 / 1e3
    );
}

async fn throughput(
    port: u16,
    client: &tokio_postgres::Client,
    rows: usize,
    readers: usize,
    base: i64,
) {
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let reader = support::connect(port).await;
        tasks.push(tokio::spawn(async move {
            let copy = reader
                .copy_out("COPY (SUBSCRIBE recent WITH (SNAPSHOT = false)) TO STDOUT")
                .await
                .expect("subscribe");
            futures::pin_mut!(copy);
            let mut got = 0usize;
            let mut first = None;
            while got < rows {
                let line = copy.next().await.expect("open").expect("a row");
                if id_of(&line) >= base {
                    first.get_or_insert_with(Instant::now);
                    got += 1;
                }
            }
            (
                got,
                first.map_or(0.0, |f| f.elapsed().as_secs_f64()),
                Instant::now(),
            )
        }));
    }
    // Let the subscriptions start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut data = Vec::with_capacity(rows * 40);
    for i in 0..rows as i64 {
        let id = base + i;
        data.extend_from_slice(
            format!(
                "{id}\t{}\t{}\t2026-01-01 00:{:02}:{:02}\n",
                id % 1000,
                id % 97,
                i / 60 % 60,
                i % 60
            )
            .as_bytes(),
        );
    }
    let started = Instant::now();
    let sink = client
        .copy_in("COPY bids FROM STDIN")
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    for piece in data.chunks(64 << 10) {
        sink.send(Bytes::copy_from_slice(piece))
            .await
            .expect("send");
    }
    sink.finish().await.expect("finish");
    let loaded = started.elapsed().as_secs_f64();
    let mut slowest: f64 = 0.0;
    for t in tasks {
        let (got, _, done) = t.await.expect("reader");
        assert_eq!(got, rows);
        slowest = slowest.max((done - started).as_secs_f64());
    }
    println!(
        "COPY of {rows} rows, {readers} subscriber(s)        load {loaded:>6.2} s, last row received at {slowest:>6.2} s: {:>10.0} rows/s per subscriber",
        rows as f64 / slowest
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = env_usize("EDDY_BENCH_ROWS", 1_000_000);
    let pings = env_usize("EDDY_BENCH_PINGS", 1_000);
    let (_server, client, port) = support::start(
        "subscribe",
        &[
            "--http-addr",
            "off",
            "--view-max-rows",
            "20000000",
            "--table-retain-rows",
            "1000",
        ],
    )
    .await;
    client.batch_execute(SETUP).await.expect("setup");
    latency(port, &client, pings).await;
    throughput(port, &client, rows, 1, 0).await;
    throughput(port, &client, rows, 4, 1_000_000_000).await;
}
