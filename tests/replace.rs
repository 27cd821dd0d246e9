//! New definitions for running views, over the real protocol:
//! `CREATE OR REPLACE MATERIALIZED VIEW` with the same operators keeps every
//! operator's state while rows keep arriving (nothing lost, nothing counted
//! twice; downstream views, cursors on SUBSCRIBE and a restart see one
//! continuous view), `ALTER MATERIALIZED VIEW … SET (state_ttl)` applies the
//! new TTL to the rows a join already holds, and a definition with other
//! operators rebuilds the view from its inputs — or is refused with the reason.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, rows, until, PgClient, Server};

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// Run `sql` with psql against `server`; it must succeed and print `notice`.
async fn psql_notices(server: &Server, sql: &str, notice: &str) {
    let (conn, sql) = (server.conn_str(), sql.to_string());
    let (ok, _, err) = tokio::task::spawn_blocking(move || common::psql_as(&conn, &sql, None))
        .await
        .expect("psql");
    assert!(ok && err.contains(notice), "wanted `{notice}`: {err}");
}

/// The SQLSTATE and message of a statement that must fail.
async fn refused(c: &PgClient, sql: &str) -> (String, String) {
    let e = c
        .batch_execute(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("`{sql}` did not fail"));
    let code = e.code().map(|s| s.code().to_string()).unwrap_or_default();
    (code, common::error_text(&e))
}

const PER_KEY: &str = "SELECT k, count(*) AS n, sum(v) AS s FROM t GROUP BY k";

