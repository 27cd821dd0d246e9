//! Where views hand in their state for a checkpoint, and the history shown
//! in `eddy.checkpoints`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Epoch, ViewSnapshot};
use crate::error::{EddyError, Result};

/// Checkpoints remembered for `eddy.checkpoints`.
const HISTORY: usize = 100;

/// One checkpoint attempt, as shown in `eddy.checkpoints`.
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    /// The epoch.
    pub epoch: Epoch,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: i64,
    /// From the first barrier to the manifest being durable.
    pub duration_ms: u64,
    /// Until every source had published its barrier: the longest a source
    /// waited on the checkpoint.
    pub barrier_ms: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Views captured.
    pub views: usize,
    /// `completed` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// `manual` (`CHECKPOINT`) or `interval`.
    pub trigger: String,
}

struct Pending {
    epoch: Epoch,
    views: HashMap<String, ViewSnapshot>,
}

#[derive(Default)]
struct State {
    pending: Option<Pending>,
    history: VecDeque<CheckpointRecord>,
}

/// Collects view state for the checkpoint in progress.
#[derive(Default)]
pub struct CheckpointHub {
    state: Mutex<State>,
    deposited: Notify,
}

impl std::fmt::Debug for CheckpointHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointHub").finish()
    }
}

impl CheckpointHub {
    /// Start collecting for `epoch` (an unfinished earlier epoch is abandoned).
    pub fn begin(&self, epoch: Epoch) {
        self.state.lock().pending = Some(Pending {
            epoch,
            views: HashMap::new(),
        });
    }

    /// A view hands in its state for `epoch`. State for an abandoned epoch is dropped.
    pub fn deposit(&self, epoch: Epoch, view: &str, snapshot: ViewSnapshot) {
        let mut s = self.state.lock();
        if let Some(p) = s.pending.as_mut().filter(|p| p.epoch == epoch) {
            p.views.insert(view.to_string(), snapshot);
            drop(s);
            self.deposited.notify_waiters();
        }
    }

    /// Wait until every view in `expected` has deposited its state for
    /// `epoch`, or fail after `timeout`, or as soon as `failed` names a view
    /// that stopped (it would never deposit).
    pub async fn collect(
        &self,
        epoch: Epoch,
        expected: &[String],
        timeout: Duration,
        failed: impl Fn() -> Option<String>,
    ) -> Result<HashMap<String, ViewSnapshot>> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.deposited.notified();
            {
                let mut s = self.state.lock();
                let Some(p) = s.pending.as_mut().filter(|p| p.epoch == epoch) else {
                    return Err(EddyError::Internal(format!(
                        "checkpoint {epoch} was superseded"
                    )));
                };
                if expected.iter().all(|v| p.views.contains_key(v)) {
                    let views = std::mem::take(&mut p.views);
                    s.pending = None;
                    return Ok(views);
                }
            }
            if let Some(v) = failed() {
                self.abandon(epoch);
                return Err(EddyError::Internal(format!(
                    "materialized view \"{v}\" stopped before checkpoint {epoch} reached it"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<String> = {
                    let s = self.state.lock();
                    let have = s.pending.as_ref().map(|p| &p.views);
                    expected
                        .iter()
                        .filter(|v| !have.is_some_and(|h| h.contains_key(*v)))
                        .cloned()
                        .collect()
                };
                self.abandon(epoch);
                return Err(EddyError::Internal(format!(
                    "checkpoint {epoch} timed out after {} s waiting for {}",
                    timeout.as_secs(),
                    missing.join(", ")
                )));
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            let _ = tokio::time::timeout(wait, notified).await;
        }
    }

    /// Give up on `epoch`.
    pub fn abandon(&self, epoch: Epoch) {
        let mut s = self.state.lock();
        if s.pending.as_ref().is_some_and(|p| p.epoch == epoch) {
            s.pending = None;
        }
    }

    /// Remember a finished (or failed) attempt.
    pub fn record(&self, rec: CheckpointRecord) {
        let mut s = self.state.lock();
        if s.history.len() == HISTORY {
            s.history.pop_front();
        }
        s.history.push_back(rec);
    }

    /// Recent attempts, oldest first.
    pub fn history(&self) -> Vec<CheckpointRecord> {
        self.state.lock().history.iter().cloned().collect()
    }
}
