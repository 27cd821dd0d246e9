//! Who may connect and what they may reach (issue 14): SCRAM-SHA-256
//! passwords with an admin and a read-only role, the refusal to serve a
//! network address without authentication, and TLS with a certificate made
//! at test time. Clients are tokio-postgres and psql (libpq).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{connect_as, psql_as as psql, Server};

fn sqlstate(e: &str) -> &str {
    e.split_whitespace().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_roles() {
    let server = Server::start_with_args(&[
        "--password",
        "admin-secret",
        "--reader-password",
        "reader-secret",
    ])
    .await;
    // No password, a wrong one, an unknown user: all refused alike.
    for (user, password) in [
        ("eddy", "wrong"),
        ("reader", "admin-secret"),
        ("nobody", "x"),
    ] {
        let e = connect_as(server.port, user, password)
            .await
            .err()
            .expect("refused");
        assert_eq!(sqlstate(&e), "28P01", "{user}: {e}");
    }
    assert!(server.connect().await.is_err(), "no password: refused");
    let admin = connect_as(server.port, "eddy", "admin-secret")
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE t (v INT); CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c FROM t;
             INSERT INTO t VALUES (1), (2);",
        )
        .await
        .unwrap();
    let reader = connect_as(server.port, "reader", "reader-secret")
        .await
        .unwrap();
    common::eventually(&reader, "SELECT c FROM n", &[&["2"]]).await;
    common::eventually(&reader, "SELECT count(*) FROM eddy.views", &[&["1"]]).await;
    for sql in [
        "INSERT INTO t VALUES (3)",
        "CREATE TABLE u (v INT)",
        "DROP MATERIALIZED VIEW n",
        "DELETE FROM t WHERE v = 1",
    ] {
        let e = reader.batch_execute(sql).await.unwrap_err();
        let e = common::error_text(&e);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
        assert!(e.contains("may only read"), "{e}");
    }
    common::eventually(&admin, "SELECT count(*) FROM t", &[&["2"]]).await;
    // libpq speaks SCRAM too.
    let conn = format!(
        "host=127.0.0.1 port={} user=reader dbname=eddy",
        server.port
    );
    let (ok, out, err) = psql(&conn, "SELECT c FROM n", Some("reader-secret"));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2");
    let (ok, _, err) = psql(&conn, "SELECT 1", Some("nope"));
    assert!(!ok);
    // (pgwire capitalises the message and leaves SCRAM's empty user name in it.)
    assert!(
        err.to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
}

/// Readers cannot take the last connection slot: it is kept for admins, so
/// an admin can always get in to look and fix (issue 14, hole 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_slot_is_kept_for_an_admin() {
    let server = Server::start_with_args(&[
        "--password",
        "admin-secret",
        "--reader-password",
        "reader-secret",
        "--max-connections",
        "3",
        "--idle-session-timeout",
        "0",
    ])
    .await;
    // The readiness probe's slot must be free first.
    let r1 = connect_when_free(server.port, "reader", "reader-secret")
        .await
        .expect("first reader");
    let r2 = connect_as(server.port, "reader", "reader-secret")
        .await
        .expect("second reader");
    let e = connect_as(server.port, "reader", "reader-secret")
        .await
        .err()
        .expect("a third reader is refused");
    assert_eq!(sqlstate(&e), "53300", "{e}");
    assert!(e.contains("reserved for admin"), "{e}");
    // A wrong admin password on the reserved slot fails as it would anywhere
    // (once the refused reader's connection has ended).
    let e = connect_when_free(server.port, "eddy", "wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01", "{e}");
    let admin = connect_when_free(server.port, "eddy", "admin-secret")
        .await
        .expect("the admin gets the reserved slot");
    common::eventually(&admin, "SELECT 1", &[&["1"]]).await;
    // Now every slot is taken.
    let e = connect_as(server.port, "eddy", "admin-secret")
        .await
        .err()
        .unwrap();
    assert!(e.contains("too many clients"), "{e}");
    for c in [&r1, &r2] {
        common::eventually(c, "SELECT 2", &[&["2"]]).await;
    }
}

