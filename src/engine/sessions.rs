//! The Postgres connections of the server, what `eddy.connections` lists (as PostgreSQL's
//! `pg_stat_activity`), and idle sessions: a connection that runs no statement for
//! `--idle-session-timeout` seconds is closed, so forgotten sessions cannot
//! hold every connection slot (PostgreSQL's `idle_session_timeout`).
//!
//! Each connection has an [`Activity`]: the handler marks a statement's start
//! and end ([`Activity::busy`]) and says who runs what ([`Activity::statement`]); the
//! connection task races pgwire's message loop against [`Activity::expired`] and drops
//! the connection when it fires. A statement that is running (or a result being produced,
//! a subscription streaming) is never idle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Most characters of a statement `eddy.connections` shows.
const QUERY_SHOWN: usize = 1024;

/// Who is connected, and what they ran last.
#[derive(Debug, Default, Clone)]
pub struct Described {
    /// The user.
    pub user: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// The statement running or last run (its first [`QUERY_SHOWN`] characters).
    pub query: String,
    /// When it started (ms since the Unix epoch).
    pub query_start_ms: Option<i64>,
}

/// What one connection is doing.
#[derive(Debug)]
pub struct Activity {
    /// Where the client is.
    pub addr: SocketAddr,
    /// When the connection was accepted (ms since the Unix epoch).
    pub started_ms: i64,
    /// Who, and what.
    pub described: Mutex<Described>,
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
    /// A connection from `addr` accepted now.
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Activity {
            addr,
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            described: Mutex::new(Described::default()),
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            running: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// `user` (with `application_name`) runs `query` now.
    pub fn statement(&self, user: &str, application_name: &str, query: &str) {
        let mut d = self.described.lock();
        d.user.clear();
        d.user.push_str(user);
        d.application_name.clear();
        d.application_name.push_str(application_name);
        d.query = query.chars().take(QUERY_SHOWN).collect();
        d.query_start_ms = Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        );
    }

    /// True while a statement runs (or its rows are being sent).
    pub fn active(&self) -> bool {
        self.running.load(Ordering::Relaxed) > 0
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
        let a = Activity::new(addr);
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

    /// Every open connection, oldest first.
    pub fn all(&self) -> Vec<Arc<Activity>> {
        let mut all: Vec<_> = self.0.lock().values().cloned().collect();
        all.sort_by_key(|a| a.started_ms);
        all
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

/// The columns of `eddy.connections`.
pub fn connections_schema() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
    Arc::new(Schema::new(vec![
        Field::new("client_addr", DataType::Utf8, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("application_name", DataType::Utf8, false),
        Field::new("backend_start", ts(), false),
        Field::new("state", DataType::Utf8, false),
        Field::new("query_start", ts(), true),
        Field::new("query", DataType::Utf8, false),
    ]))
}

/// `eddy.connections`: every open Postgres connection, as `pg_stat_activity` shows them.
pub fn connections(
    all: &Activities,
) -> crate::error::Result<datafusion::arrow::record_batch::RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
    let all = all.all();
    let described: Vec<Described> = all.iter().map(|a| a.described.lock().clone()).collect();
    let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values((0..all.len()).map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|i| all[i].addr.to_string()),
        text(&|i| described[i].user.clone()),
        text(&|i| described[i].application_name.clone()),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            all.iter().map(|a| a.started_ms),
        )),
        text(&|i| if all[i].active() { "active" } else { "idle" }.to_string()),
        Arc::new(TimestampMillisecondArray::from_iter(
            described.iter().map(|d| d.query_start_ms),
        )),
        text(&|i| described[i].query.clone()),
    ];
    Ok(datafusion::arrow::record_batch::RecordBatch::try_new(
        connections_schema(),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_means_no_statement_for_the_timeout() {
        let a = Activity::new(SocketAddr::from(([127, 0, 0, 1], 1)));
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
