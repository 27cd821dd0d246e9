//! Client compatibility over the real Postgres wire protocol:
//!
//! - the real `psql` binary (Debian `postgresql-client`): a session of DDL, INSERT and SELECT, and
//!   the catalog meta-commands `\d`, `\d NAME`, `\dt`, `\dm`, `\dv`, which query `pg_catalog`;
//! - the extended query protocol through tokio-postgres: parameters, prepared statement reuse,
//!   result column types, binary results;
//! - startup from environment variables, and graceful shutdown on SIGTERM.
//!
//! Every wait is bounded: psql runs are killed after [`PSQL_TIMEOUT`], and results that depend on
//! the streaming engine catching up are polled for at most [`EVENTUAL_TIMEOUT`].

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Config, Server};
use tokio_postgres::types::Type;

/// Limit for one psql invocation.
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for a streaming result to appear after the INSERT that causes it.
const EVENTUAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between polls of an eventually consistent result.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a server may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// 2026-01-01 00:00:00 UTC in seconds since the Unix epoch.
const T0_SECS: u64 = 1_767_225_600;

const CREATE_BIDS: &str = "CREATE TABLE bids (auction BIGINT NOT NULL, bidder BIGINT, \
    price BIGINT, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)";
const CREATE_BID_STATS: &str = "CREATE MATERIALIZED VIEW bid_stats AS \
    SELECT window_start, window_end, auction, count(*) AS n, max(price) AS top \
    FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, auction";
