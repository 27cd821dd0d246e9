//! `ALTER SOURCE … ADD COLUMN`: a Kafka topic (librdkafka's mock cluster, in
//! this test process so it outlives a killed server) and a followed file gain
//! a field; the views that read the source count every record exactly once
//! across the change and a restart, new views see the column, and what
//! cannot change in place is refused.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::kafka::{produce, producer};
use common::{eventually, eventually_rows, rows, PgClient, Server};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;

const PARTITIONS: i32 = 3;

/// A server with a data dir, source `pay` on Kafka topic `topic` in
/// `format`, and view `per_account`; returns the data dir too (to restart on).
async fn pay_server(
    bootstrap: &str,
    topic: &str,
    format: &str,
) -> (std::path::PathBuf, Server, PgClient) {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).expect("data dir");
    let s = Server::start_in(&dir).await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE pay (account VARCHAR, amount BIGINT)
               WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{bootstrap}',
                     format = '{format}');
             CREATE MATERIALIZED VIEW per_account AS
               SELECT account, count(*) AS n, sum(amount) AS total FROM pay GROUP BY account;"
        ),
    )
    .await;
    (dir, s, c)
}

/// Record `n`: account `a{n % 7}`, amount `n`, and `extra = n * 2` from `with_extra` on.
fn record(n: usize, with_extra: bool) -> (i32, Option<String>, String, Option<i64>) {
    let extra = if with_extra {
        format!(r#", "extra": {}"#, n * 2)
    } else {
        String::new()
    };
    (
        (n % PARTITIONS as usize) as i32,
        None,
        format!(r#"{{"account": "a{}", "amount": {n}{extra}}}"#, n % 7),
        None,
    )
}

async fn produce_range(p: &FutureProducer, range: std::ops::Range<usize>, with_extra: bool) {
    produce(p, "pay", range.map(|n| record(n, with_extra))).await;
}

/// What `per_account` must hold after records `0..n`.
fn expected(n: usize) -> Vec<Vec<String>> {
    let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..n {
        let e = by.entry(format!("a{}", i % 7)).or_default();
        e.0 += 1;
        e.1 += i as u64;
    }
    by.into_iter()
        .map(|(k, (c, s))| vec![k, c.to_string(), s.to_string()])
        .collect()
}

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// The SQLSTATE and message of `sql`'s error.
async fn refused(c: &PgClient, sql: &str) -> (String, String) {
    let e = c.batch_execute(sql).await.expect_err(sql);
    let db = e.as_db_error().unwrap_or_else(|| panic!("`{sql}`: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

const PER_ACCOUNT: &str = "SELECT * FROM per_account ORDER BY account";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_source_gains_a_column_without_gap_or_duplicate() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    cluster.create_topic("pay", PARTITIONS, 1).expect("topic");
    produce_range(&p, 0..1000, false).await;
    let (dir, mut s, c) = pay_server(&bootstrap, "pay", "json").await;
    eventually_rows(&c, PER_ACCOUNT, &expected(1000)).await;

    // A view that would pick up the column at a restart makes the ALTER fail.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW everything AS SELECT * FROM pay",
    )
    .await;
    eventually(
        &c,
        "SELECT status FROM eddy.views WHERE name = 'everything'",
        &[&["running"]],
    )
    .await;
    let (code, msg) = refused(&c, "ALTER SOURCE pay ADD COLUMN extra BIGINT").await;
    assert_eq!(code, "0A000", "{msg}");
    assert!(msg.contains("\"everything\""), "{msg}");
    exec(&c, "DROP MATERIALIZED VIEW everything").await;
    // A view still backfilling: not now.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW slow WITH (backfill.rows_per_second = 20) AS
           SELECT count(*) AS n FROM pay",
    )
    .await;
    let (code, msg) = refused(&c, "ALTER SOURCE pay ADD COLUMN extra BIGINT").await;
    assert_eq!(code, "55000", "{msg}");
    exec(&c, "DROP MATERIALIZED VIEW slow").await;

    // Records with the new field arrive while the source is altered.
    let more = {
        let p = p.clone();
        tokio::spawn(async move {
            for from in (1000..3000).step_by(100) {
                produce_range(&p, from..from + 100, true).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = rows(&c, "SELECT sum(n) FROM per_account").await;
    exec(&c, "ALTER SOURCE pay ADD COLUMN extra BIGINT").await;
    let after = rows(&c, "SELECT sum(n) FROM per_account").await;
    eprintln!("counted before the ALTER: {before:?}, just after: {after:?}");
    more.await.expect("producer");
    eventually_rows(&c, PER_ACCOUNT, &expected(3000)).await;
    let r = rows(
        &c,
        "SELECT rows_read, rows_rejected FROM eddy.sources WHERE name = 'pay'",
    )
    .await
    .expect("eddy.sources");
    assert_eq!(r, vec![vec!["3000".to_string(), "0".to_string()]]);
    let r = rows(&c, "SHOW CREATE SOURCE pay").await.expect("show");
    assert!(
        r[0][1].contains("(account VARCHAR, amount BIGINT, extra BIGINT)"),
        "{r:?}"
    );
    // A view created now reads the column: NULL in the records that lack it.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW extras AS
           SELECT count(*) AS n, count(extra) AS with_extra, sum(extra) AS total FROM pay",
    )
    .await;
    let total = |range: std::ops::Range<usize>| range.map(|n| n * 2).sum::<usize>().to_string();
    eventually(
        &c,
        "SELECT * FROM extras",
        &[&["3000", "2000", &total(1000..3000)]],
    )
    .await;
    let (code, msg) = refused(&c, "ALTER SOURCE pay ADD COLUMN extra BIGINT").await;
    assert_eq!(code, "42701", "{msg}");
    exec(&c, "ALTER SOURCE pay ADD COLUMN IF NOT EXISTS extra BIGINT").await;

    // A restart plans the views against the new columns and keeps counting exactly.
    exec(&c, "CHECKPOINT").await;
    produce_range(&p, 3000..3300, true).await;
    eventually_rows(&c, PER_ACCOUNT, &expected(3300)).await;
    s.kill();
    let s = Server::start_in(&dir).await;
    let c = s.client().await;
    produce_range(&p, 3300..3500, true).await;
    eventually_rows(&c, PER_ACCOUNT, &expected(3500)).await;
    eventually(
        &c,
        "SELECT * FROM extras",
        &[&["3500", "2500", &total(1000..3500)]],
    )
    .await;
    let r = rows(&c, "SHOW CREATE SOURCE pay").await.expect("show");
    assert!(r[0][1].contains("extra BIGINT"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_file_gains_a_column_and_keeps_its_rows() {
    let dir = common::unique_temp_dir();
    let path = dir.join("events.json");
    let mut f = std::fs::File::create(&path).expect("file");
    for n in 0..100 {
        writeln!(f, r#"{{"account": "a{}", "amount": {n}}}"#, n % 7).expect("write");
    }
    f.flush().expect("flush");
    let s = Server::start().await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE pay (account VARCHAR, amount BIGINT) INCLUDE offset AS line
               WITH (connector = 'file', path = '{}', format = 'json', 'file.follow' = 'true',
                     'file.poll_interval_ms' = '50');
             CREATE MATERIALIZED VIEW per_account AS
               SELECT account, count(*) AS n, sum(amount) AS total FROM pay GROUP BY account;
             CREATE MATERIALIZED VIEW lines AS SELECT count(line) AS n FROM pay;",
            path.display()
        ),
    )
    .await;
    eventually_rows(&c, PER_ACCOUNT, &expected(100)).await;
    exec(&c, "ALTER SOURCE pay ADD extra BIGINT NULL").await;
    for n in 100..200 {
        writeln!(
            f,
            r#"{{"account": "a{}", "amount": {n}, "extra": {}}}"#,
            n % 7,
            n * 2
        )
        .expect("write");
    }
    f.flush().expect("flush");
    eventually_rows(&c, PER_ACCOUNT, &expected(200)).await;
    eventually(&c, "SELECT n FROM lines", &[&["200"]]).await;
    // The rows kept for SELECT: NULL where the column was not there yet.
    eventually(
        &c,
        "SELECT count(*), count(extra), count(line) FROM pay",
        &[&["200", "100", "200"]],
    )
    .await;
    let r = rows(
        &c,
        "SELECT account, amount, extra FROM pay WHERE amount IN (50, 150) ORDER BY 2",
    )
    .await
    .expect("select");
    assert_eq!(r, vec![vec!["a1", "50", "NULL"], vec!["a3", "150", "300"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_gain_a_column_is_refused() {
    let s = Server::start().await;
    let c = s.client().await;
    exec(
        &c,
        "CREATE TABLE t (a BIGINT);
         CREATE SOURCE g (a BIGINT) WITH (connector = 'datagen', rows_per_second = '1');
         CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM t;",
    )
    .await;
    for (sql, code) in [
        ("ALTER SOURCE t ADD COLUMN b BIGINT", "0A000"),
        ("ALTER SOURCE g ADD COLUMN b BIGINT", "0A000"),
        ("ALTER SOURCE v ADD COLUMN b BIGINT", "42809"),
        ("ALTER SOURCE missing ADD COLUMN b BIGINT", "42P01"),
        ("ALTER SOURCE t ADD COLUMN b BIGINT NOT NULL", "0A000"),
        ("ALTER SOURCE t ADD COLUMN b BIGINT PRIMARY KEY", "0A000"),
        ("ALTER SOURCE t ADD COLUMN b BIGINT CHECK (b > 0)", "0A000"),
        ("ALTER SOURCE t DROP COLUMN a", "0A000"),
    ] {
        let (got, msg) = refused(&c, sql).await;
        assert_eq!(got, code, "`{sql}`: {msg}");
    }
    let e = c
        .batch_execute("ALTER SOURCE t ADD COLUMN b BIGINT")
        .await
        .expect_err("table");
    let hint = e.as_db_error().and_then(|d| d.hint()).unwrap_or_default();
    assert!(hint.contains("INSERT"), "{hint}");
    exec(&c, "ALTER SOURCE IF EXISTS missing ADD COLUMN b BIGINT").await;
}

/// CSV records are positional: the added column is the last field, missing
/// (NULL) in the lines written before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_topic_gains_a_trailing_field() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    cluster.create_topic("csv", 1, 1).expect("topic");
    let line = |n: usize, extra: bool| {
        let tail = if extra {
            format!(",{}", n * 2)
        } else {
            String::new()
        };
        (0, None, format!("a{},{n}{tail}", n % 7), None)
    };
    produce(&p, "csv", (0..50).map(|n| line(n, false))).await;
    let (dir, mut s, c) = pay_server(&bootstrap, "csv", "csv").await;
    eventually_rows(&c, PER_ACCOUNT, &expected(50)).await;
    // A sink writing the source's rows would write the column after a restart; a keyed
    // source keeps its rows by its columns.
    exec(
        &c,
        &format!(
            "CREATE SINK out FROM pay WITH (connector = 'kafka', topic = 'out',
               'bootstrap.servers' = '{bootstrap}', format = 'json');
             CREATE SOURCE users (id BIGINT, v VARCHAR, PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = 'csv', 'bootstrap.servers' = '{bootstrap}',
                     format = 'upsert_json');"
        ),
    )
    .await;
    let (code, msg) = refused(&c, "ALTER SOURCE pay ADD COLUMN extra BIGINT").await;
    assert_eq!(code, "0A000", "{msg}");
    assert!(msg.contains("sink \"out\""), "{msg}");
    let (code, msg) = refused(&c, "ALTER SOURCE users ADD COLUMN extra BIGINT").await;
    assert_eq!(code, "0A000", "{msg}");
    exec(&c, "DROP SINK out; DROP SOURCE users").await;
    // Restored below from this checkpoint, taken before the ALTER.
    exec(&c, "CHECKPOINT").await;
    exec(&c, "ALTER SOURCE pay ADD COLUMN extra BIGINT").await;
    produce(&p, "csv", (50..100).map(|n| line(n, true))).await;
    eventually_rows(&c, PER_ACCOUNT, &expected(100)).await;
    exec(
        &c,
        "CREATE MATERIALIZED VIEW extras AS SELECT count(*) AS n, count(extra) AS e FROM pay",
    )
    .await;
    eventually(&c, "SELECT n, e FROM extras", &[&["100", "50"]]).await;
    eventually(
        &c,
        "SELECT rows_read, rows_rejected FROM eddy.sources",
        &[&["100", "0"]],
    )
    .await;

    // Killed before another checkpoint: the view's state from before the ALTER goes on
    // under the new definition, and the source reads again what came after that checkpoint.
    s.kill();
    let s = Server::start_in(&dir).await;
    let c = s.client().await;
    produce(&p, "csv", (100..120).map(|n| line(n, true))).await;
    eventually_rows(&c, PER_ACCOUNT, &expected(120)).await;
    eventually(&c, "SELECT n, e FROM extras", &[&["120", "70"]]).await;
}
