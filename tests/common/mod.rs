//! Shared test support: start a real `eddy` server process and talk to it.
//!
//! Every [`Server`] is its own process on its own loopback port with its own fresh data directory,
//! so tests never share state. Everything here is bounded in time: startup gives up after
//! [`STARTUP_TIMEOUT`] with a panic that includes the server log, and dropping a [`Server`] sends
//! SIGTERM, waits at most [`SHUTDOWN_GRACE`], then kills the process.
//!
//! Used by several test binaries; each uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod differential;
pub mod kafka;
pub mod postgres;
pub mod registry;
pub mod sweep;
pub mod tansu;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to accept its first Postgres connection.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a dropped server gets to exit after SIGTERM before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times startup is retried when the chosen port was taken in the meantime.
const PORT_RACE_RETRIES_MAX: u32 = 3;
/// How many bytes of the server log a failure message shows.
pub const LOG_TAIL_BYTES: u64 = 8 * 1024;
/// How many bytes of the server log are searched by [`Server::log_contains`].
pub const LOG_SCAN_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Counter that makes temp directory names unique within one test process.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// How the server is told where to listen and store data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// `eddy serve --pg-addr ADDR --data-dir DIR`
    Flags,
    /// `eddy serve` with `EDDY_PG_ADDR` and `EDDY_DATA_DIR` in the environment.
    Env,
}

/// A running `eddy serve` process. Dropping it stops the process.
pub struct Server {
    /// The server process; `None` once it has been waited for.
    child: Option<Child>,
    /// Loopback port the Postgres protocol listens on.
    pub port: u16,
    /// Root of this server's scratch space: `data/` and `server.log` live in it.
    pub root: PathBuf,
    /// The directory passed as the data dir.
    pub data_dir: PathBuf,
    /// Combined stdout + stderr of the server.
    pub log_path: PathBuf,
    /// Keep `root` on drop (set when a failure message points at it).
    pub keep_dir: bool,
}

impl Server {
    /// Starts a server configured through command-line flags and waits until it accepts a
    /// Postgres connection. Panics (with the server log) if that does not happen in time.
    pub async fn start() -> Server {
        Server::start_with(Config::Flags).await
    }

    /// Like [`Server::start`], choosing how the address and data dir are passed.
    pub async fn start_with(config: Config) -> Server {
        Server::start_full(config, &[], None).await
    }

    /// Like [`Server::start`], with extra arguments after `serve …`.
    pub async fn start_with_args(extra: &[&str]) -> Server {
        Server::start_full(Config::Flags, extra, None).await
    }

    /// Like [`Server::start`], with `data_dir` as the data dir (to restart on the same data).
    pub async fn start_in(data_dir: &Path) -> Server {
        Server::start_full(Config::Flags, &[], Some(data_dir)).await
    }

    /// Like [`Server::start_in`], with extra arguments after `serve …`.
    pub async fn start_in_with(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_full(Config::Flags, extra, Some(data_dir)).await
    }

