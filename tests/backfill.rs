//! Backfill: a view created on a stream that has already delivered records
//! counts them too — Kafka topics (librdkafka's mock cluster, in this test
//! process so it outlives a killed server), files and tables — with no gap
//! and no duplicate against a view that was there from the start, also
//! across a SIGKILL in the middle of the backfill.

mod common;

use std::time::{Duration, Instant};

use common::kafka::producer;
use common::{eventually, rows, PgClient, Server};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;

const PARTITIONS: i32 = 3;
const WAIT_MAX: Duration = Duration::from_secs(60);

async fn produce(p: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    common::kafka::produce_payments(p, topic, range, PARTITIONS).await;
}

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

fn source(bootstrap: &str, topic: &str) -> String {
    format!(
        "CREATE SOURCE pay (account VARCHAR, amount BIGINT, ts TIMESTAMP NOT NULL,
                            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{bootstrap}',
                 format = 'json');"
    )
}

/// A per-account view and a per-second window view named `{prefix}_user`, `{prefix}_second`.
fn views(prefix: &str, with: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW {prefix}_user {with} AS
           SELECT account, count(*) AS n, sum(amount) AS total FROM pay GROUP BY account;
         CREATE MATERIALIZED VIEW {prefix}_second {with} AS
           SELECT window_start, count(*) AS n, max(amount) AS mx
           FROM TUMBLE(pay, ts, INTERVAL '1' SECOND) GROUP BY window_start
           EMIT ON WINDOW CLOSE;"
    )
}

