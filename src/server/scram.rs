//! SCRAM-SHA-256 login (RFC 5802, RFC 7677) against stored verifiers.
//!
//! pgwire's own SCRAM handler needs the salted password, which is as good as
//! the password for logging in; eddy keeps only PostgreSQL's verifier
//! (`StoredKey`, `ServerKey`), so the exchange is run here. Channel binding
//! (`SCRAM-SHA-256-PLUS`) is not offered; a client that supports it says so
//! with the `y` flag, which is accepted, as PostgreSQL does when it offers none.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, LoginInfo,
    StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::engine::credentials::{hmac, sha256, Credentials, ScramVerifier};

/// The one mechanism offered.
const MECHANISM: &str = "SCRAM-SHA-256";

/// Where one connection's exchange is.
enum Exchange {
    /// Waiting for the startup message.
    Initial,
    /// Mechanisms sent; waiting for the client-first message.
    Started,
    /// Server-first sent; waiting for the client-final message.
    ServerFirstSent(Box<Pending>),
    /// Over (either way).
    Done,
}

struct Pending {
    user: String,
    verifier: ScramVerifier,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// The startup handler of one connection that logs in with a password.
pub struct ScramStartup {
    credentials: Arc<Credentials>,
    keys: Arc<dyn PidSecretKeyGenerator>,
    exchange: Mutex<Exchange>,
}

impl ScramStartup {
    /// A handler checking logins against `credentials`.
    pub fn new(credentials: Arc<Credentials>, keys: Arc<dyn PidSecretKeyGenerator>) -> Self {
        ScramStartup {
            credentials,
            keys,
            exchange: Mutex::new(Exchange::Initial),
        }
    }
}

fn invalid(what: &str) -> PgWireError {
    PgWireError::InvalidScramMessage(what.to_string())
}

/// `(gs2 header, client-first-message-bare, client nonce)` of a client-first message.
fn parse_client_first(msg: &str) -> PgWireResult<(String, String, String)> {
    let mut parts = msg.splitn(3, ',');
    let (Some(cb), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("malformed client-first message"));
    };
    match cb {
        "n" | "y" => {}
        _ if cb.starts_with("p=") => {
            return Err(invalid(
                "channel binding was not offered (use SCRAM-SHA-256 without -PLUS)",
            ))
        }
        _ => return Err(invalid("malformed GS2 header")),
    }
    if !authzid.is_empty() {
        return Err(invalid("an authorization identity is not supported"));
    }
    let nonce = bare
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
        .ok_or_else(|| invalid("client-first message has no nonce"))?;
    if !bare.starts_with("n=") {
        return Err(invalid("client-first message has no user name attribute"));
    }
    Ok((
        format!("{cb},{authzid},"),
        bare.to_string(),
        nonce.to_string(),
    ))
}