    /// Kill the process with SIGKILL (no chance to clean up) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn start_full(config: Config, extra: &[&str], data_dir: Option<&Path>) -> Server {
        let root = unique_temp_dir();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut server = Server::spawn(&root, config, extra, data_dir);
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(StartError::PortTaken) if attempt < PORT_RACE_RETRIES_MAX => {
                    // Another process grabbed the port between our probe and the server's bind.
                    drop(server);
                    continue;
                }
                Err(e) => {
                    let tail = server.log_tail();
                    let root = server.root.clone();
                    server.keep_dir = true;
                    drop(server);
                    panic!(
                        "eddy server did not start: {e}\nscratch dir: {}\n--- server log (tail) ---\n{tail}",
                        root.display()
                    );
                }
            }
        }
    }

    fn spawn(root: &Path, config: Config, extra: &[&str], data_dir: Option<&Path>) -> Server {
        let port = free_port();
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.join(format!("data-{port}")));
        fs::create_dir_all(&data_dir).expect("create data dir");
        let log_path = root.join(format!("server-{port}.log"));
        let log = File::create(&log_path).expect("create server log");
        let log_err = log.try_clone().expect("clone server log handle");
        let addr = format!("127.0.0.1:{port}");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        cmd.arg("serve");
        match config {
            Config::Flags => {
                cmd.arg("--pg-addr")
                    .arg(&addr)
                    .arg("--data-dir")
                    .arg(&data_dir);
                cmd.env_remove("EDDY_PG_ADDR").env_remove("EDDY_DATA_DIR");
            }
            Config::Env => {
                cmd.env("EDDY_PG_ADDR", &addr)
                    .env("EDDY_DATA_DIR", &data_dir);
            }
        }
        cmd.args(extra);
        // HTTP only where a test asks for it (its default port is one for all).
        cmd.env_remove("EDDY_HTTP_ADDR");
        if !extra.contains(&"--http-addr") {
            cmd.args(["--http-addr", "off"]);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // The log is a file read by people and by failure messages: no colour escapes.
        cmd.env("NO_COLOR", "1");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", env!("CARGO_BIN_EXE_eddy")));
        Server {
            child: Some(child),
            port,
            root: root.to_path_buf(),
            data_dir,
            log_path,
            keep_dir: false,
        }
    }

    async fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                let log = self.log_tail().to_lowercase();
                if log.contains("address already in use") || log.contains("addrinuse") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Exited(status));
            }
            let last_error = match self.connect().await {
                Ok(_client) => return Ok(()),
                // A server that asks for a password is up (tests of authentication).
                Err(e) if e.contains("password") || e.contains("28P01") || e.contains("28000") => {
                    return Ok(())
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(StartError::Timeout(last_error));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server already reaped").id()
    }

    /// Returns the exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("try_wait on eddy server")
    }

    /// A libpq-style connection string for this server.
    pub fn conn_str(&self) -> String {
        conn_str(self.port)
    }

    /// Opens a new client connection (bounded by [`CONNECT_TIMEOUT`]).
    pub async fn connect(&self) -> Result<PgClient, String> {
        connect(self.port).await
    }

    /// Opens a new client connection, panicking with the server log on failure.
    pub async fn client(&self) -> PgClient {
        match self.connect().await {
            Ok(c) => c,
            Err(e) => panic!(
                "connect to eddy on port {}: {e}\n--- server log (tail) ---\n{}",
                self.port,
                self.log_tail()
            ),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    /// Returns `None` if it is still running after `timeout` (it is then left running;
    /// `Drop` will kill it).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        send_sigterm(self.pid());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server's output so far contains `needle` (reads at most [`LOG_SCAN_BYTES_MAX`]).
    pub fn log_contains(&self, needle: &str) -> bool {
        let Ok(f) = File::open(&self.log_path) else {
            return false;
        };
        let mut buf = Vec::new();
        let _ = f.take(LOG_SCAN_BYTES_MAX).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).contains(needle)
    }

    /// The last [`LOG_TAIL_BYTES`] of the server's output.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() && self.terminate(SHUTDOWN_GRACE).is_none() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.child = None;
        if self.keep_dir || std::thread::panicking() {
            eprintln!(
                "eddy test server kept for inspection: {} (log: {})",
                self.root.display(),
                self.log_path.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

#[derive(Debug)]
enum StartError {
    PortTaken,
    Exited(ExitStatus),
    Timeout(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PortTaken => write!(f, "port already in use"),
            StartError::Exited(s) => write!(f, "process exited during startup ({s})"),
            StartError::Timeout(e) => write!(
                f,
                "no Postgres connection accepted within {STARTUP_TIMEOUT:?}; last error: {e}"
            ),
        }
    }
}

/// A tokio-postgres client whose connection task is aborted when the client is dropped.
pub struct PgClient {
    /// The client half.
    pub client: tokio_postgres::Client,
    /// Drives the connection; aborted on drop so no task outlives the test.
    driver: tokio::task::JoinHandle<()>,
}

impl Deref for PgClient {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A libpq-style connection string for a server on `port`.
pub fn conn_str(port: u16) -> String {
    format!(
        "host=127.0.0.1 port={port} user=eddy dbname=eddy connect_timeout={}",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// Connects to `127.0.0.1:port` as user `eddy`, database `eddy`, bounded by [`CONNECT_TIMEOUT`].
pub async fn connect(port: u16) -> Result<PgClient, String> {
    connect_with(&conn_str(port)).await
}

/// Connects to `127.0.0.1:port` as `user` with `password` (SCRAM when the server asks).
pub async fn connect_as(port: u16, user: &str, password: &str) -> Result<PgClient, String> {
    connect_with(&format!(
        "host=127.0.0.1 port={port} user={user} password={password} dbname=eddy connect_timeout={}",
        CONNECT_TIMEOUT.as_secs()
    ))
    .await
}

/// Connects with a libpq-style connection string, bounded by [`CONNECT_TIMEOUT`].
pub async fn connect_with(conn_str: &str) -> Result<PgClient, String> {
    let fut = tokio_postgres::connect(conn_str, tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(error_text(&e)),
        Err(_) => return Err(format!("timed out after {CONNECT_TIMEOUT:?}")),
    };
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("eddy test client connection ended: {}", error_text(&e));
        }
    });
    Ok(PgClient { client, driver })
}

/// Renders a tokio-postgres error with its server-side details; its `Display` alone only says
/// "db error".
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.code().code(), db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nHINT: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            s
        }
    }
}

/// A SQL timestamp literal for `ms` milliseconds since the Unix epoch (UTC).
pub fn timestamp_literal(ms: i64) -> String {
    let dt = chrono::DateTime::from_timestamp_millis(ms).expect("a timestamp in range");
    format!("TIMESTAMP '{}'", dt.format("%Y-%m-%d %H:%M:%S%.3f"))
}

