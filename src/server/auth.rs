//! Who may connect, and what they may do.
//!
//! - **Trust**: no passwords. Only on a loopback address, unless asked for
//!   with `--auth trust` (then anyone who can reach the port is an admin).
//! - **Password**: SCRAM-SHA-256 ([`super::scram`]) for the users given by
//!   `--password` / `EDDY_PASSWORD` (role `admin`) and `--reader-password` /
//!   `EDDY_READER_PASSWORD` (role `reader`), and those made with `CREATE USER`
//!   (see [`crate::engine::credentials`]). Passwords are kept only as SCRAM
//!   verifiers, as PostgreSQL keeps them.
//!
//! An `admin` may do anything; a `reader` may only read: `SELECT`, `SHOW`,
//! `DESCRIBE`, `EXPLAIN` and session settings (42501 otherwise).
//!
//! With `--tls-required`, a client that did not negotiate TLS is refused
//! (28000) before it authenticates.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::cancel::CancelRegistry;
use super::scram::ScramStartup;
use crate::engine::credentials::Credentials;

pub use crate::engine::credentials::{check_privilege, Role};

/// How clients authenticate.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// No passwords; everyone is an admin.
    Trust,
    /// SCRAM-SHA-256 against these users (flags and `CREATE USER`).
    Password(Arc<Credentials>),
}

impl AuthMode {
    /// The role of the connected `user` (everyone is an admin under trust).
    pub fn role_of(&self, user: Option<&str>) -> Option<Role> {
        match self {
            AuthMode::Trust => Some(Role::Admin),
            AuthMode::Password(c) => user.and_then(|u| c.role_of(u)),
        }
    }
}

/// Accepts any user (trust mode).
struct Trust {
    keys: Arc<dyn PidSecretKeyGenerator>,
}

#[async_trait]
impl StartupHandler for Trust {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, secret) = self.keys.generate(client);
            client.set_pid_and_secret_key(pid, secret);
            finish_authentication(client, &server_parameters()).await?;
        }
        Ok(())
    }
}

/// The parameters a client receives at startup: pgwire's, with eddy's `server_version`
/// (psql and drivers read it to choose their catalog queries).
pub(super) fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = crate::functions::settings::server_version();
    p
}

/// The startup phase of one connection: TLS requirement, authentication,
/// then registration for cancel requests.
pub struct ConnectionStartup {
    inner: Inner,
    tls_required: bool,
    /// Who the connection's slot is for: `Some` on a slot reserved for admins.
    reserved_for: Option<AuthMode>,
    cancels: Arc<CancelRegistry>,
    registered: AtomicBool,
}

enum Inner {
    Trust(Trust),
    Scram(Box<ScramStartup>),
}

impl ConnectionStartup {
    /// The startup handler for a new connection.
    pub fn new(
        mode: &AuthMode,
        tls_required: bool,
        reserved_slot: bool,
        cancels: Arc<CancelRegistry>,
        keys: Arc<dyn PidSecretKeyGenerator>,
    ) -> Self {
        let inner = match mode {
            AuthMode::Trust => Inner::Trust(Trust { keys }),
            AuthMode::Password(c) => Inner::Scram(Box::new(ScramStartup::new(c.clone(), keys))),
        };
        ConnectionStartup {
            inner,
            tls_required,
            reserved_for: reserved_slot.then(|| mode.clone()),
            cancels,
            registered: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl StartupHandler for ConnectionStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server requires SSL (--tls-required): connect with sslmode=require".into(),
            ))));
        }
        if let (Some(mode), PgWireFrontendMessage::Startup(startup)) =
            (&self.reserved_for, &message)
        {
            let user = startup.parameters.get("user").map(String::as_str);
            if mode.role_of(user) != Some(Role::Admin) {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "53300".into(),
                    "remaining connection slots are reserved for admin users \
                     (--reserved-admin-connections)"
                        .into(),
                ))));
            }
        }
        match &self.inner {
            Inner::Trust(t) => t.on_startup(client, message).await?,
            Inner::Scram(s) => s.on_startup(client, message).await?,
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            && !self.registered.swap(true, Ordering::Relaxed)
        {
            self.cancels.register(client);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_only_read() {
        let q = crate::sql::parse("SELECT 1; INSERT INTO t VALUES (1); DROP TABLE t; SHOW TABLES")
            .unwrap();
        let allowed: Vec<bool> = q
            .iter()
            .map(|s| check_privilege(Some(Role::Reader), "r", s).is_ok())
            .collect();
        assert_eq!(allowed, vec![true, false, false, true]);
        let e = check_privilege(Some(Role::Reader), "r", &q[1]).unwrap_err();
        assert_eq!(e.sqlstate(), "42501");
        assert!(q
            .iter()
            .all(|s| check_privilege(Some(Role::Admin), "a", s).is_ok()));
        assert!(check_privilege(None, "x", &q[0]).is_err());
    }
}
