//! The `eddy` binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eddy::engine::credentials::Credentials;
use eddy::engine::{Engine, Limits};
use eddy::server::auth::{AuthMode, Role};
use eddy::server::{serve, ServerConfig};

/// eddy: a streaming SQL database you talk to with psql.
#[derive(Parser, Debug)]
#[command(name = "eddy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve Postgres clients (psql -h 127.0.0.1 -p 5488 -U eddy eddy).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on for Postgres clients.
    #[arg(long, env = "EDDY_PG_ADDR", default_value = "127.0.0.1:5488")]
    pg_addr: String,
    /// Address for HTTP: a view's changes as Server-Sent Events or a WebSocket, POST /v1/sql,
    /// Prometheus /metrics, /healthz and /readyz. Default 127.0.0.1:5489 (if that port is taken,
    /// eddy runs without HTTP and says so); `off` turns it off.
    #[arg(long, env = "EDDY_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Directory for eddy's data (catalog and checkpoints, as they land).
    #[arg(long, env = "EDDY_DATA_DIR", default_value = "./eddy-data")]
    data_dir: PathBuf,
    /// Most concurrent client connections.
    #[arg(long, env = "EDDY_MAX_CONNECTIONS", default_value_t = 100)]
    max_connections: usize,
    /// Connection slots (out of --max-connections) kept for admin users, so an
    /// admin can still get in when readers hold every other slot (as
    /// PostgreSQL's `superuser_reserved_connections`).
    #[arg(long, env = "EDDY_RESERVED_ADMIN_CONNECTIONS", default_value_t = 1)]
    reserved_admin_connections: usize,
    /// Partitions per aggregate (default: number of cores).
    #[arg(long, env = "EDDY_PARALLELISM")]
    parallelism: Option<usize>,
    /// Most rows a materialized view may hold.
    #[arg(long, env = "EDDY_VIEW_MAX_ROWS", default_value_t = 10_000_000)]
    view_max_rows: u64,
    /// Change batches a SUBSCRIBE client may have waiting; one that falls further behind is
    /// disconnected (and may resume with AS OF), so no client slows a view.
    #[arg(long, env = "EDDY_SUBSCRIBE_BUFFER", default_value_t = 1024)]
    subscribe_buffer: usize,
    /// Bytes of each view's newest changes kept so a SUBSCRIBE client can resume (AS OF); every
    /// view keeps up to this much, subscribed or not.
    #[arg(long, env = "EDDY_SUBSCRIBE_RETAIN_BYTES", default_value_t = 16 << 20)]
    subscribe_retain_bytes: usize,
    /// Recent rows a table keeps for SELECT.
    #[arg(long, env = "EDDY_TABLE_RETAIN_ROWS", default_value_t = 1_000_000)]
    table_retain_rows: usize,
    /// Bytes of a table's log kept after checkpoints cover them, so views created later
    /// backfill from every row (older rows are compacted away beyond this).
    #[arg(long, env = "EDDY_TABLE_LOG_KEEP_BYTES", default_value_t = 256 << 20)]
    table_log_keep_bytes: u64,
    /// Most rejected records kept in eddy.dead_letters (oldest evicted first).
    #[arg(long, env = "EDDY_DEAD_LETTER_MAX_ROWS", default_value_t = 100_000)]
    dead_letter_max_rows: usize,
    /// Start an in-process, in-memory Kafka-protocol broker (librdkafka's mock
    /// cluster) for trying eddy without Kafka; its address is printed at start.
    /// Everything in it is lost on exit.
    #[arg(long, env = "EDDY_EMBEDDED_KAFKA")]
    embedded_kafka: bool,
    /// How clients authenticate: `password` (SCRAM-SHA-256; needs --password),
    /// `trust` (no passwords: anyone who reaches the port is an admin), or
    /// `auto`: password when one is set, else trust, and then only on a
    /// loopback address.
    #[arg(long, env = "EDDY_AUTH", default_value = "auto", value_parser = ["auto", "password", "trust"])]
    auth: String,
    /// Name of the admin user (may do anything).
    #[arg(long, env = "EDDY_USER", default_value = "eddy")]
    user: String,
    /// Password of the admin user (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "EDDY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Name of the read-only user (SELECT, SHOW, DESCRIBE, EXPLAIN).
    #[arg(long, env = "EDDY_READER_USER", default_value = "reader")]
    reader_user: String,
    /// Password of the read-only user; no read-only user without one.
    #[arg(long, env = "EDDY_READER_PASSWORD", hide_env_values = true)]
    reader_password: Option<String>,
    /// TLS certificate chain (PEM) for the Postgres port.
    #[arg(long, env = "EDDY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "EDDY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS.
    #[arg(long, env = "EDDY_TLS_REQUIRED", requires = "tls_cert")]
    tls_required: bool,
    /// Directory the `file` connector and Kafka's file-valued properties may
    /// read from (relative paths start there). Default: anywhere with trust on
    /// loopback; `<data-dir>/files` with passwords.
    #[arg(long, env = "EDDY_FILE_ROOT")]
    file_root: Option<PathBuf>,
    /// File holding the key that seals secrets (`CREATE SECRET`); created on
    /// first use. Keep it apart from backups of the data dir.
    /// Default: `<data-dir>/secrets.key`.
    #[arg(long, env = "EDDY_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Close a client session that runs no statement for this many seconds
    /// (0: never), so forgotten sessions cannot hold every connection slot.
    #[arg(long, env = "EDDY_IDLE_SESSION_TIMEOUT", default_value_t = 3600)]
    idle_session_timeout: u64,
    /// Memory (MiB) that ad-hoc queries share; sorts, aggregates and joins
    /// spill to disk beyond it where they can, else the query fails (53200).
    #[arg(long, env = "EDDY_QUERY_MEMORY_MB", default_value_t = 2048)]
    query_memory_mb: usize,
    /// Memory (KiB) an at-least-once sink may fill with messages its broker has
    /// not acknowledged; beyond it the sink stops holding up its view (`stalled`).
    #[arg(long, env = "EDDY_SINK_BUFFER_KB", default_value_t = 65536)]
    sink_buffer_kb: usize,
    /// Seconds between checkpoints (0: only on CHECKPOINT and at shutdown).
    #[arg(long, env = "EDDY_CHECKPOINT_INTERVAL", default_value_t = 10)]
    checkpoint_interval: u64,
}

