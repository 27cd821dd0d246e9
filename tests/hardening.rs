//! Hardening (issue 14): statements, records and clients that used to crash
//! the server, lose acknowledged rows or reach files they should not. Each
//! test talks to a real `eddy serve` process over pgwire and checks, after
//! the bad input, that the server is still there and still right.
//! (The stuck-sink case lives in `tests/kafka.rs`, beside its broker.)

mod common;

use std::time::{Duration, Instant};

use common::{eventually, rows, PgClient, Server};

/// Longest any single statement here may take before the test calls it hung.
const STEP: Duration = Duration::from_secs(20);

async fn exec(client: &PgClient, sql: &str) {
    if let Err(e) = client.batch_execute(sql).await {
        panic!("`{}` failed: {}", short(sql), common::error_text(&e));
    }
}

/// The SQLSTATE and message of a statement that must fail.
async fn error(client: &PgClient, sql: &str) -> (String, String) {
    let r = tokio::time::timeout(STEP, client.batch_execute(sql))
        .await
        .unwrap_or_else(|_| panic!("`{}` hung", short(sql)));
    let e = r.expect_err(&format!("`{}` should fail", short(sql)));
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("`{}`: not a server error: {e}", short(sql)));
    (db.code().code().to_string(), db.message().to_string())
}

fn short(sql: &str) -> String {
    sql.chars().take(120).collect()
}

async fn alive(client: &PgClient) {
    assert_eq!(
        rows(client, "SELECT 41 + 1").await.unwrap(),
        vec![vec!["42"]]
    );
}

/// Hole 1: object names are never paths. A table named after a directory
/// neither empties it on CREATE nor removes it on DROP; such names are
/// refused (42602) and logs live under catalog ids, across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_names_never_become_paths() {
    let victim = common::unique_temp_dir();
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious.txt"), b"keep me").unwrap();
    let data_dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut server = Server::start_in(&data_dir).await;
    let c = server.client().await;
    let path = victim.display().to_string();
    for sql in [
        format!("CREATE TABLE \"{path}\" (a INT)"),
        format!("DROP TABLE \"{path}\""),
        "CREATE TABLE \"../checkpoints\" (a INT)".to_string(),
        "CREATE SOURCE \"..\" (a INT) WITH (connector = 'datagen')".to_string(),
        "CREATE MATERIALIZED VIEW \"a/b\" AS SELECT 1 AS x".to_string(),
        "CREATE TABLE \"tab\there\" (a INT)".to_string(),
        "CREATE TABLE \"line\nbreak\" (a INT)".to_string(),
        "DROP TABLE IF EXISTS \"../tables\"".to_string(),
    ] {
        let (code, msg) = error(&c, &sql).await;
        assert_eq!(code, "42602", "{sql}: {msg}");
        assert!(msg.starts_with("invalid object name"), "{msg}");
    }
    assert_eq!(
        std::fs::read(victim.join("precious.txt")).unwrap(),
        b"keep me"
    );
    let checkpoints = data_dir.join("checkpoints");
    assert!(!checkpoints.exists() || checkpoints.is_dir());
    // Ordinary tables log under their catalog id, and replay from there.
    exec(
        &c,
        "CREATE TABLE \"Events\" (v INT); INSERT INTO \"Events\" VALUES (1), (2);
         CREATE TABLE gone (v INT); INSERT INTO gone VALUES (7); DROP TABLE gone;",
    )
    .await;
    // Quoted names keep their case, in queries and in views.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW \"Totals\" AS SELECT sum(v) AS s FROM \"Events\"",
    )
    .await;
    eventually(&c, "SELECT s FROM \"Totals\"", &[&["3"]]).await;
    eventually(&c, "SELECT sum(v) FROM \"Events\"", &[&["3"]]).await;
    let mut dirs: Vec<String> = std::fs::read_dir(data_dir.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 1, "only the live table has a log: {dirs:?}");
    assert!(
        dirs[0].chars().all(|ch| ch.is_ascii_digit()),
        "log directories are named by id: {dirs:?}"
    );
    drop(c);
    server.kill();
    let server = Server::start_in(&data_dir).await;
    let c = server.client().await;
    eventually(&c, "SELECT sum(v) FROM \"Events\"", &[&["3"]]).await;
    eventually(&c, "SELECT s FROM \"Totals\"", &[&["3"]]).await;
    std::fs::remove_dir_all(&victim).unwrap();
}