/// Rows `(k, v)` for v in `0..batches * ROWS`, k = v % 7, written by a client
/// of `server` in batches of [`ROWS`], 20 ms apart, while the test goes on.
async fn write_load(server: &Server, batches: i64) -> tokio::task::JoinHandle<()> {
    let writer = server.client().await;
    tokio::spawn(async move {
        for b in 0..batches {
            let values: Vec<String> = (0..ROWS)
                .map(|i| format!("({}, {})", (b * ROWS + i) % 7, b * ROWS + i))
                .collect();
            exec(
                &writer,
                &format!("INSERT INTO t VALUES {}", values.join(", ")),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Rows per batch of [`write_load`].
const ROWS: i64 = 50;

/// Rows keep arriving while the view gets new definitions with the same
/// operators (other whitespace, a state_ttl, ALTER SET / RESET): every row is
/// counted exactly once, in the view and in a view that reads it, a cursor
/// on SUBSCRIBE keeps receiving changes, and after a SIGKILL the view
/// recovers its checkpointed state under its new definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_operators_keep_state_under_load() {
    let mut server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE t (k BIGINT NOT NULL, v BIGINT NOT NULL);
             CREATE MATERIALIZED VIEW per_key AS {PER_KEY};
             CREATE MATERIALIZED VIEW total AS SELECT sum(n) AS n, sum(s) AS s FROM per_key;"
        ),
    )
    .await;
    let sub = server.client().await;
    exec(
        &sub,
        "BEGIN; DECLARE changes CURSOR FOR SUBSCRIBE per_key WITH (SNAPSHOT = false)",
    )
    .await;

    const BATCHES: i64 = 60;
    let load = write_load(&server, BATCHES).await;
    let plan = rows(
        &c,
        &format!("EXPLAIN CREATE OR REPLACE MATERIALIZED VIEW per_key AS {PER_KEY}"),
    )
    .await
    .expect("explain");
    assert!(
        plan.last()
            .is_some_and(|l| l[0].starts_with("Replace: in place")),
        "{plan:?}"
    );
    let definitions = [
        format!("CREATE OR REPLACE MATERIALIZED VIEW per_key AS {PER_KEY}"),
        "CREATE OR REPLACE MATERIALIZED VIEW per_key WITH (state_ttl = '1 hour') AS \
         SELECT k,  count(*) AS n,  sum(v) AS s  FROM t  GROUP BY k"
            .to_string(),
        "ALTER MATERIALIZED VIEW per_key SET (state_ttl = '2 hours')".to_string(),
        "ALTER MATERIALIZED VIEW per_key RESET (state_ttl)".to_string(),
        "ALTER MATERIALIZED VIEW per_key SET (state_ttl = '3 hours')".to_string(),
    ];
    for sql in definitions.iter().cycle().take(10) {
        exec(&c, sql).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    load.await.expect("writer");
    let n = BATCHES * ROWS;
    let sum = n * (n - 1) / 2;
    let want = [n.to_string(), sum.to_string()];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    eventually(&c, "SELECT sum(n), sum(s) FROM per_key", &[&want]).await;
    eventually(&c, "SELECT n, s FROM total", &[&want]).await;
    eventually(
        &c,
        "SELECT status, last_error FROM eddy.views WHERE name = 'per_key'",
        &[&["running", "NULL"]],
    )
    .await;
    // The cursor opened before the first replacement still receives changes.
    exec(&server.client().await, "INSERT INTO t VALUES (100, 1)").await;
    let fetched = rows(&sub, "FETCH ALL changes WITH (timeout = '5s')")
        .await
        .expect("fetch");
    assert!(
        fetched.iter().any(|r| r.iter().any(|v| v == "100")),
        "the SUBSCRIBE cursor saw no change after the replacements: {} rows",
        fetched.len()
    );
    exec(&sub, "COMMIT").await;
    let shown = rows(&c, "SHOW CREATE MATERIALIZED VIEW per_key")
        .await
        .expect("show");
    assert!(shown[0][1].contains("'3 hours'"), "{shown:?}");

    // A restart recovers the checkpointed state under the new definition.
    exec(&c, "CHECKPOINT").await;
    drop(c);
    drop(sub);
    server.kill();
    let dir = server.data_dir.clone();
    let restarted = Server::start_in(&dir).await;
    let c = restarted.client().await;
    let want = [(n + 1).to_string(), (sum + 1).to_string()];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    eventually(&c, "SELECT sum(n), sum(s) FROM per_key", &[&want]).await;
    let shown = rows(&c, "SHOW CREATE MATERIALIZED VIEW per_key")
        .await
        .expect("show");
    assert!(shown[0][1].contains("'3 hours'"), "{shown:?}");
}

/// `ALTER MATERIALIZED VIEW … SET (state_ttl)` on a join: the rows the join
/// holds are carried over and expire the new TTL after they arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_state_ttl_applies_to_held_rows() {
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE l (k BIGINT, a TEXT);
         CREATE TABLE r (k BIGINT, b TEXT);
         CREATE MATERIALIZED VIEW j WITH (state_ttl = '1 hour') AS
           SELECT l.k, a, b FROM l JOIN r ON l.k = r.k;
         INSERT INTO l VALUES (1, 'kept');",
    )
    .await;
    eventually(
        &c,
        "SELECT sum(rows_in) FROM eddy.operators WHERE view = 'j' AND operator = 'join'",
        &[&["1"]],
    )
    .await;
    let arrived = Instant::now();
    exec(
        &c,
        "ALTER MATERIALIZED VIEW j SET (state_ttl = '6 seconds')",
    )
    .await;
    // Carried over: a match within the new TTL.
    exec(&c, "INSERT INTO r VALUES (1, 'first')").await;
    eventually(&c, "SELECT a, b FROM j", &[&["kept", "first"]]).await;
    assert!(
        arrived.elapsed() < Duration::from_secs(5),
        "too slow to tell the TTLs apart"
    );
    // Gone once the new TTL has passed since it arrived (ticks are once a second).
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(arrived.elapsed()) + Duration::from_secs(2),
    )
    .await;
    exec(&c, "INSERT INTO r VALUES (1, 'late')").await;
    exec(
        &c,
        "INSERT INTO l VALUES (2, 'new'); INSERT INTO r VALUES (2, 'match')",
    )
    .await;
    eventually(
        &c,
        "SELECT a, b FROM j ORDER BY b",
        &[&["kept", "first"], &["new", "match"]],
    )
    .await;
    let (code, msg) = refused(&c, "ALTER MATERIALIZED VIEW j RESET (state_ttl)").await;
    assert_eq!(code, "22023", "{msg}");
    assert!(msg.contains("forever"), "{msg}");
}