/// Longest a graceful shutdown waits for its final checkpoint.
const SHUTDOWN_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a graceful shutdown waits for exactly-once sinks to commit.
const SHUTDOWN_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// mimalloc: the join and aggregate state allocate and free many small rows; glibc's
/// allocator spent about 30% of a join's time in `malloc`/`free` (perf, release build).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Planning and evaluating an expression recurse once per level: 8 MiB per thread holds
    // the deepest statement sql::complexity lets through (1,000 levels) with room to spare.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eddy: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(run_serve(args)),
    };
    // View and connector tasks end with the engine; don't wait on stragglers.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eddy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_serve(args: ServeArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", args.data_dir.display()))?;
    let mut limits = Limits {
        view_max_rows: args.view_max_rows,
        table_retain_rows: args.table_retain_rows,
        table_log_keep_bytes: args.table_log_keep_bytes,
        dead_letter_max_rows: args.dead_letter_max_rows,
        checkpoint_interval_secs: args.checkpoint_interval,
        query_memory_bytes: args.query_memory_mb.max(1).saturating_mul(1 << 20),
        sink_buffer_bytes: args.sink_buffer_kb.max(1).saturating_mul(1 << 10),
        subscriptions: eddy::views::changes::ChangeLimits {
            buffer: args.subscribe_buffer.max(1),
            retain_bytes: args.subscribe_retain_bytes,
        },
        ..Limits::default()
    };
    if let Some(p) = args.parallelism {
        limits.partitions = p.max(1);
    }
    // Kept alive for as long as the server runs.
    let _embedded_kafka = if args.embedded_kafka {
        let cluster = rdkafka::mocking::MockCluster::new(1)
            .map_err(|e| format!("cannot start the embedded Kafka broker: {e}"))?;
        let bootstrap = cluster.bootstrap_servers();
        tracing::info!(%bootstrap, "embedded Kafka broker (in memory, for trying things out) is ready");
        println!(
            "embedded Kafka broker (in memory, for trying things out; lost on exit): bootstrap.servers = {bootstrap}"
        );
        Some(cluster)
    } else {
        None
    };
    let credentials = Arc::new(
        Credentials::open(&args.data_dir, args.secrets_key_file.clone())
            .map_err(|e| e.to_string())?,
    );
    let auth = auth_mode(&args, &credentials)?;
    limits.file_root = match (&args.file_root, &auth) {
        (Some(root), _) => Some(root.clone()),
        (None, AuthMode::Password(_)) => Some(args.data_dir.join("files")),
        (None, AuthMode::Trust) => None,
    };
    if let Some(root) = &limits.file_root {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create --file-root {}: {e}", root.display()))?;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(eddy::server::tls::acceptor(cert, key)?),
        _ => None,
    };
    let engine = Arc::new(
        Engine::open_with(limits, &args.data_dir, credentials).map_err(|e| e.to_string())?,
    );
    engine.restore().await;
    // Checked before binding too, so nothing listens even briefly.
    if let Ok(a) = args.pg_addr.parse::<std::net::SocketAddr>() {
        refuse_open_trust(&auth, a, &args.auth)?;
    }
    let listener = tokio::net::TcpListener::bind(&args.pg_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.pg_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    refuse_open_trust(&auth, addr, &args.auth)?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "eddy is ready: psql -h {} -p {} -U eddy eddy", addr.ip(), addr.port());
    let http_auth = match &auth {
        AuthMode::Trust => eddy::http::HttpAuth::Trust,
        AuthMode::Password(c) => eddy::http::HttpAuth::Password(c.clone()),
    };
    let http_listener = http_listener(&args, &auth).await?;
    let config = ServerConfig {
        max_connections: args.max_connections,
        reserved_admin_connections: args.reserved_admin_connections,
        shutdown_grace: Duration::from_secs(5),
        idle_session_timeout: (args.idle_session_timeout > 0)
            .then(|| Duration::from_secs(args.idle_session_timeout)),
        auth,
        tls,
        tls_required: args.tls_required,
    };
    let checkpoints = async {
        match args.checkpoint_interval {
            0 => std::future::pending().await,
            secs => engine.checkpoint_every(Duration::from_secs(secs)).await,
        }
    };
    // One shutdown for both protocols.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let http = http_listener
        .map(|l| tokio::spawn(eddy::http::serve(l, engine.clone(), http_auth, stopped())));
    let signal = async {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    tokio::select! {
        served = serve(listener, engine.clone(), config, signal) => {
            served.map_err(|e| e.to_string())?;
        }
        () = checkpoints => {}
    }
    let _ = stop_tx.send(true);
    if let Some(http) = http {
        // Open change streams do not end by themselves: they get the grace, then go.
        if tokio::time::timeout(Duration::from_secs(5), http)
            .await
            .is_err()
        {
            tracing::info!("HTTP change streams closed at shutdown");
        }
    }
    // A last checkpoint, so a restart resumes exactly where this run stopped.
    match tokio::time::timeout(SHUTDOWN_CHECKPOINT_TIMEOUT, engine.checkpoint("shutdown")).await {
        Ok(Ok(rec)) => {
            // Exactly-once sinks commit its output now; what they do not is
            // committed after the restart (it is in the checkpoint).
            if !engine
                .sinks_committed(rec.epoch, SHUTDOWN_COMMIT_TIMEOUT)
                .await
            {
                tracing::warn!("a sink did not commit its last transaction before exit");
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "no checkpoint at shutdown"),
        Err(_) => tracing::warn!("the checkpoint at shutdown took too long; skipped"),
    }
    tracing::info!("eddy stopped");
    Ok(())
}

/// The HTTP listener `--http-addr` asks for: none when `off`; the default address when it is
/// free (else a warning and none).
async fn http_listener(
    args: &ServeArgs,
    auth: &AuthMode,
) -> Result<Option<tokio::net::TcpListener>, String> {
    let (addr, asked) = match args.http_addr.as_deref() {
        Some("off") => return Ok(None),
        Some(a) => (a, true),
        None => (DEFAULT_HTTP_ADDR, false),
    };
    if let Ok(a) = addr.parse::<std::net::SocketAddr>() {
        refuse_open_trust(auth, a, &args.auth)?;
    }
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let bound = l.local_addr().map_err(|e| e.to_string())?;
            refuse_open_trust(auth, bound, &args.auth)?;
            tracing::info!(addr = %bound, "HTTP is ready: curl -N http://{bound}/v1/views/<view>/changes");
            Ok(Some(l))
        }
        Err(e) if !asked => {
            tracing::warn!(addr, error = %e, "HTTP is off: the default address is taken (set --http-addr)");
            Ok(None)
        }
        Err(e) => Err(format!("cannot listen on {addr} for HTTP: {e}")),
    }
}

