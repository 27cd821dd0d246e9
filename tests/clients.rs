//! Real Postgres client libraries against a real eddy server: the scripts under `tests/clients/`,
//! each check of which prints `PASS name` or `FAIL name: <error>` and asserts what PostgreSQL
//! itself returns (values, types, catalog rows):
//!
//! - `matrix.py`: psycopg 3 (parameters, executemany, prepared statements, NULLs, a named
//!   server-side cursor, COPY TO / FROM STDIN), psycopg2 (parameters, `copy_expert`, `copy_from`),
//!   asyncpg (parameters, prepared statements, `copy_from_query`, binary
//!   `copy_records_to_table`, cursors in a transaction), SQLAlchemy 2 over psycopg and psycopg2
//!   (connect, `text()` binds, `inspect()`, `Table(autoload_with=…)`, the ORM) and pandas
//!   `read_sql`;
//! - `tools.py`: the catalog queries of pgcli's completion, Grafana's PostgreSQL query builder and
//!   Metabase's sync, sent verbatim, and psql's `\dt`, `\d`, `\d+`, `\dv`, `\dm`, `\df`, `\dn`, `\l`;
//! - `matrix.js`: node-postgres (parameters, BIGINT as a string, named prepared statements,
//!   `pg-cursor`, recovery after errors).
//!
//! Each script gets its own fresh server; each check its own table. `checks_hold_on_postgresql`
//! runs the same scripts against a real PostgreSQL (started by the test, as in
//! `postgres_differential.rs`; tables there are created without the WATERMARK clause), so every
//! expectation is known to be PostgreSQL's.
//!
//! The client libraries live outside the repository: Python ones in a venv at
//! `$EDDY_CLIENTS_VENV` (default `~/.cache/eddy-clients/venv`, from
//! `tests/clients/requirements.txt`), node ones in `$EDDY_CLIENTS_NODE/node_modules` (default
//! `~/.cache/eddy-clients/node`, from `tests/clients/package-lock.json`). `.ci/run` installs both
//! and sets `EDDY_REQUIRE_CLIENTS=1`; without it a missing install skips the test with a note.
//! To run one script by hand against a server: `~/.cache/eddy-clients/venv/bin/python
//! tests/clients/matrix.py 5488` (or `--only NAME`, `--traceback`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::postgres::Postgres;
use common::Server;

/// Limit for one script run (all its checks).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Limit for probing an interpreter and its modules.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The modules `matrix.py` and `tools.py` import.
const PYTHON_MODULES: &str = "psycopg, psycopg2, asyncpg, sqlalchemy, pandas";
/// The packages `matrix.js` and `dashboard.js` require.
const NODE_PACKAGES: [&str; 3] = ["pg", "pg-cursor", "playwright-core"];
/// Debian's chromium, which `dashboard.js` drives.
const CHROMIUM: &str = "/usr/bin/chromium";

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/eddy-clients")
}

fn env_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(default))
}

/// `None` after saying why `test` is skipped; with `EDDY_REQUIRE_CLIENTS=1` (CI) a panic instead.
fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("EDDY_REQUIRE_CLIENTS").as_deref() == Ok("1") {
        panic!("EDDY_REQUIRE_CLIENTS=1 but {why}");
    }
    eprintln!(
        "SKIPPED {test}: {why} (bash .ci/run installs the client libraries; \
         EDDY_REQUIRE_CLIENTS=1 makes this a failure)"
    );
    None
}