/// A definition with other operators rebuilds the view from its inputs (a
/// table's log), and what cannot be rebuilt is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_operators_rebuild_or_are_refused() {
    let server = Server::start().await;
    let c = server.client().await;
    let values: Vec<String> = (0..2000).map(|i| format!("({}, {i})", i % 5)).collect();
    exec(
        &c,
        &format!(
            "CREATE TABLE t (k BIGINT NOT NULL, v BIGINT NOT NULL);
             INSERT INTO t VALUES {};
             CREATE MATERIALIZED VIEW per_key AS {PER_KEY};",
            values.join(", ")
        ),
    )
    .await;
    eventually(&c, "SELECT sum(n) FROM per_key", &[&["2000"]]).await;
    let new = "SELECT k, count(*) AS n, max(v) AS top FROM t GROUP BY k";
    let plan = rows(
        &c,
        &format!("EXPLAIN CREATE OR REPLACE MATERIALIZED VIEW per_key AS {new}"),
    )
    .await
    .expect("explain");
    let last = &plan.last().expect("plan")[0];
    assert!(
        last.starts_with("Replace: rebuilds") && last.contains("max("),
        "{plan:?}"
    );
    let sub = server.client().await;
    exec(
        &sub,
        "BEGIN; DECLARE changes CURSOR FOR SUBSCRIBE per_key WITH (SNAPSHOT = false)",
    )
    .await;
    // psql shows what was done, as EXPLAIN said it would be.
    psql_notices(
        &server,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW per_key AS {new}"),
        "NOTICE:  materialized view \"per_key\": rebuilds the view",
    )
    .await;
    // A subscriber of the old rows is told, not left waiting.
    let (code, msg) = refused(&sub, "FETCH ALL changes WITH (timeout = '5s')").await;
    assert_eq!(code, "55000", "{msg}");
    assert!(msg.contains("replaced"), "{msg}");
    exec(&c, "INSERT INTO t VALUES (0, 5000)").await;
    eventually(
        &c,
        "SELECT k, n, top FROM per_key ORDER BY k",
        &[
            &["0", "401", "5000"],
            &["1", "400", "1996"],
            &["2", "400", "1997"],
            &["3", "400", "1998"],
            &["4", "400", "1999"],
        ],
    )
    .await;

    // Refusals, each with its SQLSTATE.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW top AS SELECT max(top) AS m FROM per_key",
    )
    .await;
    let (code, msg) = refused(
        &c,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW per_key AS {PER_KEY}"),
    )
    .await;
    assert_eq!(code, "2BP01", "{msg}");
    assert!(msg.contains("top"), "{msg}");
    // Same operators are fine with a dependant.
    exec(
        &c,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW per_key AS {new}"),
    )
    .await;
    exec(
        &c,
        "CREATE SOURCE g (x BIGINT) WITH (connector = 'datagen', rows_per_second = '200');
         CREATE MATERIALIZED VIEW gv AS SELECT count(*) AS n FROM g;",
    )
    .await;
    until(&c, "SELECT n FROM gv", "counted a row", |r| {
        r.first().is_some_and(|r| r[0] != "0")
    })
    .await;
    let replaced = "SELECT count(*) AS n, max(x) AS m FROM g";
    let (code, msg) = refused(
        &c,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW gv AS {replaced}"),
    )
    .await;
    assert_eq!(code, "0A000", "{msg}");
    assert!(msg.contains("cannot read again"), "{msg}");
    exec(
        &c,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW gv WITH (backfill = 'none') AS {replaced}"),
    )
    .await;
    for (sql, want) in [
        (
            "CREATE OR REPLACE MATERIALIZED VIEW t AS SELECT 1 AS x",
            "42809",
        ),
        (
            "ALTER MATERIALIZED VIEW t SET (state_ttl = '1 hour')",
            "42809",
        ),
        (
            "ALTER MATERIALIZED VIEW nope SET (state_ttl = '1 hour')",
            "42P01",
        ),
        (
            "ALTER MATERIALIZED VIEW per_key SET (backfill = 'none')",
            "22023",
        ),
        (
            "ALTER MATERIALIZED VIEW per_key SET (colour = 'red')",
            "22023",
        ),
        (
            "ALTER MATERIALIZED VIEW per_key SET (state_ttl = 'forever')",
            "22023",
        ),
        ("ALTER MATERIALIZED VIEW per_key RENAME TO other", "0A000"),
        (
            "CREATE OR REPLACE MATERIALIZED VIEW IF NOT EXISTS per_key AS SELECT 1 AS x",
            "42601",
        ),
    ] {
        let (code, msg) = refused(&c, sql).await;
        assert_eq!(code, want, "`{sql}`: {msg}");
    }
    psql_notices(
        &server,
        "ALTER MATERIALIZED VIEW IF EXISTS nope SET (state_ttl = '1 hour')",
        "NOTICE:  relation \"nope\" does not exist, skipping",
    )
    .await;
    // The refused statements changed nothing.
    eventually(&c, "SELECT sum(n) FROM per_key", &[&["2001"]]).await;
}