/// Where HTTP listens unless `--http-addr` says otherwise.
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:5489";

/// Refuse to serve a non-loopback address without passwords unless
/// `--auth trust` asked for exactly that.
fn refuse_open_trust(
    auth: &AuthMode,
    addr: std::net::SocketAddr,
    asked: &str,
) -> Result<(), String> {
    if matches!(auth, AuthMode::Trust) && !addr.ip().is_loopback() && asked != "trust" {
        return Err(format!(
            "refusing to listen on {addr} without authentication: anyone who can reach it \
             could change or drop everything. Set EDDY_PASSWORD (and EDDY_READER_PASSWORD for \
             a read-only user), or pass --auth trust to allow it anyway"
        ));
    }
    Ok(())
}

/// The authentication the flags and the stored users ask for. Flag users
/// are added to `credentials` (in memory).
fn auth_mode(args: &ServeArgs, credentials: &Arc<Credentials>) -> Result<AuthMode, String> {
    if let Some(p) = &args.password {
        credentials.configure_user(&args.user, p, Role::Admin);
    }
    if let Some(p) = &args.reader_password {
        if args.reader_user == args.user {
            return Err("the read-only user needs a name of its own (--reader-user)".into());
        }
        credentials.configure_user(&args.reader_user, p, Role::Reader);
    }
    let admin = credentials.has_admin();
    match args.auth.as_str() {
        "trust" => Ok(AuthMode::Trust),
        "password" if !admin => Err("--auth password needs an admin: set EDDY_PASSWORD (or \
             --password), or CREATE USER … SUPERUSER PASSWORD '…' first"
            .into()),
        _ if args.reader_password.is_some() && !admin => {
            Err("a read-only user needs an admin too: set EDDY_PASSWORD (or --password)".into())
        }
        _ if !admin => {
            if credentials.has_users() {
                tracing::warn!(
                    "users exist (eddy.users) but none is an admin, so passwords are off: \
                     set EDDY_PASSWORD to turn them on"
                );
            }
            Ok(AuthMode::Trust)
        }
        _ => Ok(AuthMode::Password(credentials.clone())),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