/// Rows in [00:00:00, 00:00:10): auction 1 has (2 rows, max 150), auction 2 has (1 row, max 90).
const INSERT_BIDS: &str = "INSERT INTO bids VALUES \
    (1, 10, 100, TIMESTAMP '2026-01-01 00:00:01'), \
    (1, 11, 150, TIMESTAMP '2026-01-01 00:00:03'), \
    (2, 12, 90, TIMESTAMP '2026-01-01 00:00:05')";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p PORT -U eddy eddy` with `extra` arguments
/// (e.g. `-c SQL`), with no stdin and no PG* environment leaking in from the caller.
fn psql(port: u16, extra: &[&str]) -> Output {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", "eddy", "eddy"])
        .args(extra);
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGAPPNAME",
        "PSQLRC",
        "PAGER",
        "PSQL_PAGER",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", "5");
    common::run_bounded(cmd, PSQL_TIMEOUT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs psql and panics (with its output and the server log) unless it exits 0.
fn psql_ok(server: &Server, extra: &[&str]) -> String {
    let out = psql(server.port, extra);
    assert!(
        out.status.success(),
        "psql {extra:?} failed with {}\nstdout:\n{}\nstderr:\n{}\n--- server log (tail) ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
        server.log_tail()
    );
    text(&out.stdout)
}

/// Re-runs a tuples-only, unaligned psql query until its output equals `expected`, or panics after
/// [`EVENTUAL_TIMEOUT`] showing the last output.
fn psql_eventually(server: &Server, sql: &str, expected: &str) {
    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    loop {
        let out = psql(server.port, &["-A", "-t", "-c", sql]);
        let stdout = text(&out.stdout);
        if out.status.success() && stdout == expected {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "psql -c {sql:?} did not return {expected:?} within {EVENTUAL_TIMEOUT:?}; \
                 last exit {}, stdout {stdout:?}, stderr {:?}\n--- server log (tail) ---\n{}",
                out.status,
                text(&out.stderr),
                server.log_tail()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn assert_contains(haystack: &str, needles: &[&str], what: &str) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "{what}: expected {needle:?} in output:\n{haystack}"
        );
    }
}

#[test]
fn psql_session_and_meta_commands() {
    let rt = runtime();
    let server = rt.block_on(Server::start());

    let out = psql_ok(
        &server,
        &["-c", CREATE_BIDS, "-c", CREATE_BID_STATS, "-c", INSERT_BIDS],
    );
    assert_contains(&out, &["INSERT 0 3"], "command tags");

    psql_eventually(
        &server,
        "SELECT auction, n, top FROM bid_stats ORDER BY auction",
        "1|2|150\n2|1|90\n",
    );

    // \d lists tables and materialized views.
    let out = psql_ok(&server, &["-c", "\\d"]);
    assert_contains(&out, &["bids", "bid_stats"], "\\d");

    let out = psql_ok(&server, &["-c", "\\dt"]);
    assert_contains(&out, &["bids", "table"], "\\dt");
    assert!(!out.contains("bid_stats"), "\\dt lists a view:\n{out}");

    let out = psql_ok(&server, &["-c", "\\dm"]);
    assert_contains(&out, &["bid_stats", "materialized view"], "\\dm");
    assert!(!out.contains("bids |"), "\\dm lists a table:\n{out}");

    // \dv lists plain views; there are none, and it must not list the table.
    let out = psql_ok(&server, &["-c", "\\dv"]);
    assert!(!out.contains("bids"), "\\dv lists a table:\n{out}");

    let out = psql_ok(&server, &["-c", "\\d bids"]);
    assert_contains(
        &out,
        &[
            "bids",
            "auction",
            "bidder",
            "price",
            "ts",
            "bigint",
            "timestamp",
            "not null",
        ],
        "\\d bids",
    );

    let out = psql_ok(&server, &["-c", "\\d bid_stats"]);
    assert_contains(
        &out,
        &[
            "bid_stats",
            "window_start",
            "window_end",
            "auction",
            "top",
            "bigint",
            "timestamp",
        ],
        "\\d bid_stats",
    );

    // Timestamps in Postgres text format, as psql shows them (checked last: a format difference
    // should not hide the catalog checks above).
    psql_eventually(
        &server,
        "SELECT window_start, window_end FROM bid_stats WHERE auction = 2",
        "2026-01-01 00:00:00|2026-01-01 00:00:10\n",
    );
}

#[test]
fn psql_stops_on_error_with_nonzero_exit() {
    let rt = runtime();
    let server = rt.block_on(Server::start());

    let out = psql(
        server.port,
        &["-c", "SELECT * FROM no_such_view", "-c", CREATE_BIDS],
    );
    assert!(
        !out.status.success(),
        "psql exited 0 on an error; stdout:\n{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert_contains(&stderr, &["ERROR", "no_such_view"], "psql stderr");

    // ON_ERROR_STOP: the CREATE TABLE after the failing statement did not run.
    let out = psql(server.port, &["-c", "SELECT * FROM bids"]);
    assert!(
        !out.status.success(),
        "bids exists, so psql went on after the error"
    );
}

/// eddy has no transactions: `ROLLBACK` says, as a WARNING psql prints, that
/// it undid nothing (the row stays). `SET datafusion.*` would change every
/// session's settings and is refused (0A000); PostgreSQL settings still work.
#[test]
fn psql_reads_a_postgres_16_server_and_savepoints_pass() {
    let rt = runtime();
    let server = rt.block_on(Server::start());
    // psql sets these from the server_version the server sends at startup.
    let out = psql_ok(
        &server,
        &["-c", "\\echo :SERVER_VERSION_NAME / :SERVER_VERSION_NUM"],
    );
    assert_contains(
        &out,
        &[&format!(
            "16.6 (eddy {}) / 160006",
            env!("CARGO_PKG_VERSION")
        )],
        "psql's server version",
    );
    let out = psql(
        server.port,
        &[
            "-c",
            "BEGIN",
            "-c",
            "SAVEPOINT s",
            "-c",
            "ROLLBACK TO SAVEPOINT s",
            "-c",
            "RELEASE SAVEPOINT s",
            "-c",
            "COMMIT",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_contains(
        &text(&out.stdout),
        &["SAVEPOINT", "ROLLBACK", "RELEASE", "COMMIT"],
        "command tags",
    );
    assert_contains(
        &text(&out.stderr),
        &["WARNING:  ROLLBACK TO SAVEPOINT undid nothing"],
        "psql stderr",
    );
}

#[test]
fn rollback_warns_and_shared_settings_are_refused() {
    let rt = runtime();
    let server = rt.block_on(Server::start());
    let out = psql(
        server.port,
        &[
            "-c",
            "CREATE TABLE r (v INT)",
            "-c",
            "BEGIN",
            "-c",
            "INSERT INTO r VALUES (1)",
            "-c",
            "ROLLBACK",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_contains(
        &text(&out.stderr),
        &["WARNING:  ROLLBACK undid nothing"],
        "psql stderr",
    );
    psql_eventually(&server, "SELECT count(*) FROM r", "1\n");
    let out = psql(
        server.port,
        &["-c", "SET datafusion.execution.batch_size = 1"],
    );
    assert!(!out.status.success());
    assert_contains(
        &text(&out.stderr),
        &["SET datafusion.* is not supported", "HINT:"],
        "psql stderr",
    );
    let out = psql_ok(&server, &["-c", "SET statement_timeout = '5s'"]);
    assert_contains(&out, &["SET"], "psql stdout");
}

/// Polls a query until it returns exactly `expected_rows` rows, bounded by [`EVENTUAL_TIMEOUT`].
async fn query_eventually(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    expected_rows: usize,
) -> Vec<tokio_postgres::Row> {
    let deadline = Instant::now() + EVENTUAL_TIMEOUT;
    loop {
        let last = match client.query(stmt, params).await {
            Ok(rows) if rows.len() == expected_rows => return rows,
            Ok(rows) => format!("{} rows", rows.len()),
            Err(e) => common::error_text(&e),
        };
        if Instant::now() >= deadline {
            panic!("expected {expected_rows} rows within {EVENTUAL_TIMEOUT:?}; last: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn at(secs_after_t0: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0_SECS + secs_after_t0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_parameters_and_types() {
    let server = Server::start().await;
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "{CREATE_BIDS}; {CREATE_BID_STATS}; {INSERT_BIDS};"
        ))
        .await
        .map_err(|e| common::error_text(&e))
        .expect("setup through the simple protocol");

    // A parameterised query; the parameter's type is inferred from the comparison.
    let by_auction = client
        .prepare("SELECT auction, price, ts FROM bids WHERE auction = $1 ORDER BY price")
        .await
        .map_err(|e| common::error_text(&e))
        .expect("prepare");
    assert_eq!(by_auction.params(), &[Type::INT8]);
    let rows = query_eventually(&client, &by_auction, &[&1i64], 2).await;
    let got: Vec<(i64, i64, SystemTime)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(1, 100, at(1)), (1, 150, at(3))]);
    // The same prepared statement, reused with another parameter value.
    let rows = client.query(&by_auction, &[&2i64]).await.expect("reuse");
    let got: Vec<(i64, i64, SystemTime)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(2, 90, at(5))]);
    let rows = client.query(&by_auction, &[&99i64]).await.expect("reuse");
    assert!(rows.is_empty(), "no auction 99, got {} rows", rows.len());

    // A view, through a prepared statement, with window bounds as TIMESTAMP.
    let window = client
        .prepare("SELECT window_start, window_end, n, top FROM bid_stats WHERE auction = $1")
        .await
        .expect("prepare on a view");
    let col_types: Vec<Type> = window.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        col_types,
        vec![Type::TIMESTAMP, Type::TIMESTAMP, Type::INT8, Type::INT8]
    );
    let rows = query_eventually(&client, &window, &[&1i64], 1).await;
    let got: (SystemTime, SystemTime, i64, i64) = (
        rows[0].get(0),
        rows[0].get(1),
        rows[0].get(2),
        rows[0].get(3),
    );
    assert_eq!(got, (at(0), at(10), 2, 150));

    // Result column types for BIGINT, TIMESTAMP, DOUBLE and VARCHAR.
    let typed = client
        .prepare(
            "SELECT auction, ts, CAST(price AS DOUBLE) AS p, CAST(bidder AS VARCHAR) AS b \
             FROM bids WHERE auction = $1",
        )
        .await
        .expect("prepare typed");
    let names: Vec<&str> = typed.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["auction", "ts", "p", "b"]);
    let types: Vec<Type> = typed.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(&types[..3], &[Type::INT8, Type::TIMESTAMP, Type::FLOAT8]);
    assert!(
        types[3] == Type::TEXT || types[3] == Type::VARCHAR,
        "VARCHAR column has type {}",
        types[3]
    );
    let rows = client.query(&typed, &[&2i64]).await.expect("typed query");
    assert_eq!(rows.len(), 1);
    let p: f64 = rows[0].get(2);
    let b: String = rows[0].get(3);
    let row: (i64, SystemTime, f64, String) = (rows[0].get(0), rows[0].get(1), p, b);
    assert_eq!(row, (2, at(5), 90.0, "12".to_string()));

    // A text parameter, its type inferred from the comparison.
    let rows = client
        .query(
            "SELECT auction FROM bids WHERE CAST(bidder AS VARCHAR) = $1",
            &[&"12"],
        )
        .await
        .map_err(|e| common::error_text(&e))
        .expect("text parameter");
    let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec![2]);

    // Errors keep their SQLSTATE through the extended protocol.
    let err = client
        .query("SELECT * FROM no_such_view WHERE x = $1", &[&1i64])
        .await
        .expect_err("undefined view");
    assert_eq!(
        err.code().map(|c| c.code()),
        Some("42P01"),
        "{}",
        common::error_text(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_insert_with_parameters() {
    let server = Server::start().await;
    let client = server.client().await;
    client.batch_execute(CREATE_BIDS).await.expect("create");

    let insert = client
        .prepare("INSERT INTO bids VALUES ($1, $2, $3, $4)")
        .await
        .map_err(|e| common::error_text(&e))
        .expect("prepare insert");
    assert_eq!(
        insert.params(),
        &[Type::INT8, Type::INT8, Type::INT8, Type::TIMESTAMP]
    );
    for (auction, price, secs) in [(1i64, 10i64, 1u64), (1, 20, 2), (2, 30, 3)] {
        let n = client
            .execute(&insert, &[&auction, &Some(7i64), &price, &at(secs)])
            .await
            .map_err(|e| common::error_text(&e))
            .expect("insert");
        assert_eq!(n, 1, "rows affected");
    }
    // NULL through a parameter.
    let n = client
        .execute(&insert, &[&3i64, &None::<i64>, &None::<i64>, &at(4)])
        .await
        .map_err(|e| common::error_text(&e))
        .expect("insert NULLs");
    assert_eq!(n, 1);

    let select = client
        .prepare("SELECT auction, bidder, price, ts FROM bids ORDER BY ts")
        .await
        .expect("prepare select");
    let rows = query_eventually(&client, &select, &[], 4).await;
    let got: Vec<(i64, Option<i64>, Option<i64>, SystemTime)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some(7), Some(10), at(1)),
            (1, Some(7), Some(20), at(2)),
            (2, Some(7), Some(30), at(3)),
            (3, None, None, at(4)),
        ]
    );
}

fn assert_prefix(actual: &[&str], expected: &[&str], what: &str) {
    assert!(
        actual.len() >= expected.len() && actual[..expected.len()] == *expected,
        "{what} columns {actual:?} do not start with {expected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_tables_have_documented_columns() {
    let server = Server::start().await;
    let client = server.client().await;
    let sources = client
        .prepare("SELECT * FROM eddy.sources")
        .await
        .map_err(|e| common::error_text(&e))
        .expect("prepare eddy.sources");
    // The documented columns come first, in this order; more may follow.
    let names: Vec<&str> = sources.columns().iter().map(|c| c.name()).collect();
    assert_prefix(
        &names,
        &[
            "name",
            "connector",
            "status",
            "rows_read",
            "rows_rejected",
            "rows_late",
            "watermark",
            "lag",
            "last_error",
        ],
        "eddy.sources",
    );
    let views = client
        .prepare("SELECT * FROM eddy.views")
        .await
        .map_err(|e| common::error_text(&e))
        .expect("prepare eddy.views");
    let names: Vec<&str> = views.columns().iter().map(|c| c.name()).collect();
    assert_prefix(
        &names,
        &[
            "name",
            "emit_mode",
            "rows",
            "state_bytes",
            "watermark",
            "rows_late",
        ],
        "eddy.views",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_from_environment_variables() {
    let server = Server::start_with(Config::Env).await;
    let client = server.client().await;
    let rows = client
        .simple_query("SELECT 1 + 1 AS two")
        .await
        .map_err(|e| common::error_text(&e))
        .expect("query");
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let mut server = Server::start().await;
    let port = server.port;
    // An idle client stays connected while the server is asked to stop. (Shutdown with views
    // running is checked after every .slt file by tests/slt.rs.)
    let client = server.client().await;
    client
        .batch_execute(&format!("{CREATE_BIDS}; {INSERT_BIDS};"))
        .await
        .map_err(|e| common::error_text(&e))
        .expect("setup");

    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate(SHUTDOWN_TIMEOUT));
    let Some(status) = status else {
        panic!(
            "eddy did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n--- server log (tail) ---\n{}",
            server.log_tail()
        );
    };
    assert!(
        status.success(),
        "eddy exited with {status} after SIGTERM\n--- server log (tail) ---\n{}",
        server.log_tail()
    );
    eprintln!("eddy exited 0 {:.1?} after SIGTERM", started.elapsed());

    // Nothing listens any more.
    assert!(
        common::connect(port).await.is_err(),
        "port {port} still accepts connections after shutdown"
    );
    // The idle client's connection was closed rather than left hanging.
    let closed =
        tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1")).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "query on a connection to a stopped server did not fail promptly"
    );
}

/// psql's `\copy` both ways (a client-side file through COPY … STDIN/STDOUT), `\x` expanded
/// output, and PostgreSQL's column names in its headers.
#[test]
fn psql_copy_files_expanded_output_and_column_names() {
    let rt = runtime();
    let server = rt.block_on(Server::start());
    let dir = std::env::temp_dir().join(format!("eddy-psql-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("in.csv");
    std::fs::write(
        &input,
        "auction,price,note\n1,100,\"plain\"\n2,,\"with, comma\"\n3,300,\"two\nlines\"\n",
    )
    .expect("write csv");
    let output = dir.join("out.csv");
    psql_ok(
        &server,
        &[
            "-c",
            "CREATE TABLE c (auction BIGINT, price BIGINT, note TEXT)",
            "-c",
            &format!("\\copy c FROM '{}' CSV HEADER", input.display()),
        ],
    );
    psql_eventually(&server, "SELECT count(*) FROM c", "3\n");
    psql_ok(
        &server,
        &[
            "-c",
            &format!(
                "\\copy (SELECT auction, price, note FROM c ORDER BY auction) TO '{}' CSV HEADER",
                output.display()
            ),
        ],
    );
    let written = std::fs::read_to_string(&output).expect("read copied file");
    assert_eq!(
        written,
        "auction,price,note\n1,100,plain\n2,,\"with, comma\"\n3,300,\"two\nlines\"\n"
    );
    let out = psql_ok(
        &server,
        &[
            "-c",
            "\\x on",
            "-c",
            "SELECT count(*), max(price), 1 + 1, 'x'::text FROM c",
        ],
    );
    assert_contains(
        &out,
        &[
            "-[ RECORD 1 ]-",
            "count    | 3",
            "max      | 300",
            "?column? | 2",
            "text     | x",
        ],
        "expanded output",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
