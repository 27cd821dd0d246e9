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
         DROP MATERIALIZED VIEW gone;",
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
        &[&["big_k"], &["per_k"], &["per_user"]],
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
    // Dropped stays dropped; the definition is the user's text.
    let err = rows(&c, "SELECT * FROM gone").await.unwrap_err();
    assert!(err.contains("42P01"), "{err}");
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
