//! Load (issue 14): 500 clients at once, each connecting and mixing INSERT,
//! SELECT on a view and on system tables, while a generator source ingests.
//! Every statement must succeed; the statement latencies (p50/p99) and the
//! ingest rate with and without the load are printed. And a client that
//! stops reading a large result does not slow ingestion. A debug build on
//! two cores: the figures are for comparison between runs, not speed claims.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// Rows the generator has produced so far.
async fn ingested(c: &common::PgClient) -> u64 {
    let r = common::rows(
        c,
        "SELECT rows_read FROM eddy.sources WHERE name = 'clicks'",
    )
    .await
    .unwrap();
    r[0][0].parse().unwrap()
}

/// Ingest rate over `d`.
async fn rate(c: &common::PgClient, d: Duration) -> f64 {
    let before = ingested(c).await;
    let start = Instant::now();
    tokio::time::sleep(d).await;
    (ingested(c).await - before) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_while_a_source_ingests() {
    const CLIENTS: usize = 500;
    let server = Server::start_with_args(&["--max-connections", "600"]).await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE SOURCE clicks (id BIGINT NOT NULL, user_id INT, ts TIMESTAMP NOT NULL,
                               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'datagen', rows_per_second = '20000', seed = '7',
               'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
               'fields.user_id.min' = '1', 'fields.user_id.max' = '50');
         CREATE MATERIALIZED VIEW per_user AS SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id;
         CREATE TABLE notes (client INT, body TEXT);
         CREATE MATERIALIZED VIEW note_count AS SELECT count(*) AS n FROM notes;",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rate = rate(&c, Duration::from_secs(2)).await;

    let port = server.port;
    let started = Instant::now();
    let loaded = tokio::spawn(async move {
        let c = common::connect(port).await.unwrap();
        rate(&c, Duration::from_secs(2)).await
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        tasks.spawn(async move {
            let c = common::connect(port)
                .await
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            let mut latencies = Vec::new();
            for sql in [
                format!("INSERT INTO notes VALUES ({i}, 'hello from {i}')"),
                "SELECT sum(n) FROM per_user".to_string(),
                "SELECT name, status, rows_read FROM eddy.sources".to_string(),
                "SELECT count(*) FROM eddy.views".to_string(),
            ] {
                let t = Instant::now();
                c.simple_query(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("client {i}: {sql}: {}", common::error_text(&e)));
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut all: Vec<Duration> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("client task"));
    }
    let wall = started.elapsed();
    let loaded_rate = loaded.await.unwrap();
    all.sort();
    eprintln!(
        "load: {CLIENTS} clients, {} statements in {wall:?}: p50 {:?}, p99 {:?}, max {:?}; \
         ingest {idle_rate:.0} rows/s idle, {loaded_rate:.0} rows/s under load",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().unwrap()
    );
    assert_eq!(all.len(), CLIENTS * 4);
    common::eventually(&c, "SELECT n FROM note_count", &[&["500"]]).await;
    assert!(ingested(&c).await > 0);
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
}

/// A raw client that sends a query for a large result and then never reads:
/// the server's socket buffer fills and the query waits, holding nothing
/// that ingestion needs.
fn stalled_reader(port: u16, sql: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for part in ["user", "eddy", "database", "eddy"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg.push(b'Q');
    msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    s.write_all(&msg).expect("send");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_slow_ingestion() {
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE SOURCE clicks (id BIGINT NOT NULL, user_id INT, ts TIMESTAMP NOT NULL,
                               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'datagen', rows_per_second = '20000', seed = '7',
               'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
               'fields.user_id.min' = '1', 'fields.user_id.max' = '50');
         CREATE MATERIALIZED VIEW per_user AS SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id;
         CREATE TABLE wide (k BIGINT, pad TEXT);
         INSERT INTO wide SELECT value, repeat('x', 200) FROM generate_series(1, 300000);",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rate(&c, Duration::from_secs(2)).await;
    // About 60 MB of rows, far beyond the socket buffers: the server blocks on this client.
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| stalled_reader(server.port, "SELECT * FROM wide"))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rate(&c, Duration::from_secs(2)).await;
    eprintln!(
        "stalled readers: ingest {before:.0} rows/s before, {during:.0} rows/s with 3 clients \
         not reading 60 MB results"
    );
    assert!(
        during >= before * 0.9,
        "ingest fell from {before:.0} to {during:.0} rows/s"
    );
    // Other clients are served meanwhile.
    common::eventually(&c, "SELECT count(*) FROM per_user", &[&["50"]]).await;
    drop(stalled);
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
}
