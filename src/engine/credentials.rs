//! Users and secrets: who may connect (`CREATE USER … PASSWORD`, or the
//! `--password` flags) and the values connectors need but no one may read
//! back (`CREATE SECRET`).
//!
//! Neither is ever kept in clear:
//! - A user's password is kept as PostgreSQL keeps it, a SCRAM-SHA-256
//!   verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`):
//!   enough to check a login, not enough to log in.
//! - A secret is sealed (ChaCha20-Poly1305) with a 256-bit key kept in its
//!   own file (`--secrets-key-file`, by default `<data-dir>/secrets.key`,
//!   created on first use), so the data dir's other files, its backups and
//!   `catalog.json` hold no secret in clear.
//!
//! Both live in `<data-dir>/credentials.json`, written atomically and
//! readable by the owner only. Users given by flags are kept in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use parking_lot::RwLock;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use serde_json::{json, Value};

use crate::error::{EddyError, Result};
use crate::sql::Statement;
use crate::storage::write_private;

/// File name inside the data dir.
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// Default name of the key file inside the data dir.
pub const KEY_FILE: &str = "secrets.key";
const FORMAT: &str = "eddy-credentials";
const VERSION: u64 = 1;
/// PBKDF2 iterations of stored passwords (SCRAM's minimum, as PostgreSQL).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Longest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

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

    fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }
}

/// A SCRAM-SHA-256 verifier (RFC 5802/7677), as PostgreSQL stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(…)")
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// HMAC-SHA-256, for the SCRAM exchange.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    hmac_sha256(key, msg)
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system RNG failing is not something to carry on from.
    if SystemRandom::new().fill(&mut out).is_err() {
        out = std::array::from_fn(|_| rand::random());
    }
    out
}

impl ScramVerifier {
    /// The verifier of `password` with a fresh random salt. The password is
    /// SASLprep-normalised first where it can be, as libpq does.
    pub fn from_password(password: &str) -> Self {
        Self::with_salt(password, &random::<16>(), SCRAM_ITERATIONS)
    }