/// The venv's python, once it imports every client library.
fn python_or_skip(test: &str) -> Option<PathBuf> {
    let venv = env_dir("EDDY_CLIENTS_VENV", "venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        return skip(
            test,
            &format!(
                "no Python venv at {} (python3 -m venv DIR && DIR/bin/pip install -r \
                 tests/clients/requirements.txt, then EDDY_CLIENTS_VENV=DIR)",
                venv.display()
            ),
        );
    }
    let mut probe = Command::new(&python);
    probe.args(["-c", &format!("import {PYTHON_MODULES}")]);
    let out = common::run_bounded(probe, PROBE_TIMEOUT);
    if !out.status.success() {
        return skip(
            test,
            &format!(
                "{} cannot import {PYTHON_MODULES}: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
    }
    Some(python)
}

/// The `node_modules` directory holding node-postgres, once `node` runs.
fn node_modules_or_skip(test: &str) -> Option<PathBuf> {
    let modules = env_dir("EDDY_CLIENTS_NODE", "node").join("node_modules");
    if let Some(missing) = NODE_PACKAGES
        .iter()
        .find(|p| !modules.join(p).join("package.json").is_file())
    {
        return skip(
            test,
            &format!(
                "no {missing} in {} (npm ci in a copy of tests/clients/package.json and \
                 package-lock.json, then EDDY_CLIENTS_NODE=that directory)",
                modules.display()
            ),
        );
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Some(modules),
        _ => skip(test, "`node --version` does not run"),
    }
}

/// A command for a script, with no PG* variables leaking in and no bytecode written into the
/// repository.
fn script_command(program: &Path, script: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(scripts_dir().join(script))
        .current_dir(scripts_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PG") || key == "PSQLRC" || key == "PAGER" || key == "PSQL_PAGER" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Checks known to fail on eddy, with why: `tests/clients/known_failures.tsv`.
fn known_failures() -> Vec<(String, String)> {
    let path = scripts_dir().join("known_failures.tsv");
    let text = std::fs::read_to_string(&path).expect("tests/clients/known_failures.tsv");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (check, why) = l.split_once('\t').unwrap_or((l, ""));
            (check.trim().to_string(), why.trim().to_string())
        })
        .collect()
}

/// Runs `cmd` (a script with its target appended) and panics with its report unless its checks
/// came out as expected: on PostgreSQL (`reference`) every check passes; on eddy every check
/// passes except those listed in `known_failures.tsv`, each of which must still fail (a listed
/// check that passes is taken off the list). `context` is added to a failure (the server log).
fn run_script(mut cmd: Command, target: &str, reference: bool, context: impl FnOnce() -> String) {
    cmd.arg(target);
    if reference {
        cmd.arg("--reference");
    }
    let desc = format!("{cmd:?}");
    let out = common::run_bounded(cmd, SCRIPT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {desc}\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("--- stderr\n{stderr}");
    }
    let outcome = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| l.split(':').next().unwrap_or(l).trim().to_string())
            .collect()
    };
    let (passed, failed) = (outcome("PASS "), outcome("FAIL "));
    let finished = stdout
        .lines()
        .any(|l| l.contains(" passed, ") && l.contains(" failed"));
    let expected: Vec<(String, String)> = if reference { vec![] } else { known_failures() };
    let listed = |c: &String| expected.iter().any(|(k, _)| k == c);
    let mut problems: Vec<String> = failed
        .iter()
        .filter(|c| !listed(c))
        .map(|c| format!("FAIL {c} (not a known failure)"))
        .collect();
    problems.extend(
        passed
            .iter()
            .filter(|c| listed(c))
            .map(|c| format!("{c} passes now: take it off tests/clients/known_failures.tsv")),
    );
    if !finished || (reference && !out.status.success()) {
        problems.push(format!("the script did not finish ({})", out.status));
    }
    if !problems.is_empty() {
        // The whole report is printed above; the message repeats what went wrong.
        let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
        panic!(
            "{desc}: {}\n{}\n{}",
            problems.join("; "),
            failures.join("\n"),
            context()
        );
    }
}