/// Wait until view `{prefix}_user` has counted `n` records, then read both views.
async fn settled(c: &PgClient, prefix: &str, n: usize) -> Vec<Vec<Vec<String>>> {
    let start = Instant::now();
    loop {
        let got = rows(c, &format!("SELECT sum(n) FROM {prefix}_user")).await;
        if got.as_ref().is_ok_and(|r| r[0][0] == n.to_string()) {
            break;
        }
        assert!(
            start.elapsed() < WAIT_MAX,
            "{prefix}_user never counted {n} records: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for q in [
        format!("SELECT * FROM {prefix}_user ORDER BY account"),
        format!("SELECT * FROM {prefix}_second ORDER BY window_start"),
    ] {
        out.push(rows(c, &q).await.expect("view"));
    }
    out
}

/// Wait until views `{prefix}_…` read what `want` holds (or a minute passed); returns them.
async fn same_as(c: &PgClient, prefix: &str, want: &[Vec<Vec<String>>]) -> Vec<Vec<Vec<String>>> {
    let n: usize = want[0]
        .iter()
        .map(|r| r[1].parse::<usize>().unwrap_or(0))
        .sum();
    let start = Instant::now();
    loop {
        let got = settled(c, prefix, n).await;
        if got == want || start.elapsed() > WAIT_MAX {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `eddy.views` of `view`: status, backfill_rows, backfill_remaining.
async fn progress(c: &PgClient, view: &str) -> Vec<String> {
    let r = rows(
        c,
        &format!(
            "SELECT status, backfill_rows, backfill_remaining FROM eddy.views \
             WHERE name = '{view}'"
        ),
    )
    .await
    .expect("eddy.views");
    r.into_iter().next().unwrap_or_default()
}

fn data_dir() -> std::path::PathBuf {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_created_late_on_kafka_counts_the_topic_history() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    cluster.create_topic("late", PARTITIONS, 1).expect("topic");
    produce(&p, "late", 0..2000).await;
    let s = Server::start().await;
    let c = s.client().await;
    exec(&c, &source(&bootstrap, "late")).await;
    exec(&c, &views("first", "")).await;
    settled(&c, "first", 2000).await;

    // Created while records keep arriving; throttled so its backfill is seen running.
    let more = {
        let p = p.clone();
        tokio::spawn(async move { produce(&p, "late", 2000..3000).await })
    };
    exec(&c, &views("late", "WITH (backfill.rows_per_second = 1500)")).await;
    let mut seen = None;
    let start = Instant::now();
    while start.elapsed() < WAIT_MAX {
        let p = progress(&c, "late_user").await;
        if p[0] == "backfilling" {
            seen = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.expect("late_user never showed status 'backfilling'");
    assert_ne!(
        seen[2], "NULL",
        "no remaining count while backfilling: {seen:?}"
    );
    more.await.expect("producer");
    produce(&p, "late", 3000..3500).await;

    let want = settled(&c, "first", 3500).await;
    let got = same_as(&c, "late", &want).await;
    assert_eq!(got, want, "the late views differ from the first ones");
    let done = progress(&c, "late_user").await;
    assert_eq!(done[0], "running", "{done:?}");
    assert_eq!(done[2], "NULL", "{done:?}");
    assert!(
        done[1].parse::<u64>().expect("backfill_rows") >= 2000,
        "{done:?}"
    );

    // `backfill = 'none'`: only what arrives from now on.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW fresh WITH (backfill = 'none') AS SELECT count(*) AS n FROM pay",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&p, "late", 3500..3600).await;
    eventually(&c, "SELECT n FROM fresh", &[&["100"]]).await;
    // Sources and their rejected-record counts are not touched by backfills.
    let r = rows(&c, "SELECT rows_read, rows_rejected FROM eddy.sources")
        .await
        .expect("eddy.sources");
    assert_eq!(r, vec![vec!["3600".to_string(), "0".to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_halfway_resumes_exactly_once() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    cluster.create_topic("crash", PARTITIONS, 1).expect("topic");
    produce(&p, "crash", 0..3000).await;
    let dir = data_dir();
    let mut s = Server::start_in_with(&dir, &["--checkpoint-interval", "1"]).await;
    let c = s.client().await;
    exec(&c, &source(&bootstrap, "crash")).await;
    exec(&c, &views("first", "")).await;
    settled(&c, "first", 3000).await;
    exec(&c, &views("late", "WITH (backfill.rows_per_second = 1000)")).await;
    // Kill once a checkpoint has caught the backfill halfway.
    let start = Instant::now();
    loop {
        let p = progress(&c, "late_user").await;
        let rows: u64 = p[1].parse().unwrap_or(0);
        if p[0] == "backfilling" && rows >= 1200 {
            exec(&c, "CHECKPOINT").await;
            break;
        }
        assert!(
            start.elapsed() < WAIT_MAX,
            "backfill never got going: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill();
    produce(&p, "crash", 3000..3400).await;
    let s = Server::start_in(&dir).await;
    assert!(
        s.log_contains("recovering from checkpoint"),
        "{}",
        s.log_tail()
    );
    let c = s.client().await;
    produce(&p, "crash", 3400..4000).await;
    let want = settled(&c, "first", 4000).await;
    let got = same_as(&c, "late", &want).await;
    assert_eq!(got, want, "the backfilled views differ after a SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_created_late_read_whole_files_and_tables() {
    let dir = data_dir();
    let file = dir.join("bids.jsonl");
    let lines: String = (0..1000)
        .map(|n| format!("{{\"id\": {n}, \"price\": {}}}\n", n % 7))
        .collect();
    std::fs::write(&file, lines).unwrap();
    // Fewer rows kept for SELECT than the file and the table hold.
    let s = Server::start_in_with(&dir, &["--table-retain-rows", "100"]).await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE bids (id BIGINT, price BIGINT)
               WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW first_bids AS SELECT count(*) AS n, sum(price) AS s FROM bids;",
            file.display()
        ),
    )
    .await;
    eventually(&c, "SELECT n, s FROM first_bids", &[&["1000", "2997"]]).await;
    exec(
        &c,
        "CREATE MATERIALIZED VIEW late_bids AS SELECT count(*) AS n, sum(price) AS s FROM bids",
    )
    .await;
    eventually(&c, "SELECT n, s FROM late_bids", &[&["1000", "2997"]]).await;

    exec(&c, "CREATE TABLE t (k BIGINT, v BIGINT)").await;
    for chunk in 0..10 {
        let values: Vec<String> = (0..100)
            .map(|i| format!("({}, 1)", chunk * 100 + i))
            .collect();
        exec(&c, &format!("INSERT INTO t VALUES {}", values.join(", "))).await;
    }
    exec(&c, "CHECKPOINT").await;
    exec(
        &c,
        "CREATE MATERIALIZED VIEW late_t AS SELECT count(*) AS n, sum(v) AS s FROM t",
    )
    .await;
    exec(&c, "INSERT INTO t VALUES (1000, 1)").await;
    eventually(&c, "SELECT n, s FROM late_t", &[&["1001", "1001"]]).await;
}