    /// The verifier of `password` with this salt and iteration count.
    pub(crate) fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
        let normalized = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN),
            salt,
            normalized.as_bytes(),
            &mut salted,
        );
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&hmac_sha256(&salted, b"Client Key")),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A verifier no password matches, with a salt that depends only on
    /// `seed` and `user`: an unknown user looks like a known one.
    pub fn decoy(seed: &[u8; 32], user: &str) -> Self {
        let salt = hmac_sha256(seed, user.as_bytes());
        ScramVerifier {
            iterations: SCRAM_ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: random(),
            server_key: random(),
        }
    }

    /// PostgreSQL's text form.
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Read PostgreSQL's text form.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let key = |k: &str| -> Option<[u8; 32]> { B64.decode(k).ok()?.try_into().ok() };
        Some(ScramVerifier {
            iterations: iterations.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

/// One user who may log in with a password.
#[derive(Debug, Clone)]
struct User {
    role: Role,
    verifier: ScramVerifier,
}

/// A sealed secret: nonce and ciphertext (with tag).
#[derive(Debug, Clone)]
struct Sealed {
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

/// Where a user comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrigin {
    /// `--password` / `--reader-password` (or their environment variables).
    Flag,
    /// `CREATE USER`.
    Catalog,
}

impl UserOrigin {
    /// The name shown in `eddy.users`.
    pub fn name(self) -> &'static str {
        match self {
            UserOrigin::Flag => "flag",
            UserOrigin::Catalog => "create user",
        }
    }
}

#[derive(Default)]
struct State {
    configured: BTreeMap<String, User>,
    stored: BTreeMap<String, User>,
    secrets: BTreeMap<String, Sealed>,
    key: Option<LessSafeKey>,
}

/// The users and secrets of one server.
pub struct Credentials {
    /// `credentials.json`, when there is a data dir.
    path: Option<PathBuf>,
    /// The key file, when there is a data dir.
    key_path: Option<PathBuf>,
    state: RwLock<State>,
    decoy_seed: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> EddyError {
    EddyError::Internal(format!("cannot read {}: {what}", path.display()))
}

impl Credentials {
    /// Users and secrets kept in memory only (no data dir): secrets are
    /// sealed with a key that lives as long as the process.
    pub fn in_memory() -> Self {
        Credentials {
            path: None,
            key_path: None,
            state: RwLock::new(State::default()),
            decoy_seed: random(),
        }
    }

    /// Open `<data_dir>/credentials.json` (or start it). `key_file` is where
    /// the secrets' key lives (default `<data_dir>/secrets.key`).
    pub fn open(data_dir: &Path, key_file: Option<PathBuf>) -> Result<Self> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let mut state = State::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let doc: Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?;
                if doc["format"] != FORMAT || doc["version"].as_u64() != Some(VERSION) {
                    return Err(corrupt(&path, "not an eddy credentials file of version 1"));
                }
                for u in doc["users"].as_array().into_iter().flatten() {
                    let (Some(name), Some(role), Some(verifier)) = (
                        u["name"].as_str(),
                        u["role"].as_str().and_then(Role::parse),
                        u["scram"].as_str().and_then(ScramVerifier::parse),
                    ) else {
                        return Err(corrupt(&path, format!("bad user entry {u}")));
                    };
                    state
                        .stored
                        .insert(name.to_string(), User { role, verifier });
                }
                for s in doc["secrets"].as_array().into_iter().flatten() {
                    let (Some(name), Some(nonce), Some(ciphertext)) = (
                        s["name"].as_str(),
                        s["nonce"]
                            .as_str()
                            .and_then(|n| B64.decode(n).ok())
                            .and_then(|n| <[u8; 12]>::try_from(n).ok()),
                        s["sealed"].as_str().and_then(|c| B64.decode(c).ok()),
                    ) else {
                        return Err(corrupt(&path, "bad secret entry"));
                    };
                    state
                        .secrets
                        .insert(name.to_string(), Sealed { nonce, ciphertext });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(corrupt(&path, e)),
        }
        Ok(Credentials {
            path: Some(path),
            key_path: Some(key_file.unwrap_or_else(|| data_dir.join(KEY_FILE))),
            state: RwLock::new(state),
            decoy_seed: random(),
        })
    }

    /// Add a user given by a flag (kept in memory; hashed here).
    pub fn configure_user(&self, name: &str, password: &str, role: Role) {
        let user = User {
            role,
            verifier: ScramVerifier::from_password(password),
        };
        self.state.write().configured.insert(name.to_string(), user);
    }

    /// The role and verifier of `name`, if such a user exists.
    pub fn user(&self, name: &str) -> Option<(Role, ScramVerifier)> {
        let s = self.state.read();
        s.configured
            .get(name)
            .or_else(|| s.stored.get(name))
            .map(|u| (u.role, u.verifier.clone()))
    }

    /// The verifier to run an exchange with for `name`: the user's, or a
    /// decoy that fails the same way a wrong password does.
    pub fn verifier_for(&self, name: &str) -> ScramVerifier {
        self.user(name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| ScramVerifier::decoy(&self.decoy_seed, name))
    }

    /// The role of `name` if `password` is theirs (HTTP Basic authentication), checked
    /// against the stored SCRAM verifier: an unknown user costs as much as a wrong password.
    pub fn check_password(&self, name: &str, password: &str) -> Option<Role> {
        let user = self.user(name);
        let v = user
            .as_ref()
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| ScramVerifier::decoy(&self.decoy_seed, name));
        let given = ScramVerifier::with_salt(password, &v.salt, v.iterations);
        // Compared in constant time (ring's HMAC verification).
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.decoy_seed);
        let same = hmac::verify(
            &key,
            &given.stored_key,
            &hmac_sha256(&self.decoy_seed, &v.stored_key),
        );
        user.filter(|_| same.is_ok()).map(|(r, _)| r)
    }

    /// The role of `name`, if such a user exists.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.user(name).map(|(r, _)| r)
    }

    /// True when some admin can log in with a password.
    pub fn has_admin(&self) -> bool {
        let s = self.state.read();
        s.configured
            .values()
            .chain(s.stored.values())
            .any(|u| u.role == Role::Admin)
    }

    /// True when any user can log in with a password.
    pub fn has_users(&self) -> bool {
        let s = self.state.read();
        !s.configured.is_empty() || !s.stored.is_empty()
    }

    /// Every user: name, role and origin (a flag user hides a stored one).
    pub fn users(&self) -> Vec<(String, Role, UserOrigin)> {
        let s = self.state.read();
        let mut out: Vec<_> = s
            .configured
            .iter()
            .map(|(n, u)| (n.clone(), u.role, UserOrigin::Flag))
            .collect();
        out.extend(
            s.stored
                .iter()
                .filter(|(n, _)| !s.configured.contains_key(*n))
                .map(|(n, u)| (n.clone(), u.role, UserOrigin::Catalog)),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// `CREATE USER`: false when it exists and `if_not_exists` was given.
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        role: Role,
        if_not_exists: bool,
    ) -> Result<bool> {
        let mut s = self.state.write();
        if s.configured.contains_key(name) || s.stored.contains_key(name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(EddyError::Data {
                    code: "42710",
                    message: format!("role \"{name}\" already exists"),
                })
            };
        }
        let user = User {
            role,
            verifier: ScramVerifier::from_password(password),
        };
        s.stored.insert(name.to_string(), user);
        self.persist(&s).inspect_err(|_| {
            s.stored.remove(name);
        })?;
        Ok(true)
    }

    /// `ALTER USER`: a new password and/or role.
    pub fn alter_user(&self, name: &str, password: Option<&str>, role: Option<Role>) -> Result<()> {
        let mut s = self.state.write();
        if s.configured.contains_key(name) {
            return Err(flag_user(name, "altered"));
        }
        let Some(old) = s.stored.get(name).cloned() else {
            return Err(no_role(name));
        };
        let new = User {
            role: role.unwrap_or(old.role),
            verifier: password.map_or_else(|| old.verifier.clone(), ScramVerifier::from_password),
        };
        s.stored.insert(name.to_string(), new);
        self.persist(&s).inspect_err(|_| {
            s.stored.insert(name.to_string(), old);
        })
    }

    /// `DROP USER`: how many were dropped.
    pub fn drop_users(&self, names: &[String], if_exists: bool) -> Result<usize> {
        let mut s = self.state.write();
        for n in names {
            if s.configured.contains_key(n) {
                return Err(flag_user(n, "dropped"));
            }
            if !if_exists && !s.stored.contains_key(n) {
                return Err(no_role(n));
            }
        }
        let before = s.stored.clone();
        let dropped = names
            .iter()
            .filter(|n| s.stored.remove(*n).is_some())
            .count();
        self.persist(&s).inspect_err(|_| s.stored = before)?;
        Ok(dropped)
    }

    /// `CREATE SECRET`: false when it exists and `if_not_exists` was given.
    pub fn create_secret(&self, name: &str, value: &str, if_not_exists: bool) -> Result<bool> {
        let mut s = self.state.write();
        if s.secrets.contains_key(name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(EddyError::Data {
                    code: "42710",
                    message: format!("secret \"{name}\" already exists"),
                })
            };
        }
        let sealed = self.seal(&mut s, name, value)?;
        s.secrets.insert(name.to_string(), sealed);
        self.persist(&s).inspect_err(|_| {
            s.secrets.remove(name);
        })?;
        Ok(true)
    }

    /// `ALTER SECRET … AS`: a new value (connectors read it when they next start).
    pub fn alter_secret(&self, name: &str, value: &str) -> Result<()> {
        let mut s = self.state.write();
        let Some(old) = s.secrets.get(name).cloned() else {
            return Err(no_secret(name));
        };
        let sealed = self.seal(&mut s, name, value)?;
        s.secrets.insert(name.to_string(), sealed);
        self.persist(&s).inspect_err(|_| {
            s.secrets.insert(name.to_string(), old);
        })
    }

    /// `DROP SECRET` (the caller checks that no object uses them).
    pub fn drop_secrets(&self, names: &[String], if_exists: bool) -> Result<usize> {
        let mut s = self.state.write();
        if let Some(n) = names
            .iter()
            .find(|n| !if_exists && !s.secrets.contains_key(*n))
        {
            return Err(no_secret(n));
        }
        let before = s.secrets.clone();
        let dropped = names
            .iter()
            .filter(|n| s.secrets.remove(*n).is_some())
            .count();
        self.persist(&s).inspect_err(|_| s.secrets = before)?;
        Ok(dropped)
    }

    /// The names of the secrets.
    pub fn secret_names(&self) -> Vec<String> {
        self.state.read().secrets.keys().cloned().collect()
    }

    /// True when a secret of that name exists.
    pub fn has_secret(&self, name: &str) -> bool {
        self.state.read().secrets.contains_key(name)
    }

    /// A secret's value, for a connector.
    pub fn secret(&self, name: &str) -> Result<String> {
        let mut s = self.state.write();
        let sealed = s
            .secrets
            .get(name)
            .cloned()
            .ok_or_else(|| no_secret(name))?;
        let key = self.key(&mut s, false)?;
        let mut buf = sealed.ciphertext.clone();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(name.as_bytes()),
                &mut buf,
            )
            .map_err(|_| {
                EddyError::Internal(format!(
                    "cannot decrypt secret \"{name}\": the key in {} is not the one it was \
                     sealed with",
                    self.key_path_text()
                ))
            })?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| EddyError::Internal(format!("secret \"{name}\" is not UTF-8")))
    }

    fn key_path_text(&self) -> String {
        self.key_path
            .as_ref()
            .map_or("memory".into(), |p| p.display().to_string())
    }

    fn seal(&self, s: &mut State, name: &str, value: &str) -> Result<Sealed> {
        if value.len() > MAX_SECRET_BYTES {
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "secret \"{name}\" is {} bytes; at most {MAX_SECRET_BYTES} are kept",
                    value.len()
                ),
                hint: None,
            });
        }
        let key = self.key(s, true)?;
        let nonce: [u8; 12] = random();
        let mut ciphertext = value.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| EddyError::Internal("cannot seal a secret".into()))?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// The sealing key: loaded from the key file, or made (and written, when
    /// `create`) if there is none yet.
    fn key<'s>(&self, s: &'s mut State, create: bool) -> Result<&'s LessSafeKey> {
        if s.key.is_none() {
            let bytes: [u8; 32] = match &self.key_path {
                None => random(),
                Some(p) => read_or_make_key(p, create)?,
            };
            let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .map_err(|_| EddyError::Internal("bad secrets key".into()))?;
            s.key = Some(LessSafeKey::new(unbound));
        }
        s.key
            .as_ref()
            .ok_or_else(|| EddyError::Internal("secrets key missing".into()))
    }

    fn persist(&self, s: &State) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let users: Vec<Value> = s
            .stored
            .iter()
            .map(|(n, u)| json!({"name": n, "role": u.role.name(), "scram": u.verifier.encode()}))
            .collect();
        let secrets: Vec<Value> = s
            .secrets
            .iter()
            .map(|(n, x)| {
                json!({"name": n, "nonce": B64.encode(x.nonce), "sealed": B64.encode(&x.ciphertext)})
            })
            .collect();
        let doc = json!({"format": FORMAT, "version": VERSION, "users": users, "secrets": secrets});
        let bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| EddyError::Internal(format!("cannot encode credentials: {e}")))?;
        write_private(path, &bytes)
    }
}

