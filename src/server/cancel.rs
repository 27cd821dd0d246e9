//! Cancel requests: a client (psql's Ctrl-C, a driver's `cancel()`) opens a
//! second connection and sends its backend key; the statement running on the
//! connection with that key stops with 57014.
//!
//! pgwire's own mechanism races the whole handler against the request and
//! drops it midway, which is unsafe for statements that change the catalog
//! or log rows. Here a request only bumps a per-connection counter; the
//! statement's [`crate::engine::interrupt::Interrupt`] watches it at the
//! points where stopping is safe, including while rows are being sent.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::ClientInfo;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

/// (process id, secret key bytes) of a connection.
type Key = (i32, Vec<u8>);

fn key(pid: i32, secret: &SecretKey) -> Key {
    (pid, secret.to_bytes().to_vec())
}

/// Cancel counters of the open connections, by backend key.
#[derive(Default)]
pub struct CancelRegistry {
    connections: Mutex<HashMap<Key, watch::Sender<u64>>>,
}

/// A connection's cancel counter: how many cancel requests it has received.
pub struct CancelCounter(pub watch::Receiver<u64>);

/// Unregisters a connection when its session ends (kept in the session).
struct Registered {
    registry: Arc<CancelRegistry>,
    key: Key,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.connections.lock().remove(&self.key);
    }
}

impl CancelRegistry {
    /// Register `client` (after its backend key is set) and keep its counter
    /// in the session's extensions.
    pub fn register<C: ClientInfo>(self: &Arc<Self>, client: &C) {
        let (pid, secret) = client.pid_and_secret_key();
        let key = key(pid, &secret);
        let (tx, rx) = watch::channel(0u64);
        self.connections.lock().insert(key.clone(), tx);
        let ext = client.session_extensions();
        ext.insert(CancelCounter(rx));
        ext.insert(Registered {
            registry: self.clone(),
            key,
        });
    }

    /// Count a cancel request for the connection with this key; false if
    /// there is none (a wrong key is ignored, as PostgreSQL does).
    pub fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        match self.connections.lock().get(&key(pid, secret)) {
            Some(tx) => {
                tx.send_modify(|n| *n += 1);
                true
            }
            None => false,
        }
    }
}

/// The cancel handler pgwire calls for a `CancelRequest`.
pub struct Canceller(pub Arc<CancelRegistry>);

#[async_trait]
impl CancelHandler for Canceller {
    async fn on_cancel_request(&self, request: CancelRequest) {
        if !self.0.cancel(request.pid, &request.secret_key) {
            tracing::debug!(pid = request.pid, "cancel request for no known connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_bumps_only_its_connection() {
        let r = Arc::new(CancelRegistry::default());
        let (tx, rx) = watch::channel(0u64);
        r.connections.lock().insert(key(7, &SecretKey::I32(42)), tx);
        assert!(!r.cancel(7, &SecretKey::I32(41)));
        assert!(!r.cancel(8, &SecretKey::I32(42)));
        assert_eq!(*rx.borrow(), 0);
        assert!(r.cancel(7, &SecretKey::I32(42)));
        assert_eq!(*rx.borrow(), 1);
    }
}
