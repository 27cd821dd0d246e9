//! SQL cursors over the real wire protocol (`DECLARE … CURSOR`, `FETCH`, `CLOSE`), as psycopg's
//! server-side cursors use them, with PostgreSQL's errors; and protocol-level portals with a
//! row limit (tokio-postgres' `query_portal`), as JDBC's fetch size and asyncpg's cursors use.

mod common;

use common::{error_text, rows, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_fetch_close_in_a_transaction_block() {
    let server = Server::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE n (i BIGINT NOT NULL, s TEXT); \
             INSERT INTO n SELECT v, 'row ' || v FROM generate_series(1, 10000) AS t(v)",
        )
        .await
        .expect("setup");
    // Outside a transaction block a cursor without WITH HOLD would end at once.
    let e = rows(&client, "DECLARE c CURSOR FOR SELECT i FROM n")
        .await
        .expect_err("outside a block");
    assert!(e.starts_with("25P01"), "{e}");

    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("DECLARE c NO SCROLL CURSOR FOR SELECT i, s FROM n ORDER BY i")
        .await
        .expect("declare");
    let e = rows(&client, "DECLARE c CURSOR FOR SELECT 1")
        .await
        .expect_err("twice");
    assert!(e.starts_with("42P03"), "{e}");
    let first = rows(&client, "FETCH FORWARD 3 FROM c")
        .await
        .expect("fetch 3");
    assert_eq!(
        first,
        vec![vec!["1", "row 1"], vec!["2", "row 2"], vec!["3", "row 3"]]
    );
    let next = rows(&client, "FETCH NEXT FROM c")
        .await
        .expect("fetch next");
    assert_eq!(next, vec![vec!["4", "row 4"]]);
    // The rest, across the engine's batches, then nothing.
    let rest = rows(&client, "FETCH ALL FROM c").await.expect("fetch all");
    assert_eq!(rest.len(), 10000 - 4);
    assert_eq!(rest[0], vec!["5", "row 5"]);
    assert_eq!(rest[rest.len() - 1], vec!["10000", "row 10000"]);
    assert!(rows(&client, "FETCH 5 FROM c")
        .await
        .expect("exhausted")
        .is_empty());
    let e = rows(&client, "FETCH PRIOR FROM c")
        .await
        .expect_err("backward");
    assert!(e.starts_with("55000"), "{e}");
    client.batch_execute("CLOSE c").await.expect("close");
    let e = rows(&client, "FETCH 1 FROM c").await.expect_err("closed");
    assert!(
        e.starts_with("34000") && e.contains("cursor \"c\" does not exist"),
        "{e}"
    );

    // COMMIT ends the block's cursors; WITH HOLD ones stay.
    client
        .batch_execute(
            "DECLARE gone CURSOR FOR SELECT i FROM n; \
             DECLARE kept CURSOR WITH HOLD FOR SELECT i FROM n ORDER BY i DESC",
        )
        .await
        .expect("declare two");
    client.batch_execute("COMMIT").await.expect("commit");
    let e = rows(&client, "FETCH 1 FROM gone")
        .await
        .expect_err("ended with the block");
    assert!(e.starts_with("34000"), "{e}");
    let kept = rows(&client, "FETCH 2 FROM kept").await.expect("held");
    assert_eq!(kept, vec![vec!["10000"], vec!["9999"]]);
    client.batch_execute("CLOSE ALL").await.expect("close all");
    let e = rows(&client, "FETCH 1 FROM kept")
        .await
        .expect_err("closed by ALL");
    assert!(e.starts_with("34000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_return_rows_in_pieces() {
    let server = Server::start().await;
    let mut client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE p (i BIGINT NOT NULL); \
             INSERT INTO p SELECT v FROM generate_series(1, 25) AS t(v)",
        )
        .await
        .expect("setup");
    let tx = client.client.transaction().await.expect("begin");
    let stmt = tx
        .prepare("SELECT i FROM p WHERE i > $1 ORDER BY i")
        .await
        .expect("prepare");
    let portal = tx.bind(&stmt, &[&5i64]).await.expect("bind");
    let mut seen = Vec::new();
    loop {
        let page = tx
            .query_portal(&portal, 7)
            .await
            .map_err(|e| error_text(&e))
            .expect("page");
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (6..=25).collect::<Vec<i64>>());
    tx.commit().await.expect("commit");
}