fn read_or_make_key(path: &Path, create: bool) -> Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => B64
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                EddyError::Internal(format!(
                    "{} is not an eddy secrets key (32 bytes, base64)",
                    path.display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key: [u8; 32] = random();
            write_private(path, format!("{}\n", B64.encode(key)).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(EddyError::Internal(format!(
            "cannot read the secrets key {}: {e}",
            path.display()
        ))),
    }
}

fn no_role(name: &str) -> EddyError {
    EddyError::Data {
        code: "42704",
        message: format!("role \"{name}\" does not exist"),
    }
}

fn no_secret(name: &str) -> EddyError {
    EddyError::Data {
        code: "42704",
        message: format!("secret \"{name}\" does not exist"),
    }
}

fn flag_user(name: &str, what: &str) -> EddyError {
    EddyError::NotSupported {
        message: format!("user \"{name}\" is given by a server flag and cannot be {what} in SQL"),
        hint: Some("Change --password / --reader-password (or their EDDY_ variables).".into()),
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
            | Statement::ExplainAnalyzeView(_)
            | Statement::Session(_)
            | Statement::Cursor(_)
            | Statement::Subscribe(_)
    ) || matches!(stmt, Statement::Copy(c) if !matches!(c.direction, crate::sql::copy::CopyDirection::From { .. }));
    match role {
        Some(Role::Admin) => Ok(()),
        Some(Role::Reader) if reads => Ok(()),
        _ => Err(EddyError::InsufficientPrivilege(format!(
            "permission denied: user \"{user}\" has role {} and may only read (SELECT, SHOW, \
             DESCRIBE, EXPLAIN, SUBSCRIBE)",
            role.map_or("none", Role::name)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_matches_rfc7677_example() {
        // RFC 7677 §3: user "user", password "pencil", 4096 iterations.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = ScramVerifier::with_salt("pencil", &salt, 4096);
        // ServerSignature of the RFC's exchange, from its ServerKey.
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac(&v.server_key, auth_message.as_bytes());
        assert_eq!(
            B64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let again = ScramVerifier::parse(&v.encode()).unwrap();
        assert_eq!(again, v);
        assert!(v
            .encode()
            .starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    }

    #[test]
    fn users_and_secrets_survive_a_reopen_without_clear_text() {
        let dir = std::env::temp_dir().join(format!("eddy-cred-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Credentials::open(&dir, None).unwrap();
        assert!(c
            .create_user("alice", "pw-alice-1", Role::Reader, false)
            .unwrap());
        assert!(!c.create_user("alice", "x", Role::Admin, true).unwrap());
        assert!(c.create_secret("kafka_pw", "hunter2-value", false).unwrap());
        assert_eq!(c.secret("kafka_pw").unwrap(), "hunter2-value");
        let text = std::fs::read_to_string(dir.join(CREDENTIALS_FILE)).unwrap();
        assert!(
            !text.contains("pw-alice-1") && !text.contains("hunter2"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [CREDENTIALS_FILE, KEY_FILE] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
            }
        }
        let again = Credentials::open(&dir, None).unwrap();
        assert_eq!(again.role_of("alice"), Some(Role::Reader));
        assert_eq!(again.secret("kafka_pw").unwrap(), "hunter2-value");
        again.alter_secret("kafka_pw", "new").unwrap();
        assert_eq!(again.secret("kafka_pw").unwrap(), "new");
        // Another key cannot open it.
        std::fs::write(dir.join(KEY_FILE), B64.encode([7u8; 32])).unwrap();
        let wrong = Credentials::open(&dir, None).unwrap();
        let e = wrong.secret("kafka_pw").unwrap_err().to_string();
        assert!(e.contains("not the one it was sealed with"), "{e}");
        assert_eq!(again.drop_users(&["alice".into()], false).unwrap(), 1);
        assert_eq!(again.drop_secrets(&["kafka_pw".into()], false).unwrap(), 1);
        let e = again.drop_secrets(&["kafka_pw".into()], false).unwrap_err();
        assert_eq!(e.sqlstate(), "42704");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
