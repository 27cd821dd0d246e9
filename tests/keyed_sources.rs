//! Keyed Kafka sources: `upsert_json` (the Kafka key is the key, a null value
//! deletes) and `debezium_json` (change events) read as updating streams
//! that aggregates and Top-N consume with retractions, and whose current
//! rows survive a SIGKILL (checkpointed with the offsets). The broker is
//! librdkafka's mock cluster in this test process.

mod common;

use common::kafka::{produce, producer, read_all};
use common::{eventually, rows, PgClient, Server};
use rdkafka::mocking::MockCluster;

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// A record of partition 0: key, value ("" is a tombstone).
fn rec(key: &str, value: &str) -> (i32, Option<String>, String, Option<i64>) {
    (0, Some(key.to_string()), value.to_string(), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_topics_update_and_delete_rows_across_a_sigkill() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    cluster.create_topic("accounts", 1, 1).expect("topic");
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Server::start_in(&dir).await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE accounts (id BIGINT, owner VARCHAR, balance BIGINT NOT NULL,
                                     PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = 'accounts', 'bootstrap.servers' = '{bootstrap}',
                     format = 'upsert_json');
             CREATE MATERIALIZED VIEW totals AS
               SELECT count(*) AS n, sum(balance) AS total FROM accounts;
             CREATE MATERIALIZED VIEW by_owner AS
               SELECT owner, count(*) AS n, sum(balance) AS total FROM accounts GROUP BY owner;
             CREATE MATERIALIZED VIEW richest AS
               SELECT id, balance FROM (
                 SELECT id, balance, ROW_NUMBER() OVER (ORDER BY balance DESC) AS r FROM accounts)
               WHERE r <= 2;"
        ),
    )
    .await;
    produce(
        &p,
        "accounts",
        [
            rec("1", r#"{"id": 1, "owner": "ann", "balance": 10}"#),
            rec("2", r#"{"id": 2, "owner": "bob", "balance": 20}"#),
            rec("3", r#"{"id": 3, "owner": "ann", "balance": 30}"#),
            // An update of 1, a delete of 2 (key as a JSON object), a bad record.
            rec("1", r#"{"id": 1, "owner": "bob", "balance": 15}"#),
            rec(r#"{"id": 2}"#, ""),
            rec("4", r#"{"id": 4, "owner": "cy"}"#),
        ],
    )
    .await;
    eventually(&c, "SELECT n, total FROM totals", &[&["2", "45"]]).await;
    eventually(
        &c,
        "SELECT owner, n, total FROM by_owner ORDER BY owner",
        &[&["ann", "1", "30"], &["bob", "1", "15"]],
    )
    .await;
    eventually(
        &c,
        "SELECT id, balance FROM richest ORDER BY balance DESC",
        &[&["3", "30"], &["1", "15"]],
    )
    .await;
    let dead = rows(&c, "SELECT error FROM eddy.dead_letters")
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0][0].contains("balance"), "{dead:?}");

    exec(&c, "CHECKPOINT").await;
    s.kill();
    // While it is down: 3 moves to bob, 5 arrives; after: 1 is deleted.
    produce(
        &p,
        "accounts",
        [
            rec("3", r#"{"id": 3, "owner": "bob", "balance": 31}"#),
            rec("5", r#"{"id": 5, "owner": "cy", "balance": 50}"#),
        ],
    )
    .await;
    let s = Server::start_in(&dir).await;
    let c = s.client().await;
    produce(&p, "accounts", [rec("1", "")]).await;
    eventually(&c, "SELECT n, total FROM totals", &[&["2", "81"]]).await;
    eventually(
        &c,
        "SELECT owner, n, total FROM by_owner ORDER BY owner",
        &[&["bob", "1", "31"], &["cy", "1", "50"]],
    )
    .await;
    eventually(
        &c,
        "SELECT id, balance FROM richest ORDER BY balance DESC",
        &[&["5", "50"], &["3", "31"]],
    )
    .await;
    // A view created now starts from the source's current rows.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW later AS SELECT count(*) AS n FROM accounts",
    )
    .await;
    eventually(&c, "SELECT n FROM later", &[&["2"]]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_change_events_insert_update_and_delete() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    cluster
        .create_topic("pg.public.orders", 1, 1)
        .expect("topic");
    let s = Server::start().await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE orders (id BIGINT, item VARCHAR, qty BIGINT, PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = 'pg.public.orders',
                     'bootstrap.servers' = '{bootstrap}', format = 'debezium_json');
             CREATE MATERIALIZED VIEW per_item AS
               SELECT item, sum(qty) AS qty FROM orders GROUP BY item;"
        ),
    )
    .await;
    let event = |op: &str, before: &str, after: &str| {
        format!(r#"{{"before": {before}, "after": {after}, "op": "{op}", "ts_ms": 1}}"#)
    };
    produce(
        &p,
        "pg.public.orders",
        [
            rec(
                "1",
                &event("r", "null", r#"{"id": 1, "item": "pen", "qty": 2}"#),
            ),
            rec(
                "2",
                &event("c", "null", r#"{"id": 2, "item": "ink", "qty": 5}"#),
            ),
            // With the schema/payload envelope, as Debezium's JSON converter writes by default.
            rec(
                "1",
                &format!(
                    r#"{{"schema": {{}}, "payload": {}}}"#,
                    event(
                        "u",
                        r#"{"id": 1, "item": "pen", "qty": 2}"#,
                        r#"{"id": 1, "item": "pen", "qty": 7}"#
                    )
                ),
            ),
            rec(
                "2",
                &event("d", r#"{"id": 2, "item": "ink", "qty": 5}"#, "null"),
            ),
            // Debezium's tombstone after a delete: skipped, not a bad record.
            rec("2", ""),
            rec("3", r#"{"op": "x"}"#),
        ],
    )
    .await;
    eventually(&c, "SELECT item, qty FROM per_item", &[&["pen", "7"]]).await;
    let dead = rows(&c, "SELECT error FROM eddy.dead_letters")
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0][0].contains("unknown op \"x\""), "{dead:?}");
}

#[tokio::test]
async fn keys_and_keyed_formats_go_together() {
    let s = Server::start().await;
    let c = s.client().await;
    for (sql, state, text) in [
        (
            "CREATE SOURCE a (id BIGINT, PRIMARY KEY (id)) WITH (connector = 'kafka', \
             topic = 't', 'bootstrap.servers' = 'localhost:1', format = 'json')",
            "0A000",
            "format is not keyed",
        ),
        (
            "CREATE SOURCE b (id BIGINT) WITH (connector = 'kafka', topic = 't', \
             'bootstrap.servers' = 'localhost:1', format = 'upsert_json')",
            "22023",
            "needs a PRIMARY KEY",
        ),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        let db = e.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), state, "{sql}: {}", db.message());
        assert!(db.message().contains(text), "{sql}: {}", db.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_sinks_write_latest_rows_and_tombstones_that_upsert_sources_read_back() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("per_k", 1, 1).expect("topic");
    let s = Server::start().await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE t (k VARCHAR, v BIGINT, PRIMARY KEY (k));
             CREATE MATERIALIZED VIEW per_k AS SELECT k, sum(v) AS total FROM t GROUP BY k;
             CREATE SINK out FROM per_k WITH (connector = 'kafka', topic = 'per_k',
               'bootstrap.servers' = '{bootstrap}', format = 'upsert');
             CREATE SOURCE back (k VARCHAR, total BIGINT, PRIMARY KEY (k))
               WITH (connector = 'kafka', topic = 'per_k', 'bootstrap.servers' = '{bootstrap}',
                     format = 'upsert_json');
             CREATE MATERIALIZED VIEW back_rows AS SELECT k, total FROM back;"
        ),
    )
    .await;
    exec(&c, "INSERT INTO t VALUES ('a', 1), ('b', 2)").await;
    eventually(
        &c,
        "SELECT k, total FROM back_rows ORDER BY k",
        &[&["a", "1"], &["b", "2"]],
    )
    .await;
    exec(&c, "INSERT INTO t VALUES ('a', 5)").await;
    exec(&c, "DELETE FROM t WHERE k = 'b'").await;
    eventually(
        &c,
        "SELECT k, total FROM back_rows ORDER BY k",
        &[&["a", "5"]],
    )
    .await;
    let topic: Vec<(Option<String>, String)> = read_all(&bootstrap, "per_k", 1)
        .into_iter()
        .map(|(_, _, k, v)| (k, v))
        .collect();
    let key = |k: &str| Some(format!(r#"{{"k":"{k}"}}"#));
    assert_eq!(
        topic,
        vec![
            (key("a"), r#"{"k":"a","total":1}"#.to_string()),
            (key("b"), r#"{"k":"b","total":2}"#.to_string()),
            (key("a"), r#"{"k":"a","total":5}"#.to_string()),
            (key("b"), String::new()),
        ]
    );
    let e = c
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW flat AS SELECT k, v FROM t;
             CREATE SINK bad FROM flat WITH (connector = 'kafka', topic = 'x',
               'bootstrap.servers' = '{bootstrap}', format = 'upsert')"
        ))
        .await
        .expect_err("an upsert sink without a key");
    assert!(
        common::error_text(&e).contains("needs a key"),
        "{}",
        common::error_text(&e)
    );
}