/// Hole 2: no statement can overflow the stack. Long chains and deep
/// nesting are refused with 54001 and a position; the server lives on, and
/// expressions of ordinary size work in queries and views alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_complex_statements_are_refused_and_the_server_lives() {
    let server = Server::start().await;
    let c = server.client().await;
    let ones = |n: usize| vec!["1"; n].join("+");
    let ors: Vec<String> = (0..5_000).map(|i| format!("x = {i}")).collect();
    for sql in [
        format!("SELECT {}", ones(50_000)),
        format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("SELECT 1 FROM (SELECT 1 AS x) s WHERE {}", ors.join(" OR ")),
        format!(
            "CREATE MATERIALIZED VIEW deep AS SELECT {} AS v",
            ones(20_000)
        ),
    ] {
        let (code, msg) = error(&c, &sql).await;
        assert_eq!(code, "54001", "{}: {msg}", short(&sql));
        assert!(msg.starts_with("statement too complex"), "{msg}");
        alive(&c).await;
    }
    // 900 terms is fine, in a query and in a view, and both agree.
    assert_eq!(
        rows(&c, &format!("SELECT {}", ones(900))).await.unwrap(),
        vec![vec!["900"]]
    );
    let vs = vec!["v"; 900].join(" + ");
    exec(
        &c,
        &format!(
            "CREATE TABLE t (v BIGINT);
             CREATE MATERIALIZED VIEW wide AS SELECT {vs} AS s FROM t;
             INSERT INTO t VALUES (2);"
        ),
    )
    .await;
    eventually(&c, "SELECT s FROM wide", &[&["1800"]]).await;
    assert_eq!(
        rows(&c, &format!("SELECT {vs} FROM t")).await.unwrap(),
        vec![vec!["1800"]]
    );
}

/// Hole 3: a window that would put one row in billions of windows is refused
/// at CREATE (22023, saying the ratio and the limit), for HOP and CUMULATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_per_row_are_bounded() {
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE t (v INT, ts TIMESTAMP NOT NULL,
                         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)",
    )
    .await;
    for (sql, windows) in [
        (
            "CREATE MATERIALIZED VIEW h AS SELECT window_start, count(*) AS n
             FROM HOP(t, ts, INTERVAL '1' MILLISECOND, INTERVAL '100' DAY) GROUP BY window_start",
            "8640000000 windows",
        ),
        (
            "CREATE MATERIALIZED VIEW cu AS SELECT window_end, count(*) AS n
             FROM CUMULATE(t, ts, INTERVAL '1' SECOND, INTERVAL '1' DAY) GROUP BY window_end",
            "86400 windows",
        ),
    ] {
        let (code, msg) = error(&c, sql).await;
        assert_eq!(code, "22023", "{msg}");
        assert!(msg.contains(windows), "{msg}");
        assert!(msg.contains("at most 10000"), "{msg}");
    }
    // At the limit it works: a day in 10-second slides.
    exec(
        &c,
        "CREATE MATERIALIZED VIEW ok AS SELECT window_start, count(*) AS n
         FROM HOP(t, ts, INTERVAL '10' SECOND, INTERVAL '1' DAY) GROUP BY window_start;
         INSERT INTO t VALUES (1, '2026-01-01 00:00:05');",
    )
    .await;
    eventually(&c, "SELECT count(*), sum(n) FROM ok", &[&["8640", "8640"]]).await;
}