/// Asks the OS for a free loopback port. The port is released before the server binds it, so a
/// race is possible; [`Server::start_with`] retries when the server reports the port taken.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Creates a fresh, empty directory under the system temp dir.
pub fn unique_temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("eddy-test-{}-{}-{}", std::process::id(), id, nanos));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Sends SIGTERM through the shell's `kill` builtin (no libc dependency).
pub fn send_sigterm(pid: u32) {
    let status = Command::new("sh")
        .arg("-c")
        .arg("kill -TERM \"$0\"")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .expect("run sh -c kill");
    // The process may have exited on its own in the meantime; that is not an error here.
    let _ = status;
}

/// Reads at most the last `max_bytes` of a file, lossily decoded.
pub fn read_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max_bytes).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs a command to completion with stdin closed, killing it if it runs longer than `timeout`.
/// Panics on timeout, with whatever output it produced.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    // Read both pipes on their own threads so a chatty child never blocks on a full pipe.
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "{desc} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Rows of a simple query as text (NULL as "NULL"), or the error's text.
pub async fn rows(client: &PgClient, sql: &str) -> Result<Vec<Vec<String>>, String> {
    Ok(client
        .simple_query(sql)
        .await
        .map_err(|e| error_text(&e))?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// How long [`eventually`] waits for a streaming result.
pub const EVENTUALLY_MAX: Duration = Duration::from_secs(30);

/// Poll `sql` until it returns `want`; panic with the last result after [`EVENTUALLY_MAX`].
pub async fn eventually(client: &PgClient, sql: &str, want: &[&[&str]]) {
    let want: Vec<Vec<String>> = want
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
    eventually_rows(client, sql, &want).await;
}

/// [`eventually`] with the rows as owned strings (computed expectations).
pub async fn eventually_rows(client: &PgClient, sql: &str, want: &[Vec<String>]) {
    until(client, sql, &format!("returned {want:?}"), |got| {
        got == want
    })
    .await;
}

/// Poll `sql` until its rows satisfy `done`, and return them; panic with the
/// last result after [`EVENTUALLY_MAX`] (`what` says what was awaited).
pub async fn until(
    client: &PgClient,
    sql: &str,
    what: &str,
    done: impl Fn(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let start = Instant::now();
    loop {
        let got = rows(client, sql).await;
        if let Ok(r) = &got {
            if done(r) {
                return r.clone();
            }
        }
        assert!(
            start.elapsed() < EVENTUALLY_MAX,
            "`{sql}` never {what}; last: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows source `name` has read so far (`eddy.sources.rows_read`).
pub async fn rows_read(client: &PgClient, name: &str) -> u64 {
    let r = rows(
        client,
        &format!("SELECT rows_read FROM eddy.sources WHERE name = '{name}'"),
    )
    .await
    .expect("eddy.sources");
    r[0][0].parse().expect("rows_read")
}

/// Rows per second source `name` reads over the next `window`.
pub async fn ingest_rate(client: &PgClient, name: &str, window: Duration) -> f64 {
    let before = rows_read(client, name).await;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    (rows_read(client, name).await - before) as f64 / start.elapsed().as_secs_f64()
}

/// A datagen source `clicks` at 20,000 rows/s and a view `per_user` over it
/// (the ingest the load tests measure).
pub const CLICKS_20K: &str = "
    CREATE SOURCE clicks (id BIGINT NOT NULL, user_id INT, ts TIMESTAMP NOT NULL,
                          WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
    WITH (connector = 'datagen', rows_per_second = '20000', seed = '7',
          'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
          'fields.user_id.min' = '1', 'fields.user_id.max' = '50');
    CREATE MATERIALIZED VIEW per_user AS SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id;";

/// A table `bids`, a view `per_auction` (count and sum of price per auction) and two rows,
/// one per auction (the subscription tests' start).
pub const BIDS_PER_AUCTION: &str = "
    CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP,
                       WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
    CREATE MATERIALIZED VIEW per_auction AS
        SELECT auction, count(*) AS n, sum(price) AS total FROM bids GROUP BY auction;
    INSERT INTO bids VALUES (1, 10, '2026-01-01 00:00:00'), (2, 20, '2026-01-01 00:00:01');";

/// A protocol-3.0 startup message for user `eddy`, database `eddy` (for raw-socket tests).
pub fn startup_message() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for part in ["user", "eddy", "database", "eddy"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

/// How long a psql run may take.
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(20);

/// psql with a libpq connection string and `-c sql`; (success, stdout, stderr).
pub fn psql_as(conn: &str, sql: &str, password: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conn,
        "-c",
        sql,
    ]);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGSSLMODE",
        "PSQLRC",
    ] {
        cmd.env_remove(var);
    }
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = run_bounded(cmd, PSQL_TIMEOUT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made with
/// openssl now: (certificate path, key path), both PEM.
pub fn self_signed_certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    ])
    .args(["-subj", "/CN=localhost"])
    .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}
