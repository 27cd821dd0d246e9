//! Load (issue 14): 500 clients at once, each connecting and mixing INSERT,
//! SELECT on a view and on system tables, while a generator source ingests.
//! Every statement must succeed; the statement latencies (p50/p99) and the
//! ingest rate with and without the load are printed (`tests/slow_readers.rs`
//! checks clients that stop reading). A debug build on two cores: the figures
//! are for comparison between runs, not speed claims.

mod common;

use std::time::{Duration, Instant};

use common::Server;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_while_a_source_ingests() {
    const CLIENTS: usize = 500;
    let server = Server::start_with_args(&["--max-connections", "600"]).await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "{}
         CREATE TABLE notes (client INT, body TEXT);
         CREATE MATERIALIZED VIEW note_count AS SELECT count(*) AS n FROM notes;",
        common::CLICKS_20K
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rate = common::ingest_rate(&c, "clicks", Duration::from_secs(2)).await;

    let port = server.port;
    let started = Instant::now();
    let loaded = tokio::spawn(async move {
        let c = common::connect(port).await.unwrap();
        common::ingest_rate(&c, "clicks", Duration::from_secs(2)).await
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
    assert!(common::rows_read(&c, "clicks").await > 0);
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
}