/// Hole 4: a value whose event time the watermark cannot carry is refused
/// before it is logged (22008), so a restart replays every acknowledged row;
/// in a file source the same record goes to the dead letters and the source
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_event_times_lose_nothing() {
    let data_dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut server = Server::start_in(&data_dir).await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE t (v INT, ts TIMESTAMP NOT NULL,
                         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
         CREATE MATERIALIZED VIEW n AS SELECT count(*) AS rows, sum(v) AS total FROM t;
         INSERT INTO t VALUES (1, '2026-01-01 00:00:01');",
    )
    .await;
    // 1677-09-21 00:12:44 is a valid timestamp, but the watermark (ts - 1 s)
    // falls below the range of nanosecond timestamps.
    for sql in [
        "INSERT INTO t VALUES (100, '1677-09-21 00:12:44')",
        "INSERT INTO t VALUES (100, '2026-01-01 00:00:02'), (200, '1677-09-21 00:12:43.5')",
        "INSERT INTO t SELECT 100, ts FROM (VALUES (TIMESTAMP '1677-09-21 00:12:44')) AS x(ts)",
    ] {
        let (code, msg) = error(&c, sql).await;
        assert_eq!(code, "22008", "{sql}: {msg}");
        assert!(msg.contains("event time ts ="), "{msg}");
        alive(&c).await;
    }
    exec(&c, "INSERT INTO t VALUES (2, '2026-01-01 00:00:03')").await;
    eventually(&c, "SELECT rows, total FROM n", &[&["2", "3"]]).await;
    // Restart without a clean shutdown: both acknowledged rows come back.
    drop(c);
    server.kill();
    let server = Server::start_in(&data_dir).await;
    let c = server.client().await;
    eventually(&c, "SELECT rows, total FROM n", &[&["2", "3"]]).await;
    eventually(
        &c,
        "SELECT rows_rejected, last_error IS NULL FROM eddy.sources WHERE name = 't'",
        &[&["0", "t"]],
    )
    .await;
    // A file source: the far-past record is a dead letter, the rest is read.
    let file = data_dir.with_file_name("events.jsonl");
    std::fs::write(
        &file,
        "{\"v\": 1, \"ts\": \"2026-01-01T00:00:01\"}\n\
         {\"v\": 2, \"ts\": \"1677-09-21T00:12:44\"}\n\
         {\"v\": 3, \"ts\": \"2026-01-01T00:00:02\"}\n",
    )
    .unwrap();
    exec(
        &c,
        &format!(
            "CREATE SOURCE f (v INT, ts TIMESTAMP NOT NULL,
                              WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW fn AS SELECT count(*) AS rows, sum(v) AS total FROM f;",
            file.display()
        ),
    )
    .await;
    eventually(&c, "SELECT rows, total FROM fn", &[&["2", "4"]]).await;
    let letters = rows(&c, "SELECT source, error FROM eddy.dead_letters")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0][0], "f");
    assert!(letters[0][1].contains("event time ts"), "{letters:?}");
    eventually(
        &c,
        // Read to its end, not stopped at the bad record.
        "SELECT status, rows_rejected FROM eddy.sources WHERE name = 'f'",
        &[&["finished", "1"]],
    )
    .await;
}