/// Connect, retrying while every slot is still taken by connections that
/// are on their way out.
async fn connect_when_free(
    port: u16,
    user: &str,
    password: &str,
) -> Result<common::PgClient, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match connect_as(port, user, password).await {
            Err(e) if e.contains("too many clients") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

#[test]
fn no_open_network_port_without_authentication() {
    let data = common::unique_temp_dir();
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        cmd.args(["serve", "--pg-addr", "0.0.0.0:0", "--data-dir"])
            .arg(&data)
            .args(extra)
            .env_remove("EDDY_PASSWORD")
            .env_remove("EDDY_AUTH");
        common::run_bounded(cmd, Duration::from_secs(20))
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    // Asking for a password mode without one is an error too.
    let out = run(&["--auth", "password"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auth password needs an admin"));
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_and_can_be_required() {
    let dir = common::unique_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::self_signed_certificate(&dir);
    let server =
        Server::start_with_args(&["--tls-cert", &cert, "--tls-key", &key, "--tls-required"]).await;
    let base = format!("host=127.0.0.1 port={} user=eddy dbname=eddy", server.port);
    let (ok, out, err) = psql(
        &format!("{base} sslmode=require"),
        "CREATE TABLE t (v INT); INSERT INTO t VALUES (7); SELECT sum(v) FROM t",
        None,
    );
    assert!(ok, "{err}");
    assert!(out.trim().ends_with('7'), "{out}");
    // The server checks the client really speaks TLS: verify-ca against our certificate.
    let (ok, _, err) = psql(
        &format!("{base} sslmode=verify-ca sslrootcert={cert}"),
        "SELECT 1",
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = psql(&format!("{base} sslmode=disable"), "SELECT 1", None);
    assert!(!ok);
    assert!(err.contains("requires SSL"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connectors read only under `--file-root`: a file source's path and
/// Kafka's file-valued properties outside it are refused (42501), also
/// through `..`; librdkafka properties that load code are refused always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_read_only_under_the_file_root() {
    let root = common::unique_temp_dir().join("files");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("events.jsonl"), "{\"v\": 1}\n{\"v\": 2}\n").unwrap();
    let server = Server::start_with_args(&["--file-root", &root.display().to_string()]).await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE SOURCE ok (v INT) WITH (connector = 'file', path = 'events.jsonl');
         CREATE MATERIALIZED VIEW n AS SELECT sum(v) AS s FROM ok;",
    )
    .await
    .unwrap();
    common::eventually(&c, "SELECT s FROM n", &[&["3"]]).await;
    let outside = root.parent().unwrap().join("secret.txt");
    std::fs::write(&outside, "{\"v\": 42}\n").unwrap();
    for (sql, code) in [
        (
            format!(
                "CREATE SOURCE a (v INT) WITH (connector = 'file', path = '{}')",
                outside.display()
            ),
            "42501",
        ),
        (
            "CREATE SOURCE b (v INT) WITH (connector = 'file', path = '../secret.txt')".into(),
            "42501",
        ),
        (
            "CREATE SOURCE c (v INT) WITH (connector = 'kafka', topic = 't',
                 'bootstrap.servers' = '127.0.0.1:1', 'properties.ssl.ca.location' = '/etc/passwd')"
                .into(),
            "42501",
        ),
        (
            "CREATE SINK d FROM n WITH (connector = 'kafka', topic = 't',
                 'bootstrap.servers' = '127.0.0.1:1', delivery = 'at_least_once',
                 'properties.plugin.library.paths' = '/tmp/evil.so')"
                .into(),
            "22023",
        ),
    ] {
        let e = c.batch_execute(&sql).await.unwrap_err();
        let e = common::error_text(&e);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
    assert_eq!(
        common::rows(&c, "SELECT count(*) FROM eddy.sources")
            .await
            .unwrap(),
        vec![vec!["1"]]
    );
}
