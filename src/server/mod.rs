//! The Postgres wire server: accept loop, connection limit, graceful shutdown.
//!
//! Connections run in a [`JoinSet`] (no detached tasks). Semaphores bound
//! concurrent connections; one over the limit is told so with SQLSTATE 53300
//! and closed. The last `reserved_admin_connections` slots are only for
//! admin users (checked on the user name of the startup message, before the
//! password), so readers cannot lock an admin out. A cancel request (sent on its own connection, as libpq does)
//! stops the statement running on the connection it names. On shutdown the listener stops, open connections get a grace
//! period to finish, then are aborted.

pub mod auth;
mod cancel;
mod copy;
mod cursor;
mod encode;
mod handler;
mod scram;
mod session;
mod settings;
mod subscribe;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{auth::StartupHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use auth::{AuthMode, ConnectionStartup};
use cancel::{CancelRegistry, Canceller};
pub use handler::{EddyHandler, Prepared};

use crate::engine::Engine;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Slots of `max_connections` that only admin users may take.
    pub reserved_admin_connections: usize,
    /// How long open connections may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Close a connection that runs no statement for this long (`None`: never).
    pub idle_session_timeout: Option<Duration>,
    /// How clients authenticate (see [`auth`]).
    pub auth: AuthMode,
    /// TLS, when a certificate is configured.
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Refuse clients that do not negotiate TLS.
    pub tls_required: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 100,
            reserved_admin_connections: 1,
            shutdown_grace: Duration::from_secs(5),
            idle_session_timeout: None,
            auth: AuthMode::Trust,
            tls: None,
            tls_required: false,
        }
    }
}

/// Per-server handlers, shared by all connections.
struct Handlers {
    handler: Arc<EddyHandler>,
    auth: AuthMode,
    tls_required: bool,
    cancels: Arc<CancelRegistry>,
    cancel: Arc<Canceller>,
    /// Backend keys (process id, secret) of password logins.
    keys: Arc<RandomPidSecretKeyGenerator>,
}

/// The handler factory pgwire gets for one connection.
struct ConnectionHandlers {
    shared: Arc<Handlers>,
    /// The connection holds a slot reserved for admins.
    reserved_slot: bool,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.shared.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.shared.handler.clone()
    }

    /// Called once per connection: the SASL exchange keeps per-connection state.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let s = &self.shared;
        Arc::new(ConnectionStartup::new(
            &s.auth,
            s.tls_required,
            self.reserved_slot,
            s.cancels.clone(),
            s.keys.clone(),
        ))
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.shared.handler.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.shared.cancel.clone()
    }
}

/// The connection slots: general ones, then those kept for admins.
struct Slots {
    general: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
}

impl Slots {
    fn new(config: &ServerConfig) -> Self {
        let reserved = config
            .reserved_admin_connections
            .min(config.max_connections.saturating_sub(1));
        Slots {
            general: Arc::new(Semaphore::new(config.max_connections - reserved)),
            reserved: Arc::new(Semaphore::new(reserved)),
        }
    }

    /// A free slot, and whether it is a reserved one; `None` when all are taken.
    fn take(&self) -> Option<(OwnedSemaphorePermit, bool)> {
        if let Ok(p) = self.general.clone().try_acquire_owned() {
            return Some((p, false));
        }
        self.reserved
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| (p, true))
    }
}

/// Serve Postgres clients on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let cancels = Arc::new(CancelRegistry::default());
    let activities = engine.sessions.clone();
    let handlers = Arc::new(Handlers {
        handler: Arc::new(EddyHandler::new(
            engine,
            activities.clone(),
            config.auth.clone(),
        )),
        auth: config.auth.clone(),
        tls_required: config.tls_required,
        cancels: cancels.clone(),
        cancel: Arc::new(Canceller(cancels)),
        keys: Arc::new(RandomPidSecretKeyGenerator::default()),
    });
    let slots = Slots::new(&config);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, addr)) => {
                    backoff = Duration::from_millis(10);
                    let _ = socket.set_nodelay(true);
                    match slots.take() {
                        Some((permit, reserved_slot)) => {
                            let h = Arc::new(ConnectionHandlers { shared: handlers.clone(), reserved_slot });
                            let (activity, tracked) = activities.track(addr);
                            let idle_timeout = config.idle_session_timeout;
                            let tls = config.tls.clone();
                            connections.spawn(async move {
                                let _permit = permit;
                                let _tracked = tracked;
                                let idle = async {
                                    match idle_timeout {
                                        Some(t) => activity.expired(t).await,
                                        None => std::future::pending().await,
                                    }
                                };
                                tokio::select! {
                                    served = pgwire::tokio::process_socket(socket, tls, h) => {
                                        if let Err(e) = served {
                                            tracing::debug!(%addr, error = %e, "connection ended with an error");
                                        }
                                    }
                                    () = idle => {
                                        tracing::info!(%addr, "closing a session idle for longer than --idle-session-timeout");
                                    }
                                }
                            });
                        }
                        None => {
                            tracing::warn!(%addr, max = config.max_connections, "connection refused: too many connections");
                            connections.spawn(refuse(socket, addr));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "shutting down: draining connections"
    );
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::info!("grace period over: closing remaining connections");
        connections.shutdown().await;
    }
    Ok(())
}

/// Tell a client over the connection limit why, in Postgres' own words, and close.
async fn refuse(mut socket: TcpStream, addr: SocketAddr) {
    // An ErrorResponse: severity FATAL, code 53300, message.
    let mut body = Vec::new();
    for (k, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        body.push(k);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    // The client first sends its startup packet; we answer regardless.
    if let Err(e) = tokio::time::timeout(Duration::from_secs(1), socket.write_all(&msg)).await {
        tracing::debug!(%addr, error = %e, "could not tell refused client");
    }
}
