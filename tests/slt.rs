//! Runs every `sql/**/*.slt` file against its own fresh `eddy` server, over the real pgwire port.
//!
//! - One server per file, so files are independent; files run one after another.
//! - Queries go through tokio-postgres `simple_query` (the simple protocol, text results, as psql
//!   sends them). Values map to strings as: SQL NULL → `NULL`, empty string → `(empty)`, anything
//!   else verbatim. Column types are not checked (the simple protocol carries none), so the type
//!   string of a `query` record only states the column count for readers.
//! - Results are compared in order, except for `query ... rowsort`, where the runner sorts the
//!   actual rows (per column, as strings) before comparing: write the expected rows of a `rowsort`
//!   query in that sorted order.
//! - Errors render as `<SQLSTATE> <SEVERITY>: <message>` (plus `DETAIL:`/`HINT:` lines), so
//!   `statement error 42P01.*nope` checks code and message together; `statement error (42P01)`
//!   checks the SQLSTATE alone.
//! - Streaming results are eventually consistent: follow an INSERT with
//!   `query <types> [rowsort] retry <n> backoff <duration>`.
//!
//! Environment:
//! - `EDDY_SLT=<substring>`: run only files whose path contains the substring.
//! - `EDDY_SLT_DIR=<dir>`: run the files under another directory instead of `sql/`.
//! - `EDDY_SLT_FILE_TIMEOUT_SECS`: per-file time limit (default 180).
//!
//! Every file's failure is reported (with the server log tail) before the test fails.
//!
//! `slt_files_parse_and_have_defined_order` checks the files without a server: each parses, and
//! no query expects several rows without `ORDER BY` or a sort mode (a flaky test in waiting).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{PgClient, Server};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, QueryExpect, Record, SortMode};
use tokio_postgres::SimpleQueryMessage;

/// Default time limit for one `.slt` file, including server startup and shutdown.
const FILE_TIMEOUT_SECS_DEFAULT: u64 = 180;
/// At least this many `.slt` files must be found, so a moved directory cannot pass silently.
const FILES_MIN: usize = 10;

/// An error from the server or the connection, with the SQLSTATE kept for `error (XXXXX)` records.
#[derive(Debug)]
struct PgError {
    /// Rendered text (see the module doc for the format).
    text: String,
    /// The SQLSTATE, for database errors.
    sqlstate: Option<String>,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PgError {}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError {
            text: common::error_text(&e),
            sqlstate: e.code().map(|c| c.code().to_string()),
        }
    }
}

/// One sqllogictest connection: a tokio-postgres client using the simple query protocol.
struct EddyDb {
    /// The client; its connection task is aborted when this is dropped.
    client: PgClient,
}

impl EddyDb {
    async fn connect(port: u16) -> Result<EddyDb, PgError> {
        let client = common::connect(port).await.map_err(|text| PgError {
            text,
            sqlstate: None,
        })?;
        Ok(EddyDb { client })
    }
}

#[async_trait::async_trait]
impl AsyncDB for EddyDb {
    type Error = PgError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await?;
        // A multi-statement string yields the outcome of its last statement.
        let mut columns: Option<usize> = None;
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut count = 0u64;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(desc) => {
                    columns = Some(desc.len());
                    rows.clear();
                }
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(v) => v.to_string(),
                        })
                        .collect::<Vec<_>>();
                    columns.get_or_insert(values.len());
                    rows.push(values);
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(count)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "eddy"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &Self::Error) -> Option<String> {
        err.sqlstate.clone()
    }
}

