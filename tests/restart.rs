//! Restarts: the catalog and acknowledged INSERTs survive a SIGKILL. Tables,
//! sources, views and their dependencies come back from the data dir without
//! re-running DDL; table rows are replayed from the write-ahead log; dropped
//! objects stay dropped; a source read from a file yields the same view
//! contents again.

mod common;

use common::{eventually, rows, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_survives_sigkill() {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let clicks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/data/clicks.jsonl");
    let mut a = Server::start_in(&dir).await;
    let c = a.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE t (k VARCHAR, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts);
         CREATE SOURCE clicks (uid VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, ms INT,
                               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'file', path = '{}', format = 'json', on_error = 'skip');
         CREATE MATERIALIZED VIEW per_user AS SELECT uid, count(*) AS n FROM clicks GROUP BY uid;
         CREATE MATERIALIZED VIEW per_k AS SELECT k, sum(v) AS v FROM t GROUP BY k;
         CREATE MATERIALIZED VIEW big_k AS SELECT k FROM per_k WHERE v > 10;
         CREATE MATERIALIZED VIEW gone AS SELECT count(*) AS n FROM t;
         DROP MATERIALIZED VIEW gone;
         CREATE FUNCTION shout(s VARCHAR) RETURNS VARCHAR LANGUAGE sql AS $$ SELECT upper(s) || '!' $$;
         CREATE FUNCTION gone_fn(x BIGINT) RETURNS BIGINT RETURN x;
         DROP FUNCTION gone_fn;
         CREATE MATERIALIZED VIEW loud AS SELECT shout(k) AS k FROM t;",
        clicks.display()
    ))
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", common::error_text(&e)));
    let per_user_sql = "SELECT uid, n FROM per_user ORDER BY uid";
    let want: &[&[&str]] = &[&["u1", "2"], &["u2", "2"], &["u3", "1"], &["u4", "2"]];
    eventually(&c, per_user_sql, want).await;
    // Acknowledged INSERTs survive the kill (write-ahead log).
    c.batch_execute(
        "INSERT INTO t VALUES ('a', 5, '2026-01-01 00:00:01'), ('a', 7, '2026-01-01 00:00:02');
         INSERT INTO t VALUES ('b', 1, '2026-01-01 00:00:03');",
    )
    .await
    .unwrap_or_else(|e| panic!("INSERT: {}", common::error_text(&e)));
    drop(c);
    a.kill();

    let b = Server::start_in(&dir).await;
    let c = b.client().await;
    eventually(
        &c,
        "SELECT name FROM eddy.views ORDER BY name",
        &[&["big_k"], &["loud"], &["per_k"], &["per_user"]],
    )
    .await;
    eventually(
        &c,
        "SELECT name, connector FROM eddy.sources ORDER BY name",
        &[&["clicks", "file"], &["t", "table"]],
    )
    .await;
    // The file is read again from the start: the same result, not double.
    eventually(&c, per_user_sql, want).await;
    // The table's rows are back, in the table and in the views over it (views on views too).
    eventually(
        &c,
        "SELECT k, v FROM per_k ORDER BY k",
        &[&["a", "12"], &["b", "1"]],
    )
    .await;
    eventually(&c, "SELECT k FROM big_k ORDER BY k", &[&["a"]]).await;
    eventually(&c, "SELECT count(*) FROM t", &[&["3"]]).await;
    // And new rows keep coming in after the restart.
    c.batch_execute("INSERT INTO t VALUES ('b', 20, '2026-01-01 00:00:04')")
        .await
        .unwrap_or_else(|e| panic!("INSERT: {}", common::error_text(&e)));
    eventually(&c, "SELECT k FROM big_k ORDER BY k", &[&["a"], &["b"]]).await;
    // A SQL function comes back before the view that calls it.
    eventually(
        &c,
        "SELECT k FROM loud ORDER BY k",
        &[&["A!"], &["A!"], &["B!"], &["B!"]],
    )
    .await;
    // Dropped stays dropped; the definition is the user's text.
    let err = rows(&c, "SELECT * FROM gone").await.unwrap_err();
    assert!(err.contains("42P01"), "{err}");
    let err = rows(&c, "SELECT gone_fn(1)").await.unwrap_err();
    assert!(err.contains("gone_fn"), "{err}");
    let create = rows(&c, "SHOW CREATE MATERIALIZED VIEW big_k")
        .await
        .unwrap();
    assert_eq!(
        create[0][1],
        "CREATE MATERIALIZED VIEW big_k AS SELECT k FROM per_k WHERE v > 10"
    );
    // A table dropped and created again starts empty, also after another restart.
    c.batch_execute(
        "DROP TABLE t CASCADE;
         CREATE TABLE t (k VARCHAR, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts);
         INSERT INTO t VALUES ('z', 1, '2026-01-01 00:00:09');",
    )
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", common::error_text(&e)));
    drop(c);
    let mut b = b;
    b.kill();
    let c3 = Server::start_in(&dir).await;
    let c = c3.client().await;
    eventually(&c, "SELECT k FROM t", &[&["z"]]).await;
    eventually(
        &c,
        "SELECT name FROM eddy.views ORDER BY name",
        &[&["per_user"]],
    )
    .await;
    drop(c);
    drop(c3);
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// An upsert table's rows (upserts and deletes, replayed from its log) and a
/// lookup join on it survive a SIGKILL, with and after a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_table_and_lookup_join_survive_sigkill() {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = Server::start_in(&dir).await;
    let c = a.client().await;
    let run = |sql: &'static str| {
        let c = &c;
        async move {
            c.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", common::error_text(&e)))
        }
    };
    run("CREATE TABLE customers (id BIGINT, tier VARCHAR, PRIMARY KEY (id));
         CREATE TABLE orders (id BIGINT NOT NULL, customer BIGINT, ts TIMESTAMP NOT NULL,
                              WATERMARK FOR ts AS ts);
         CREATE MATERIALIZED VIEW per_tier AS SELECT tier, count(*) AS n FROM customers GROUP BY tier;
         CREATE MATERIALIZED VIEW enriched AS
           SELECT o.id, c.tier FROM orders o LEFT JOIN customers c ON o.customer = c.id;
         INSERT INTO customers VALUES (1, 'gold'), (2, 'basic'), (3, 'basic');
         INSERT INTO orders VALUES (10, 1, '2026-01-01 00:00:01'), (11, 2, '2026-01-01 00:00:02');
         CHECKPOINT;
         INSERT INTO customers VALUES (2, 'gold');
         DELETE FROM customers WHERE id = 3;
         INSERT INTO orders VALUES (12, 2, '2026-01-01 00:00:03'), (13, 3, '2026-01-01 00:00:04');
         SET state_ttl = '1 hour';
         CREATE MATERIALIZED VIEW same_customer AS
           SELECT a.id, b.id AS other FROM orders a JOIN orders b
             ON a.customer = b.customer AND a.id < b.id;
         CREATE MATERIALIZED VIEW per_customer AS
           SELECT a.customer, a.n, b.m
           FROM (SELECT customer, count(*) AS n FROM orders GROUP BY customer) a
           JOIN (SELECT customer, max(id) AS m FROM orders GROUP BY customer) b
             ON a.customer = b.customer;")
    .await;
    let tiers: &[&[&str]] = &[&["gold", "2"]];
    let enriched: &[&[&str]] = &[
        &["10", "gold"],
        &["11", "basic"],
        &["12", "gold"],
        &["13", "NULL"],
    ];
    let tiers_sql = "SELECT tier, n FROM per_tier ORDER BY tier";
    let enriched_sql = "SELECT id, tier FROM enriched ORDER BY id";
    eventually(&c, tiers_sql, tiers).await;
    eventually(&c, enriched_sql, enriched).await;
    drop(c);
    a.kill();

    let b = Server::start_in(&dir).await;
    assert!(
        b.log_contains("recovering from checkpoint"),
        "{}",
        b.log_tail()
    );
    let c = b.client().await;
    eventually(
        &c,
        "SELECT id, tier FROM customers ORDER BY id",
        &[&["1", "gold"], &["2", "gold"]],
    )
    .await;
    eventually(&c, tiers_sql, tiers).await;
    eventually(&c, enriched_sql, enriched).await;
    // The session's state_ttl was written into the view's definition.
    eventually(
        &c,
        "SELECT name, status FROM eddy.views WHERE name = 'same_customer'",
        &[&["same_customer", "running"]],
    )
    .await;
    // A view whose join inputs were hoisted into views of their own comes back with them.
    let per_customer = "SELECT customer, n, m FROM per_customer ORDER BY customer";
    eventually(
        &c,
        per_customer,
        &[&["1", "1", "10"], &["2", "2", "12"], &["3", "1", "13"]],
    )
    .await;
    // Still an upsert table, and the join still looks up its current rows.
    c.batch_execute(
        "INSERT INTO customers VALUES (1, 'basic');
         INSERT INTO orders VALUES (14, 1, '2026-01-01 00:00:05');",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", common::error_text(&e)));
    eventually(&c, tiers_sql, &[&["basic", "1"], &["gold", "1"]]).await;
    eventually(
        &c,
        "SELECT id, tier FROM enriched WHERE id = 14",
        &[&["14", "basic"]],
    )
    .await;
    eventually(
        &c,
        per_customer,
        &[&["1", "2", "14"], &["2", "2", "12"], &["3", "1", "13"]],
    )
    .await;
}
