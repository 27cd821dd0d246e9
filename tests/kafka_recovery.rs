//! Exactly-once from Kafka across SIGKILL: the source resumes at the
//! checkpointed offsets of every partition, so records produced before and
//! during the crash are each counted once.
//!
//! The broker is librdkafka's mock cluster, running in this test process, so
//! it outlives the killed server. Event times are out of order by less than
//! the watermark delay: no row is late however the reader happens to batch
//! records, so the result does not depend on batching and run A (no crash)
//! and run B (crash) must agree row for row.

mod common;

use std::time::{Duration, Instant};

use common::kafka::producer;
use common::{rows, PgClient, Server};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;

const RECORDS: usize = 3000;
const PARTITIONS: i32 = 3;
const WAIT_MAX: Duration = Duration::from_secs(60);

/// Record `n`: partition n % 3, event time 10 ms apart with up to 300 ms of disorder.
fn record(n: usize) -> (i32, String) {
    let ts = 1_767_225_600_000_i64 + n as i64 * 10 - ((n * 7) % 4) as i64 * 100;
    let payload = format!(
        r#"{{"account": "u{}", "amount": {}, "ts": {ts}}}"#,
        (n * 13) % 17,
        (n * 31) % 101
    );
    ((n % PARTITIONS as usize) as i32, payload)
}

async fn produce(p: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let records = range.map(|n| {
        let (partition, payload) = record(n);
        (partition, None, payload, None)
    });
    common::kafka::produce(p, topic, records).await;
}

fn ddl(bootstrap: &str, topic: &str) -> String {
    format!(
        "CREATE SOURCE pay (account VARCHAR, amount BIGINT, ts TIMESTAMP NOT NULL,
                            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{bootstrap}',
                 format = 'json');
         CREATE MATERIALIZED VIEW per_user AS
           SELECT account, count(*) AS n, sum(amount) AS total FROM pay GROUP BY account;
         CREATE MATERIALIZED VIEW per_second AS
           SELECT window_start, count(*) AS n, max(amount) AS mx
           FROM TUMBLE(pay, ts, INTERVAL '1' SECOND) GROUP BY window_start
           EMIT ON WINDOW CLOSE;"
    )
}

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// Wait until the views have counted `n` records, then checkpoint (so every
/// view has processed what the source published) and read them.
async fn settled(c: &PgClient, n: usize) -> Vec<Vec<Vec<String>>> {
    let start = Instant::now();
    loop {
        let got = rows(c, "SELECT sum(n) FROM per_user").await;
        if got.as_ref().is_ok_and(|r| r[0][0] == n.to_string()) {
            break;
        }
        assert!(
            start.elapsed() < WAIT_MAX,
            "views never counted {n} records: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exec(c, "CHECKPOINT").await;
    let mut out = Vec::new();
    for q in [
        "SELECT * FROM per_user ORDER BY account",
        "SELECT * FROM per_second ORDER BY window_start",
    ] {
        out.push(rows(c, q).await.expect(q));
    }
    out
}

fn data_dir() -> std::path::PathBuf {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_counts_each_record_once_across_sigkill() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);

    cluster.create_topic("pay-a", PARTITIONS, 1).expect("topic");
    produce(&p, "pay-a", 0..RECORDS).await;
    let a = Server::start_in(&data_dir()).await;
    let c = a.client().await;
    exec(&c, &ddl(&bootstrap, "pay-a")).await;
    let want = settled(&c, RECORDS).await;
    assert!(want.iter().all(|v| !v.is_empty()), "{want:?}");
    drop(c);
    drop(a);

    for seed in [1u64, 2, 3] {
        let topic = format!("pay-b{seed}");
        cluster.create_topic(&topic, PARTITIONS, 1).expect("topic");
        let first = 500 + (seed as usize * 347) % 1000;
        produce(&p, &topic, 0..first).await;
        let dir = data_dir();
        let mut b = Server::start_in_with(&dir, &["--checkpoint-interval", "1"]).await;
        let c = b.client().await;
        exec(&c, &ddl(&bootstrap, &topic)).await;
        settled(&c, first).await;
        // More records while the server runs, then a kill at a seed-chosen moment.
        let second = first + 800;
        produce(&p, &topic, first..second).await;
        tokio::time::sleep(Duration::from_millis((seed * 97) % 300)).await;
        b.kill();
        // Records produced while the server is down, then the rest after it is back.
        produce(&p, &topic, second..second + 400).await;
        let b2 = Server::start_in(&dir).await;
        assert!(
            b2.log_contains("recovering from checkpoint"),
            "{}",
            b2.log_tail()
        );
        let c = b2.client().await;
        produce(&p, &topic, second + 400..RECORDS).await;
        let got = settled(&c, RECORDS).await;
        assert_eq!(got, want, "views differ after a SIGKILL (seed {seed})");
    }
}