/// In place also when the view reads another view, reads one input twice (a
/// self-join) and closes event-time windows: the windows still open keep
/// their rows, and a window that closes after the replacement counts the
/// rows from before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_with_windows_self_joins_and_views_on_views() {
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE e (k BIGINT NOT NULL, ts TIMESTAMP NOT NULL,
                         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
         CREATE MATERIALIZED VIEW pass AS SELECT k, ts FROM e WHERE k >= 0;
         CREATE MATERIALIZED VIEW per_minute AS
           SELECT window_start, count(*) AS n FROM TUMBLE(pass, ts, INTERVAL '1' MINUTE)
           GROUP BY window_start EMIT ON WINDOW CLOSE;
         CREATE MATERIALIZED VIEW pairs WITH (state_ttl = '1 hour') AS
           SELECT a.k, count(*) AS n FROM e a JOIN e b ON a.k = b.k GROUP BY a.k;
         INSERT INTO e VALUES (1, '2026-01-01 00:00:01'), (1, '2026-01-01 00:00:02'),
                              (2, '2026-01-01 00:00:03');",
    )
    .await;
    eventually(
        &c,
        "SELECT k, n FROM pairs ORDER BY k",
        &[&["1", "4"], &["2", "1"]],
    )
    .await;
    for sql in [
        "CREATE OR REPLACE MATERIALIZED VIEW per_minute AS
           SELECT window_start, count(*) AS n FROM TUMBLE(pass, ts, INTERVAL '1' MINUTE)
           GROUP BY window_start EMIT ON WINDOW CLOSE",
        "ALTER MATERIALIZED VIEW pairs SET (state_ttl = '2 hours')",
    ] {
        exec(&c, sql).await;
    }
    exec(
        &c,
        "INSERT INTO e VALUES (1, '2026-01-01 00:00:30'), (3, '2026-01-01 00:01:30')",
    )
    .await;
    // The first minute closes after the replacement: it counts its four rows.
    eventually(
        &c,
        "SELECT window_start, n FROM per_minute",
        &[&["2026-01-01 00:00:00", "4"]],
    )
    .await;
    // (1): 3 rows → 9 pairs; the rows held before the ALTER still match.
    eventually(
        &c,
        "SELECT k, n FROM pairs ORDER BY k",
        &[&["1", "9"], &["2", "1"], &["3", "1"]],
    )
    .await;
}

/// Whether the ids a view counted are exactly one run `lo..=hi`: as many
/// rows as ids in the run, and their sum the run's (none lost, none twice);
/// and where the run starts (the rows before a replacement are in it).
const CONTIGUOUS: &str = "SELECT count(*) AS n, \
     2 * sum(id) = (min(id) + max(id)) * count(*) AND max(id) - min(id) + 1 = count(*) \
     AS contiguous, min(id) AS lo FROM g";