/// Constant-time equality of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Pending {
    /// Check the client-final message; the server-final message when the proof holds.
    fn finish(&self, msg: &str) -> PgWireResult<String> {
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| invalid("client-final message has no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| invalid("client-final message has no channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| invalid("client-final message has no nonce"))?;
        if binding != B64.encode(&self.gs2_header) {
            return Err(invalid("channel binding mismatch"));
        }
        if nonce != self.nonce {
            return Err(invalid("nonce mismatch"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| invalid("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(PgWireError::InvalidPassword(self.user.clone()));
        }
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        if !same(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(PgWireError::InvalidPassword(self.user.clone()));
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[async_trait]
impl StartupHandler for ScramStartup {
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
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                *self.exchange.lock() = Exchange::Started;
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.to_string()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let step = std::mem::replace(&mut *self.exchange.lock(), Exchange::Done);
                match step {
                    Exchange::Started => {
                        let first = msg.into_sasl_initial_response()?;
                        if first.auth_method != MECHANISM {
                            return Err(PgWireError::UnsupportedSASLAuthMethod(first.auth_method));
                        }
                        let data = first.data.unwrap_or_default();
                        let text = std::str::from_utf8(&data)
                            .map_err(|_| invalid("client-first message is not UTF-8"))?;
                        let (gs2_header, client_first_bare, client_nonce) =
                            parse_client_first(text)?;
                        let login = LoginInfo::from_client_info(client);
                        let user = login.user().unwrap_or_default().to_string();
                        let verifier = self.credentials.verifier_for(&user);
                        let ours: [u8; 18] = rand::random();
                        let nonce = format!("{client_nonce}{}", B64.encode(ours));
                        let server_first = format!(
                            "r={nonce},s={},i={}",
                            B64.encode(&verifier.salt),
                            verifier.iterations
                        );
                        *self.exchange.lock() = Exchange::ServerFirstSent(Box::new(Pending {
                            user,
                            verifier,
                            gs2_header,
                            client_first_bare,
                            server_first: server_first.clone(),
                            nonce,
                        }));
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(server_first.into()),
                            ))
                            .await?;
                    }
                    Exchange::ServerFirstSent(pending) => {
                        let last = msg.into_sasl_response()?;
                        let text = std::str::from_utf8(&last.data)
                            .map_err(|_| invalid("client-final message is not UTF-8"))?;
                        let server_final = pending.finish(text)?;
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(server_final.into()),
                            ))
                            .await?;
                        let (pid, secret) = self.keys.generate(client);
                        client.set_pid_and_secret_key(pid, secret);
                        finish_authentication(client, &super::auth::server_parameters()).await?;
                    }
                    Exchange::Initial | Exchange::Done => {
                        return Err(PgWireError::InvalidSASLState);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_exchange_verifies() {
        // RFC 7677 §3's exchange, checked against a verifier of "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = Credentials::in_memory();
        let (gs2, bare, nonce) = parse_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let full = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(nonce, "rOprNGfwEbeRWgbNEkqO");
        let verifier = ScramVerifier::with_salt("pencil", &salt, 4096);
        let pending = Pending {
            user: "user".into(),
            verifier,
            gs2_header: gs2,
            client_first_bare: bare,
            server_first: format!("r={full},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            nonce: full.into(),
        };
        let final_msg = format!("c=biws,r={full},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(
            pending.finish(&final_msg).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // A wrong proof, a wrong nonce and a wrong binding all fail.
        let bad_proof = format!("c=biws,r={full},p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert!(matches!(
            pending.finish(&bad_proof),
            Err(PgWireError::InvalidPassword(_))
        ));
        assert!(pending
            .finish("c=biws,r=other,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .is_err());
        assert!(pending
            .finish(&format!(
                "c=eSws,r={full},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
            ))
            .is_err());
        // An unknown user gets a stable salt, as a known one has.
        assert_eq!(
            creds.verifier_for("ghost").salt,
            creds.verifier_for("ghost").salt
        );
        assert!(parse_client_first("p=tls-server-end-point,,n=,r=abc").is_err());
        assert!(parse_client_first("n,a=admin,n=,r=abc").is_err());
        assert!(parse_client_first("n,,n=,r=").is_err());
    }

    proptest::proptest! {
        /// Whatever a client sends, the exchange answers with an error or a
        /// verdict, never a panic.
        #[test]
        fn any_client_message_is_answered(first in ".{0,80}", last in ".{0,120}") {
            if let Ok((gs2_header, client_first_bare, nonce)) = parse_client_first(&first) {
                let pending = Pending {
                    user: "u".into(),
                    verifier: ScramVerifier::from_password("pw"),
                    gs2_header,
                    client_first_bare,
                    server_first: format!("r={nonce}x,s=c2FsdA==,i=4096"),
                    nonce: format!("{nonce}x"),
                };
                let _ = pending.finish(&last);
                let _ = pending.finish(&format!("c=biws,r={nonce}x,p={last}"));
            }
        }
    }
}