/// Hole 6: ad-hoc queries are bounded. A query that needs more memory than
/// `--query-memory-mb` fails with 53200, `statement_timeout` (57014) and a
/// client's cancel request (57014) stop a long query, and `INSERT … SELECT`
/// of more rows than the memory budget streams in chunks. The server and its
/// views stay up through all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_queries_are_bounded() {
    let server = Server::start_with_args(&["--query-memory-mb", "16"]).await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE t (v BIGINT); CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c FROM t;",
    )
    .await;
    let (code, msg) = error(
        &c,
        "SELECT count(*) FROM generate_series(1, 4000000) a
         JOIN generate_series(1, 4000000) b ON a.value = b.value",
    )
    .await;
    assert_eq!(code, "53200", "{msg}");
    assert!(msg.starts_with("out of memory for queries"), "{msg}");
    alive(&c).await;

    // statement_timeout.
    exec(&c, "SET statement_timeout = '300ms'").await;
    let started = Instant::now();
    let (code, msg) = error(&c, "SELECT count(*) FROM generate_series(1, 5000000000)").await;
    assert_eq!(code, "57014", "{msg}");
    assert!(msg.contains("statement timeout"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    exec(&c, "SET statement_timeout = 0").await;
    alive(&c).await;

    // A cancel request from another connection, as psql's Ctrl-C sends it.
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel request");
    });
    let started = Instant::now();
    let (code, msg) = error(&c, "SELECT count(*) FROM generate_series(1, 5000000000)").await;
    canceller.await.unwrap();
    assert_eq!(code, "57014", "{msg}");
    assert!(msg.contains("user request"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(15));
    alive(&c).await;

    // 3 M rows of 8 bytes are 24 MB, more than the 16 MiB budget: they go in chunks.
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        c.simple_query("INSERT INTO t SELECT value FROM generate_series(1, 3000000)"),
    )
    .await
    .expect("INSERT … SELECT hung")
    .unwrap_or_else(|e| panic!("INSERT … SELECT: {}", common::error_text(&e)));
    let tag = r.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(3_000_000));
    eventually(&c, "SELECT c FROM n", &[&["3000000"]]).await;
}

/// Hole 8: table logs are compacted and checksummed. Once every kept
/// checkpoint covers a table's older segments (and `SELECT` keeps fewer
/// rows), they are removed; a restart still restores the right counts. A
/// frame whose checksum fails is skipped and reported, not replayed as
/// garbage, and the rows around it are replayed.
/// Functions whose output is far larger than their input are refused with 54000 before they
/// allocate, in a query and in a view; `array_repeat(x, 2147483647)` used to run the server
/// out of memory (found by tests/postgres_differential.rs). Calls of ordinary size still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_that_would_build_too_much_are_refused() {
    let server = Server::start().await;
    let c = server.client().await;
    for sql in [
        "SELECT array_repeat(1.5, 2147483647)",
        "SELECT list_repeat('x', 2147483647)",
        "SELECT repeat('abc', 200000000)",
        "SELECT lpad('x', 2000000000)",
        "SELECT rpad('x', 2000000000, 'yz')",
        "SELECT array_resize([1, 2], 2000000000, 0)",
        "SELECT range(1, 10000000000)",
        "SELECT generate_series(DATE '2000-01-01', DATE '3000-01-01', INTERVAL '1 second')",
    ] {
        let (code, msg) = error(&c, sql).await;
        assert_eq!(code, "54000", "{sql}: {msg}");
        assert!(msg.contains("would build about"), "{sql}: {msg}");
        alive(&c).await;
    }
    assert_eq!(
        rows(
            &c,
            "SELECT repeat('ab', 3), lpad('7', 3, '0'), cardinality(array_repeat(1, 1000)), \
             cardinality(range(0, 100000))"
        )
        .await
        .unwrap(),
        vec![vec!["ababab", "007", "1000", "100000"]]
    );
    // A negative length is an empty string, as in PostgreSQL (DataFusion's lpad panicked).
    assert_eq!(
        rows(&c, "SELECT lpad('x', -9000000000), rpad('x', -1, 'y')")
            .await
            .unwrap(),
        vec![vec!["", ""]]
    );
    // In a view the failing row fails the view, not the server.
    exec(
        &c,
        "CREATE TABLE reps (n BIGINT); INSERT INTO reps VALUES (2), (3000000000);
         CREATE MATERIALIZED VIEW big AS SELECT n, array_repeat(n, n) AS a FROM reps",
    )
    .await;
    view_fails_with(&c, "big", "would build about").await;
    alive(&c).await;
}