/// A definition that changes only what comes after an aggregate keeps the
/// aggregate's state: on a generator, which cannot read its rows again (so
/// a rebuild is refused), the replaced view goes on counting one unbroken
/// run of ids, also after a SIGKILL; on a table under load every row is
/// counted once and SUBSCRIBE cursors are told the rows were replaced; in a
/// join of two aggregates the unchanged one is kept and the changed one is
/// built from its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_aggregates_keep_their_state() {
    let mut server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE SOURCE g (id BIGINT) WITH (connector = 'datagen', rows_per_second = '400',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
           'fields.id.end' = '1000000000');
         CREATE MATERIALIZED VIEW gv AS
           SELECT count(*) AS n, sum(id) AS s, min(id) AS lo, max(id) AS hi FROM g;",
    )
    .await;
    let counted = |r: &[Vec<String>]| r.first().map_or(0, |r| r[0].parse::<i64>().unwrap_or(0));
    let before = until(&c, "SELECT n, lo FROM gv", "counted 200 rows", |r| {
        counted(r) >= 200
    })
    .await;
    let plan = rows(
        &c,
        &format!("EXPLAIN CREATE OR REPLACE MATERIALIZED VIEW gv AS {CONTIGUOUS}"),
    )
    .await
    .expect("explain");
    let last = &plan.last().expect("plan")[0];
    assert!(
        last.starts_with("Replace: keeps \"Aggregate: group=[]")
            && last.contains("reads g on from where the view stood"),
        "{plan:?}"
    );
    exec(
        &c,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW gv AS {CONTIGUOUS}"),
    )
    .await;
    let seen = counted(&before);
    let mut last_n = 0;
    let first = &before[0][1];
    for _ in 0..3 {
        let got = until(&c, "SELECT n, contiguous, lo FROM gv", "counted on", |r| {
            counted(r) > seen.max(last_n)
        })
        .await;
        assert_eq!(got[0][1], "t", "rows lost or counted twice: {got:?}");
        assert_eq!(
            &got[0][2], first,
            "the rows before the replacement are gone"
        );
        last_n = counted(&got);
    }
    // The kept state was made durable by the statement: a SIGKILL loses nothing.
    let replaced = rows(
        &c,
        "SELECT count(*) FROM eddy.checkpoints WHERE trigger = 'replace' AND status = 'completed'",
    )
    .await
    .expect("checkpoints");
    assert_eq!(replaced, [["1"]]);
    drop(c);
    server.kill();
    let dir = server.data_dir.clone();
    let server = Server::start_in(&dir).await;
    let c = server.client().await;
    let got = until(
        &c,
        "SELECT n, contiguous, lo FROM gv",
        "counted on after a restart",
        |r| counted(r) > last_n,
    )
    .await;
    assert_eq!(got[0][1], "t", "rows lost or counted twice: {got:?}");
    assert_eq!(
        &got[0][2], first,
        "the rows before the replacement are gone"
    );
    exec(&c, "DROP SOURCE g CASCADE").await;

    // A table under load; the new definition filters and scales the same aggregate.
    exec(
        &c,
        &format!(
            "CREATE TABLE t (k BIGINT NOT NULL, v BIGINT NOT NULL);
                  CREATE MATERIALIZED VIEW per_key AS {PER_KEY};"
        ),
    )
    .await;
    let sub = server.client().await;
    exec(
        &sub,
        "BEGIN; DECLARE changes CURSOR FOR SUBSCRIBE per_key WITH (SNAPSHOT = false)",
    )
    .await;
    const BATCHES: i64 = 40;
    let load = write_load(&server, BATCHES).await;
    until(&c, "SELECT sum(n) FROM per_key", "counted rows", |r| {
        counted(r) > 0
    })
    .await;
    let scaled = "CREATE OR REPLACE MATERIALIZED VIEW per_key AS
           SELECT k, count(*) AS n, sum(v) * 2 AS s2 FROM t GROUP BY k HAVING k < 5";
    let plan = rows(&c, &format!("EXPLAIN {scaled}"))
        .await
        .expect("explain");
    let last = &plan.last().expect("plan")[0];
    assert!(
        last.starts_with("Replace: keeps") && last.contains("reads t on from where"),
        "{plan:?}"
    );
    psql_notices(
        &server,
        scaled,
        "NOTICE:  materialized view \"per_key\": keeps \"Aggregate",
    )
    .await;
    let (code, msg) = refused(&sub, "FETCH ALL changes WITH (timeout = '5s')").await;
    assert_eq!(code, "55000", "{msg}");
    assert!(msg.contains("replaced"), "{msg}");
    load.await.expect("writer");
    let n = BATCHES * ROWS;
    let want: Vec<Vec<String>> = (0..5)
        .map(|k| {
            let vs: Vec<i64> = (0..n).filter(|v| v % 7 == k).collect();
            let s2: i64 = vs.iter().sum::<i64>() * 2;
            vec![k.to_string(), vs.len().to_string(), s2.to_string()]
        })
        .collect();
    common::eventually_rows(&c, "SELECT k, n, s2 FROM per_key ORDER BY k", &want).await;

    // A join of two aggregates: the unchanged side is kept, the other built again.
    exec(
        &c,
        "CREATE TABLE u (k BIGINT NOT NULL, v BIGINT NOT NULL);
         INSERT INTO u VALUES (0, 10), (0, 20), (1, 30);
         CREATE MATERIALIZED VIEW j WITH (state_ttl = '1 hour') AS
           SELECT a.k, a.n, b.m FROM (SELECT k, count(*) AS n FROM t GROUP BY k) a
           JOIN (SELECT k, max(v) AS m FROM u GROUP BY k) b ON a.k = b.k;",
    )
    .await;
    let per_t = (n / 7 + 1).to_string();
    eventually(
        &c,
        "SELECT k, n, m FROM j ORDER BY k",
        &[&["0", &per_t, "20"], &["1", &per_t, "30"]],
    )
    .await;
    let min_side = "CREATE OR REPLACE MATERIALIZED VIEW j WITH (state_ttl = '1 hour') AS
           SELECT a.k, a.n, b.m FROM (SELECT k, count(*) AS n FROM t GROUP BY k) a
           JOIN (SELECT k, min(v) AS m FROM u GROUP BY k) b ON a.k = b.k";
    let plan = rows(&c, &format!("EXPLAIN {min_side}"))
        .await
        .expect("explain");
    let last = &plan.last().expect("plan")[0];
    assert!(
        last.contains("aggregates=[count(Int64(1))]")
            && last.contains("reads t on from where the view stood, and u from the start"),
        "{plan:?}"
    );
    exec(&c, min_side).await;
    exec(
        &c,
        "INSERT INTO t VALUES (1, 1); INSERT INTO u VALUES (1, 5)",
    )
    .await;
    let more = (n / 7 + 2).to_string();
    eventually(
        &c,
        "SELECT k, n, m FROM j ORDER BY k",
        &[&["0", &per_t, "10"], &["1", &more, "5"]],
    )
    .await;
    // One input read by a kept aggregate and by a new one: rebuilt instead, and said why.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW both_sides WITH (state_ttl = '1 hour') AS
           SELECT a.k, a.n, b.m FROM (SELECT k, count(*) AS n FROM t GROUP BY k) a
           JOIN (SELECT k, max(v) AS m FROM t GROUP BY k) b ON a.k = b.k",
    )
    .await;
    let min_of_t = "CREATE OR REPLACE MATERIALIZED VIEW both_sides WITH (state_ttl = '1 hour') AS
           SELECT a.k, a.n, b.m FROM (SELECT k, count(*) AS n FROM t GROUP BY k) a
           JOIN (SELECT k, min(v) AS m FROM t GROUP BY k) b ON a.k = b.k";
    let plan = rows(&c, &format!("EXPLAIN {min_of_t}"))
        .await
        .expect("explain");
    let last = &plan.last().expect("plan")[0];
    assert!(
        last.starts_with("Replace: rebuilds") && last.contains("reads \"t\" both"),
        "{plan:?}"
    );
    exec(&c, min_of_t).await;
    eventually(
        &c,
        "SELECT k, n, m FROM both_sides WHERE k < 2 ORDER BY k",
        &[&["0", &per_t, "0"], &["1", &more, "1"]],
    )
    .await;
    eventually(
        &c,
        "SELECT status, last_error FROM eddy.views WHERE name IN ('j', 'per_key', 'both_sides')",
        &[
            &["running", "NULL"],
            &["running", "NULL"],
            &["running", "NULL"],
        ],
    )
    .await;
}