fn on_eddy(server: &Server) -> impl FnOnce() -> String + '_ {
    || format!("--- eddy server log (tail)\n{}", server.log_tail())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers() {
    let Some(python) = python_or_skip("python_drivers") else {
        return;
    };
    let server = Server::start().await;
    let cmd = script_command(&python, "matrix.py");
    run_script(cmd, &server.port.to_string(), false, on_eddy(&server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_catalog_queries() {
    let Some(python) = python_or_skip("tool_catalog_queries") else {
        return;
    };
    let server = Server::start().await;
    let cmd = script_command(&python, "tools.py");
    run_script(cmd, &server.port.to_string(), false, on_eddy(&server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let Some(modules) = node_modules_or_skip("node_postgres") else {
        return;
    };
    let server = Server::start().await;
    let mut cmd = script_command(Path::new("node"), "matrix.js");
    cmd.env("NODE_PATH", &modules);
    run_script(cmd, &server.port.to_string(), false, on_eddy(&server));
}

/// The same scripts against PostgreSQL itself: every check must pass there, so no check asks
/// eddy for something PostgreSQL does not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_hold_on_postgresql() {
    let test = "checks_hold_on_postgresql";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    let Some(modules) = node_modules_or_skip(test) else {
        return;
    };
    let Some(pg) = Postgres::start_or_skip().await else {
        return;
    };
    let client = pg.connect().await.expect("connect to PostgreSQL");
    let port = common::rows(&client, "SELECT inet_server_port()")
        .await
        .expect("inet_server_port()")[0][0]
        .clone();
    drop(client);
    let target = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let none = String::new;
    run_script(script_command(&python, "matrix.py"), &target, true, none);
    run_script(script_command(&python, "tools.py"), &target, true, none);
    let mut node = script_command(Path::new("node"), "matrix.js");
    node.env("NODE_PATH", &modules);
    run_script(node, &target, true, none);
}

/// eddy's dashboard in a real browser (issue 19): Debian's chromium, driven by playwright-core,
/// loads `/` with no console error, shows the test's source and view, its numbers move while the
/// generator runs, and the view's operator graph opens; screenshots go to the test's temp dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let test = "dashboard_in_chromium";
    let Some(modules) = node_modules_or_skip(test) else {
        return;
    };
    if !Path::new(CHROMIUM).is_file() {
        skip::<()>(test, "no /usr/bin/chromium (apt-get install chromium)");
        return;
    }
    let http = common::free_port();
    let addr = format!("127.0.0.1:{http}");
    let server = Server::start_with_args(&["--http-addr", &addr]).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE SOURCE clicks (id BIGINT NOT NULL, user_id INT, ts TIMESTAMP NOT NULL,
                                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'datagen', rows_per_second = '500', seed = '7',
                   'fields.id.kind' = 'sequence', 'fields.user_id.min' = '1',
                   'fields.user_id.max' = '20', 'fields.ts.max_past' = '500ms');
             CREATE MATERIALIZED VIEW clicks_per_user AS
                 SELECT window_start, user_id, count(*) AS clicks
                 FROM TUMBLE(clicks, ts, INTERVAL '5' SECOND) GROUP BY window_start, user_id;",
        )
        .await
        .expect("setup");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut cmd = Command::new("node");
    cmd.arg(scripts_dir().join("dashboard.js"))
        .arg(format!("http://{addr}/"))
        .arg(&shots)
        .args(["clicks", "clicks_per_user"])
        .env("NODE_PATH", &modules)
        .env("CHROMIUM", CHROMIUM);
    let out = common::run_bounded(cmd, SCRIPT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dashboard.js failed:\n{stdout}\n{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    assert!(
        summary["second"].as_f64() > summary["first"].as_f64(),
        "the rows read did not move: {summary}"
    );
    let graph: Vec<&str> = summary["graph"]
        .as_array()
        .expect("graph")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        graph
            .first()
            .is_some_and(|l| l.starts_with("Input: clicks"))
            && graph.iter().any(|l| l.starts_with("Aggregate:"))
            && graph
                .last()
                .is_some_and(|l| l.starts_with("Materialize: clicks_per_user")),
        "{graph:?}"
    );
    // Live counters under the operators (`in N · out M · state`).
    let counters = summary["counters"].as_array().expect("counters");
    assert!(
        !counters.is_empty()
            && counters
                .iter()
                .all(|c| c.as_str().is_some_and(|c| c.starts_with("in "))),
        "{counters:?}"
    );
    assert_eq!(summary["errors"], serde_json::json!([]));
    for shot in ["dashboard-1.png", "dashboard-2.png"] {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
    println!("screenshots: {}", shots.display());
}
