//! Users and secrets made in SQL (issue 14): `CREATE USER … PASSWORD` logs
//! in with SCRAM-SHA-256 from tokio-postgres and psql, with its role, across
//! a restart; `CREATE SECRET` feeds connector options and its value never
//! appears in `SHOW CREATE`, system tables, the data dir's files in clear,
//! or the server log.

mod common;

use std::path::Path;

use common::{connect_as, error_text, eventually, psql_as, rows, Server};

fn sqlstate(e: &str) -> &str {
    e.split_whitespace().next().unwrap_or("")
}

async fn refused(c: &common::PgClient, sql: &str) -> String {
    match c.batch_execute(sql).await {
        Ok(()) => panic!("{sql}: accepted"),
        Err(e) => error_text(&e),
    }
}

/// Rows as `a|b|c` lines.
fn lines(rows: Vec<Vec<String>>) -> Vec<String> {
    rows.into_iter().map(|r| r.join("|")).collect()
}

/// Every file under `dir`, read as (lossy) text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

const ADMIN: &[&str] = &["--password", "admin-secret"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_made_in_sql_log_in_with_their_role_across_a_restart() {
    let dir = common::unique_temp_dir();
    let mut server = Server::start_in_with(&dir, ADMIN).await;
    let admin = connect_as(server.port, "eddy", "admin-secret")
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE USER Alice WITH PASSWORD 'alice-pw-1';
             CREATE USER ops WITH SUPERUSER PASSWORD 'ops-pw-1';
             CREATE USER IF NOT EXISTS alice WITH PASSWORD 'ignored';",
        )
        .await
        .unwrap_or_else(|e| panic!("{}", error_text(&e)));
    for (sql, code) in [
        ("CREATE USER alice WITH PASSWORD 'x'", "42710"),
        ("CREATE USER eddy WITH PASSWORD 'x'", "42710"),
        ("DROP USER eddy", "0A000"),
        ("DROP USER nobody", "42704"),
        ("CREATE USER bob", "22023"),
    ] {
        let e = refused(&admin, sql).await;
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
    // alice may read, not write; ops may do anything.
    let alice = connect_as(server.port, "alice", "alice-pw-1")
        .await
        .unwrap();
    eventually(&alice, "SELECT 1", &[&["1"]]).await;
    for sql in [
        "CREATE TABLE t (v INT)",
        "CREATE USER mallory WITH SUPERUSER PASSWORD 'x'",
        "ALTER USER alice SUPERUSER",
        "CREATE SECRET s AS 'x'",
    ] {
        let e = refused(&alice, sql).await;
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
    let ops = connect_as(server.port, "ops", "ops-pw-1").await.unwrap();
    ops.batch_execute("CREATE TABLE t (v INT); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // libpq speaks SCRAM with eddy's verifier-only exchange too.
    let conn = format!("host=127.0.0.1 port={} user=alice dbname=eddy", server.port);
    let (ok, out, err) = psql_as(&conn, "SELECT count(*) FROM t", Some("alice-pw-1"));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");
    let (ok, _, err) = psql_as(&conn, "SELECT 1", Some("alice-pw-2"));
    assert!(
        !ok && err.contains("authentication failed for user \"alice\""),
        "{err}"
    );
    assert_eq!(
        lines(
            rows(
                &alice,
                "SELECT name, role, defined_by FROM eddy.users ORDER BY name"
            )
            .await
            .unwrap()
        ),
        [
            "alice|reader|create user",
            "eddy|admin|flag",
            "ops|admin|create user"
        ]
    );
    // A new password replaces the old one.
    admin
        .batch_execute("ALTER USER alice WITH PASSWORD 'alice-pw-2'")
        .await
        .unwrap();
    let e = connect_as(server.port, "alice", "alice-pw-1")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01", "{e}");
    // Nothing on disk or in the log holds a password in clear.
    let files = all_text(&dir);
    let log = server.log_tail();
    for pw in ["alice-pw-1", "alice-pw-2", "ops-pw-1", "admin-secret"] {
        assert!(!files.contains(pw), "{pw} is in the data dir");
        assert!(!log.contains(pw), "{pw} is in the log");
    }
    assert!(
        files.contains("SCRAM-SHA-256$4096:"),
        "verifiers are stored"
    );
    // After a SIGKILL and a restart: the same users, roles and passwords.
    server.kill();
    let server = Server::start_in_with(&dir, ADMIN).await;
    let alice = connect_as(server.port, "alice", "alice-pw-2")
        .await
        .unwrap();
    let e = refused(&alice, "INSERT INTO t VALUES (2)").await;
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let ops = connect_as(server.port, "ops", "ops-pw-1").await.unwrap();
    ops.batch_execute("DROP USER alice; INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let e = connect_as(server.port, "alice", "alice-pw-2")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01", "{e}");
    // A stored admin is enough for a password server without flags.
    drop(server);
    let server = Server::start_in_with(&dir, &["--auth", "password"]).await;
    assert!(server.connect().await.is_err(), "no password: refused");
    let ops = connect_as(server.port, "ops", "ops-pw-1").await.unwrap();
    eventually(&ops, "SELECT count(*) FROM t", &[&["2"]]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_feed_connectors_and_are_never_shown() {
    let dir = common::unique_temp_dir();
    let mut server = Server::start_in_with(&dir, ADMIN).await;
    let c = connect_as(server.port, "eddy", "admin-secret")
        .await
        .unwrap();
    // The file connector reads under <data-dir>/files; its path comes from a secret.
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("events-s3cr3t-name.jsonl"),
        "{\"v\": 1}\n{\"v\": 2}\n{\"v\": 3}\n",
    )
    .unwrap();
    // A credential written inline is refused: it would land in the catalog.
    let e = refused(
        &c,
        "CREATE SOURCE k (v INT) WITH (connector = 'kafka', topic = 't', \
         'properties.bootstrap.servers' = 'localhost:1', 'properties.sasl.password' = 'pw')",
    )
    .await;
    assert_eq!(sqlstate(&e), "22023", "{e}");
    assert!(e.contains("must come from a secret"), "{e}");
    let e = refused(
        &c,
        "CREATE SOURCE s (v INT) WITH (connector = 'file', format = 'json', path = SECRET nope)",
    )
    .await;
    assert_eq!(sqlstate(&e), "42704", "{e}");
    c.batch_execute(
        "CREATE SECRET file_path AS 'events-s3cr3t-name.jsonl';
         CREATE SOURCE s (v INT) WITH (connector = 'file', format = 'json', path = SECRET file_path);
         CREATE MATERIALIZED VIEW total AS SELECT sum(v) AS total FROM s;",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", error_text(&e)));
    eventually(&c, "SELECT total FROM total", &[&["6"]]).await;
    let shown = rows(&c, "SHOW CREATE SOURCE s").await.unwrap();
    let shown = format!("{shown:?}");
    assert!(shown.contains("SECRET file_path"), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert_eq!(
        lines(
            rows(&c, "SELECT name, used_by FROM eddy.secrets")
                .await
                .unwrap()
        ),
        ["file_path|s"]
    );
    let e = refused(&c, "DROP SECRET file_path").await;
    assert_eq!(sqlstate(&e), "2BP01", "{e}");
    let e = refused(&c, "CREATE SECRET file_path AS 'again'").await;
    assert_eq!(sqlstate(&e), "42710", "{e}");
    // Nothing else shows the value: system tables, files in clear, the log.
    for table in ["eddy.sources", "eddy.views", "eddy.users", "eddy.secrets"] {
        let all = format!("{:?}", rows(&c, &format!("SELECT * FROM {table}")).await);
        assert!(!all.contains("s3cr3t"), "{table}: {all}");
    }
    let data: String = ["catalog.json", "credentials.json"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect();
    assert!(
        data.contains("file_path") && !data.contains("s3cr3t"),
        "{data}"
    );
    // After a SIGKILL and a restart the source reads from the same secret.
    server.kill();
    let server = Server::start_in_with(&dir, ADMIN).await;
    let c = connect_as(server.port, "eddy", "admin-secret")
        .await
        .unwrap();
    eventually(&c, "SELECT total FROM total", &[&["6"]]).await;
    assert!(!server.log_tail().contains("s3cr3t"));
    // Dropping the source frees the secret.
    c.batch_execute("DROP SOURCE s CASCADE; DROP SECRET file_path")
        .await
        .unwrap();
    assert!(rows(&c, "SELECT name FROM eddy.secrets")
        .await
        .unwrap()
        .is_empty());
}
