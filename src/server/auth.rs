//! Who may connect, and what they may do.
//!
//! - **Trust**: no passwords. Only on a loopback address, unless asked for
//!   with `--auth trust` (then anyone who can reach the port is an admin).
//! - **Password**: SCRAM-SHA-256 (pgwire's SASL handler) for the users given
//!   by `--password` / `EDDY_PASSWORD` (role `admin`) and `--reader-password`
//!   / `EDDY_READER_PASSWORD` (role `reader`). Passwords are kept only as
//!   salted PBKDF2 hashes, in memory.
//!
//! An `admin` may do anything; a `reader` may only read: `SELECT`, `SHOW`,
//! `DESCRIBE`, `EXPLAIN` and session settings (42501 otherwise).
//!
//! With `--tls-required`, a client that did not negotiate TLS is refused
//! (28000) before it authenticates.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::cancel::CancelRegistry;
use crate::error::{EddyError, Result};
use crate::sql::Statement;

/// PBKDF2 iterations of stored passwords (SCRAM's minimum, as PostgreSQL).
const SCRAM_ITERATIONS: usize = 4096;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Anything, including changing the catalog and inserting.
    Admin,
    /// Reading only.
    Reader,
}

impl Role {
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }
}

/// One user: a role and a salted password hash.
#[derive(Debug)]
struct User {
    role: Role,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

/// The users who may connect with a password.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, User>,
}

impl Users {
    /// Add (or replace) a user; the password is hashed here and not kept.
    pub fn add(&mut self, name: &str, password: &str, role: Role) {
        let salt: [u8; 16] = rand::random();
        self.by_name.insert(
            name.to_string(),
            User {
                role,
                salted_password: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
                salt: salt.to_vec(),
            },
        );
    }

    /// True when no user is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The role of `name`, if such a user exists.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.by_name.get(name).map(|u| u.role)
    }
}

/// How clients authenticate.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// No passwords; everyone is an admin.
    Trust,
    /// SCRAM-SHA-256 against these users.
    Password(Arc<Users>),
}

impl AuthMode {
    /// The role of the connected `user` (everyone is an admin under trust).
    pub fn role_of(&self, user: Option<&str>) -> Option<Role> {
        match self {
            AuthMode::Trust => Some(Role::Admin),
            AuthMode::Password(users) => user.and_then(|u| users.role_of(u)),
        }
    }
}

/// Refuse `stmt` unless `role` may run it (42501).
pub fn check_privilege(role: Option<Role>, user: &str, stmt: &Statement) -> Result<()> {
    let reads = matches!(
        stmt,
        Statement::Query(..)
            | Statement::ShowObjects(_)
            | Statement::ShowCreate(..)
            | Statement::Describe(_)
            | Statement::ExplainView(_)
            | Statement::Session(_)
    );
    match role {
        Some(Role::Admin) => Ok(()),
        Some(Role::Reader) if reads => Ok(()),
        _ => Err(EddyError::InsufficientPrivilege(format!(
            "permission denied: user \"{user}\" has role {} and may only read (SELECT, SHOW, \
             DESCRIBE, EXPLAIN)",
            role.map_or("none", Role::name)
        ))),
    }
}

/// Looks up SCRAM secrets. An unknown user gets a random secret, so the
/// exchange fails the same way as a wrong password (no probing for names).
#[derive(Debug)]
struct Secrets(Arc<Users>);

#[async_trait]
impl AuthSource for Secrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().and_then(|u| self.0.by_name.get(u));
        Ok(match user {
            Some(u) => Password::new(Some(u.salt.clone()), u.salted_password.clone()),
            None => {
                let salt: [u8; 16] = rand::random();
                let secret: [u8; 32] = rand::random();
                Password::new(Some(salt.to_vec()), secret.to_vec())
            }
        })
    }
}

/// Accepts any user (trust mode).
struct Trust;

impl NoopStartupHandler for Trust {}

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
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

impl ConnectionStartup {
    /// The startup handler for a new connection.
    pub fn new(
        mode: &AuthMode,
        tls_required: bool,
        reserved_slot: bool,
        cancels: Arc<CancelRegistry>,
    ) -> Self {
        let inner = match mode {
            AuthMode::Trust => Inner::Trust(Trust),
            AuthMode::Password(users) => {
                let mut scram = ScramAuth::new(Arc::new(Secrets(users.clone())));
                scram.set_iterations(SCRAM_ITERATIONS);
                Inner::Scram(Box::new(
                    SASLAuthStartupHandler::new(
                        Arc::new(DefaultServerParameterProvider::default()),
                    )
                    .with_scram(scram),
                ))
            }
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

    #[test]
    fn passwords_are_kept_hashed() {
        let mut users = Users::default();
        users.add("alice", "s3cret", Role::Reader);
        let u = &users.by_name["alice"];
        assert_eq!(u.salted_password.len(), 32);
        assert!(!u.salted_password.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(users.role_of("alice"), Some(Role::Reader));
        assert_eq!(users.role_of("bob"), None);
    }
}