/// Collects `*.slt` files under `dir`, recursively, sorted by path.
fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read dir {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "slt") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs one file against a fresh server. Returns a failure description, if any.
async fn run_file(path: &Path, timeout: Duration) -> Option<String> {
    let mut server = Server::start().await;
    let port = server.port;
    let mut runner = sqllogictest::Runner::new(move || EddyDb::connect(port));
    let outcome = tokio::time::timeout(timeout, runner.run_file_async(path)).await;
    runner.shutdown_async().await;
    drop(runner);
    let mut failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{}", e.display(false))),
        Err(_) => Some(format!("file did not finish within {timeout:?}")),
    };
    // A file whose queries all passed still fails if the server died, a task panicked, or the
    // server does not shut down cleanly (exit 0 on SIGTERM) with its views running.
    if failure.is_none() {
        if let Some(status) = server.try_wait() {
            failure = Some(format!("the server exited during the file ({status})"));
        } else if server.log_contains("panicked at") {
            failure = Some("the server log reports a panic".to_string());
        } else {
            match tokio::task::block_in_place(|| server.terminate(common::SHUTDOWN_GRACE)) {
                Some(status) if status.success() => {}
                Some(status) => {
                    failure = Some(format!("the server exited with {status} on SIGTERM"))
                }
                None => {
                    failure = Some(format!(
                        "the server did not exit within {:?} of SIGTERM",
                        common::SHUTDOWN_GRACE
                    ))
                }
            }
        }
    }
    let failure = failure.map(|f| {
        format!(
            "{f}\n--- server log (tail) ---\n{}\n--- end of server log ---",
            server.log_tail()
        )
    });
    if failure.is_some() {
        server.keep_dir = true;
    }
    // Stopping the server waits (bounded) for the process to exit: keep that off the async workers.
    tokio::task::block_in_place(|| drop(server));
    failure
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (sql_dir, files_min) = match std::env::var_os("EDDY_SLT_DIR") {
        Some(dir) => (PathBuf::from(dir), 1),
        None => (root.join("sql"), FILES_MIN),
    };
    let all = slt_files(&sql_dir);
    assert!(
        all.len() >= files_min,
        "expected at least {files_min} .slt files under {}, found {}",
        sql_dir.display(),
        all.len()
    );
    let filter = std::env::var("EDDY_SLT").unwrap_or_default();
    let files: Vec<_> = all
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&filter))
        .collect();
    assert!(
        !files.is_empty(),
        "EDDY_SLT={filter:?} matches no .slt file"
    );
    let timeout = Duration::from_secs(
        std::env::var("EDDY_SLT_FILE_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(FILE_TIMEOUT_SECS_DEFAULT),
    );

    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let started = std::time::Instant::now();
        match run_file(path, timeout).await {
            None => eprintln!("slt ok   {name} ({:.1?})", started.elapsed()),
            Some(failure) => {
                eprintln!("slt FAIL {name} ({:.1?})\n{failure}\n", started.elapsed());
                failures.push(name);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed: {}",
        failures.len(),
        files.len(),
        failures.join(", ")
    );
}

#[test]
fn slt_files_parse_and_have_defined_order() {
    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let files = slt_files(&sql_dir);
    assert!(
        files.len() >= FILES_MIN,
        "found only {} .slt files",
        files.len()
    );
    let mut problems = Vec::new();
    for path in &files {
        let records = match sqllogictest::parse_file::<DefaultColumnType>(path) {
            Ok(records) => records,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for record in records {
            if let Record::Query {
                loc,
                sql,
                expected:
                    QueryExpect::Results {
                        sort_mode, results, ..
                    },
                ..
            } = record
            {
                let sorted = matches!(sort_mode, Some(SortMode::RowSort | SortMode::ValueSort));
                let upper = sql.to_uppercase();
                // EXPLAIN prints the operator graph line by line, in a fixed order.
                let ordered =
                    upper.contains("ORDER BY") || upper.trim_start().starts_with("EXPLAIN");
                let fuzzy = results.iter().any(|r| r.contains("<slt:ignore>"));
                if results.len() > 1 && !sorted && !ordered && !fuzzy {
                    problems.push(format!(
                        "{loc}: {} expected rows but no ORDER BY or rowsort",
                        results.len()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
