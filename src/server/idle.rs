//! Idle sessions: a connection that runs no statement for
//! `--idle-session-timeout` seconds is closed, so forgotten sessions cannot
//! hold every connection slot (PostgreSQL's `idle_session_timeout`).
//!
//! Each connection has an [`Activity`]: the handler marks a statement's start
//! and end ([`Activity::busy`]); the connection task races pgwire's message
//! loop against [`Activity::expired`] and drops the connection when it fires.
//! A statement that is running (or a result being produced) is never idle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// What one connection is doing.
#[derive(Debug)]
pub struct Activity {
    /// When the connection was accepted.
    origin: Instant,
    /// Milliseconds after `origin` that the last statement ended.
    last_ms: AtomicU64,
    /// Statements running now.
    running: AtomicUsize,
}

/// Marks a statement running until dropped.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            running: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Mark a statement running (until the guard is dropped).
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    /// Resolves once the connection has run no statement for `timeout`.
    pub async fn expired(&self, timeout: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + timeout;
            if Instant::now() >= due && self.running.load(Ordering::Relaxed) == 0 {
                return;
            }
            let wake = if Instant::now() >= due {
                Instant::now() + timeout.min(Duration::from_secs(1))
            } else {
                due
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// The [`Activity`] of every open connection, by peer address, so the
/// handler (which sees only the client) finds the one its connection task
/// watches.
#[derive(Default)]
pub struct Activities(Mutex<HashMap<SocketAddr, Arc<Activity>>>);

impl Activities {
    /// Track a new connection from `addr`; untracked again when the guard drops.
    pub fn track(self: &Arc<Self>, addr: SocketAddr) -> (Arc<Activity>, Tracked) {
        let a = Activity::new();
        self.0.lock().insert(addr, a.clone());
        (
            a,
            Tracked {
                all: self.clone(),
                addr,
            },
        )
    }

    /// The activity of the connection from `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<Activity>> {
        self.0.lock().get(addr).cloned()
    }
}

/// Stops tracking a connection when dropped.
pub struct Tracked {
    all: Arc<Activities>,
    addr: SocketAddr,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.all.0.lock().remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_means_no_statement_for_the_timeout() {
        let a = Activity::new();
        let t = Duration::from_millis(100);
        // A statement running for longer than the timeout keeps the session alive.
        let busy = a.busy();
        let expired = tokio::time::timeout(Duration::from_millis(350), a.expired(t)).await;
        assert!(expired.is_err());
        drop(busy);
        let start = Instant::now();
        a.expired(t).await;
        assert!(start.elapsed() >= t);
    }
}