/// Waits until view `name` has failed with an error containing `needle`.
async fn view_fails_with(c: &PgClient, name: &str, needle: &str) {
    let start = Instant::now();
    loop {
        let status = rows(
            c,
            &format!("SELECT status, last_error FROM eddy.views WHERE name = '{name}'"),
        )
        .await
        .unwrap();
        if status[0][0] == "failed" {
            assert!(status[0][1].contains(needle), "{status:?}");
            return;
        }
        assert!(start.elapsed() < STEP, "{name} did not fail: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Integer `+`, `-`, `*` that overflow raise 22003 as in PostgreSQL (DataFusion wrapped around:
/// `2147483647 + 2147483647` was `-2`), in a query and in a view; the column keeps its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_overflow_is_an_error_not_a_wrapped_value() {
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE nums (i INT, b BIGINT); INSERT INTO nums VALUES (2147483647, 9223372036854775807)",
    )
    .await;
    for (sql, kind) in [
        ("SELECT i + i FROM nums", "integer"),
        ("SELECT i * 2::INT FROM nums", "integer"),
        ("SELECT b - (-1)::BIGINT FROM nums", "bigint"),
        ("SELECT sum(b * b) FROM nums", "bigint"),
        // Sums of squares overflow as in PostgreSQL (was Infinity in a view, NaN in a query).
        (
            "SELECT var_samp(x) FROM (VALUES (1.5), (-0.25), (1e300)) AS t(x)",
            "value",
        ),
        // A chain is one call: the step that overflows fails it.
        ("SELECT i - 1::INT + i FROM nums", "integer"),
    ] {
        let (code, msg) = error(&c, sql).await;
        assert_eq!(code, "22003", "{sql}: {msg}");
        assert!(
            msg.contains(&format!("{kind} out of range")),
            "{sql}: {msg}"
        );
    }
    let c2 = server.client().await;
    let named = c2
        .query("SELECT i + 1 - 1, b - b, i - 7 - 3 + 2 * 3 FROM nums", &[])
        .await
        .unwrap();
    // Named as PostgreSQL names an expression (the rewrite into checked_sub changes nothing).
    assert_eq!(named[0].columns()[1].name(), "?column?");
    assert_eq!(named[0].get::<_, i64>(0), 2147483647);
    assert_eq!(named[0].get::<_, i64>(1), 0);
    assert_eq!(named[0].get::<_, i64>(2), 2147483643);
    exec(
        &c,
        "CREATE MATERIALIZED VIEW doubled AS SELECT i, i + i AS twice FROM nums",
    )
    .await;
    view_fails_with(&c, "doubled", "integer out of range").await;
    alive(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_logs_are_compacted_and_checked() {
    let data_dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let args = [
        "--checkpoint-interval",
        "0",
        "--table-retain-rows",
        "2",
        "--table-log-keep-bytes",
        "0",
    ];
    let segments = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let table_dir = |name_id: &str| data_dir.join("tables").join(name_id);
    let mut ids = Vec::new();
    for run in 0..2 {
        let mut server = Server::start_in_with(&data_dir, &args).await;
        let c = server.client().await;
        if run == 0 {
            exec(
                &c,
                "CREATE TABLE t (v BIGINT); CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c, sum(v) AS s FROM t;",
            )
            .await;
            ids = segments(&data_dir.join("tables"));
        }
        for i in 0..3 {
            exec(&c, &format!("INSERT INTO t VALUES ({})", run * 3 + i + 1)).await;
        }
        for _ in 0..3 {
            exec(&c, "CHECKPOINT").await;
        }
        drop(c);
        server.kill();
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Run 1's segment (rows 0..3) is covered by every kept checkpoint and
    // beyond the 2 rows SELECT keeps: gone. Run 2's (rows 3..6) is open.
    assert_eq!(
        segments(&table_dir(&ids[0])),
        vec![format!("{:020}.wal", 3)]
    );
    let mut server = Server::start_in_with(&data_dir, &args).await;
    let c = server.client().await;
    eventually(&c, "SELECT c, s FROM n", &[&["6", "21"]]).await;
    eventually(&c, "SELECT count(*), sum(v) FROM t", &[&["2", "11"]]).await;
    // A second table, no checkpoint since: replayed whole on restart.
    exec(
        &c,
        "CREATE TABLE u (v BIGINT); CREATE MATERIALIZED VIEW un AS SELECT count(*) AS c, sum(v) AS s FROM u;
         INSERT INTO u VALUES (1); INSERT INTO u VALUES (20); INSERT INTO u VALUES (300);",
    )
    .await;
    eventually(&c, "SELECT c, s FROM un", &[&["3", "321"]]).await;
    drop(c);
    server.kill();
    let u_dir = segments(&data_dir.join("tables"))
        .into_iter()
        .find(|d| d != &ids[0])
        .unwrap();
    let seg = table_dir(&u_dir).join(format!("{:020}.wal", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let frame = bytes.len() / 3;
    bytes[frame + frame / 2] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    let server = Server::start_in_with(&data_dir, &args).await;
    let c = server.client().await;
    eventually(&c, "SELECT c, s FROM un", &[&["2", "301"]]).await;
    let r = rows(
        &c,
        "SELECT rows_rejected, last_error FROM eddy.sources WHERE name = 'u'",
    )
    .await
    .unwrap();
    assert_eq!(r[0][0], "1", "{r:?}");
    assert!(r[0][1].contains("corrupt"), "{r:?}");
    eventually(&c, "SELECT c, s FROM n", &[&["6", "21"]]).await;
}

/// Hole 8: dead letters survive a restart. They are kept with each
/// checkpoint, next to the positions of the sources that rejected them: a
/// restarted source resumes after those records, so each dead letter is
/// there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_survive_a_restart() {
    let data_dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let file = data_dir.with_file_name("events.jsonl");
    std::fs::write(
        &file,
        "{\"v\": 1}\n{\"v\": \"one\"}\n{\"v\": 3}\nnot json\n",
    )
    .unwrap();
    let args = ["--checkpoint-interval", "0"];
    let mut server = Server::start_in_with(&data_dir, &args).await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE f (v INT) WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c FROM f;",
            file.display()
        ),
    )
    .await;
    eventually(&c, "SELECT c FROM n", &[&["2"]]).await;
    let query = "SELECT id, source, \"offset\", payload FROM eddy.dead_letters ORDER BY id";
    let before = rows(&c, query).await.unwrap();
    assert_eq!(before.len(), 2, "{before:?}");
    exec(&c, "CHECKPOINT").await;
    drop(c);
    server.kill();
    let server = Server::start_in_with(&data_dir, &args).await;
    let c = server.client().await;
    eventually(&c, "SELECT c FROM n", &[&["2"]]).await;
    assert_eq!(rows(&c, query).await.unwrap(), before);
}

/// Hole 7: a corrupt newest checkpoint is not skipped silently. The restart
/// recovers from the previous one (policy: stay available), shows the
/// skipped epoch as `corrupt` in `eddy.checkpoints` with the reason, and the
/// views are still right (the table logs replay what the older checkpoint
/// does not cover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_reported() {
    let data_dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let args = ["--checkpoint-interval", "0"];
    let mut server = Server::start_in_with(&data_dir, &args).await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE t (v BIGINT); CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c, sum(v) AS s FROM t;
         INSERT INTO t VALUES (1); CHECKPOINT; INSERT INTO t VALUES (10); CHECKPOINT;",
    )
    .await;
    eventually(&c, "SELECT c, s FROM n", &[&["2", "11"]]).await;
    drop(c);
    server.kill();
    let checkpoints = data_dir.join("checkpoints");
    let mut epochs: Vec<_> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    epochs.sort();
    let newest = epochs.last().unwrap().clone();
    let manifest = newest.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"epoch\"", "\"epoch_\"")).unwrap();
    let server = Server::start_in_with(&data_dir, &args).await;
    let c = server.client().await;
    eventually(&c, "SELECT c, s FROM n", &[&["2", "11"]]).await;
    let r = rows(
        &c,
        "SELECT epoch, status, trigger, error FROM eddy.checkpoints WHERE status = 'corrupt'",
    )
    .await
    .unwrap();
    assert_eq!(r.len(), 1, "{r:?}");
    let epoch: u64 = newest
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(r[0][0], epoch.to_string());
    assert_eq!(r[0][2], "recovery");
    assert!(
        r[0][3].contains(&format!("recovered from checkpoint {}", epoch - 1)),
        "{r:?}"
    );
}
