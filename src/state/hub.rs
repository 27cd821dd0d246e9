//! Where views and exactly-once sinks hand in their state for a checkpoint,
//! where sinks learn whether it completed, and the history shown in
//! `eddy.checkpoints`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::{Epoch, SinkSnapshot, ViewSnapshot};
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
    sinks: HashMap<String, SinkSnapshot>,
}

/// Everything handed in for one checkpoint.
#[derive(Debug, Default)]
pub struct Collected {
    /// View state by view name.
    pub views: HashMap<String, ViewSnapshot>,
    /// Exactly-once sink state by sink name.
    pub sinks: HashMap<String, SinkSnapshot>,
}

/// The outcome of the checkpoints decided so far. A sink that pre-committed
/// at epoch `e` commits once `last_decided >= e`, if `last_completed >= e`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decided {
    /// The newest epoch that completed or failed.
    pub last_decided: Epoch,
    /// The newest epoch that completed (its manifest is durable).
    pub last_completed: Epoch,
}

#[derive(Default)]
struct State {
    pending: Option<Pending>,
    history: VecDeque<CheckpointRecord>,
    totals: CheckpointTotals,
}

/// Every checkpoint attempt since the process started (for `/metrics`).
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckpointTotals {
    /// Attempts that completed.
    pub completed: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Bytes the completed ones wrote.
    pub bytes: u64,
    /// Their summed duration (ms).
    pub duration_ms: u64,
}

/// Collects view and sink state for the checkpoint in progress.
pub struct CheckpointHub {
    state: Mutex<State>,
    deposited: Notify,
    decided: watch::Sender<Decided>,
}

impl Default for CheckpointHub {
    fn default() -> Self {
        CheckpointHub {
            state: Mutex::default(),
            deposited: Notify::new(),
            decided: watch::Sender::new(Decided::default()),
        }
    }
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
            sinks: HashMap::new(),
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

    /// An exactly-once sink hands in its state for `epoch`.
    pub fn deposit_sink(&self, epoch: Epoch, sink: &str, snapshot: SinkSnapshot) {
        let mut s = self.state.lock();
        if let Some(p) = s.pending.as_mut().filter(|p| p.epoch == epoch) {
            p.sinks.insert(sink.to_string(), snapshot);
            drop(s);
            self.deposited.notify_waiters();
        }
    }

    /// Publish that `epoch` completed (its manifest is durable) or failed.
    pub fn decide(&self, epoch: Epoch, completed: bool) {
        self.decided.send_modify(|d| {
            d.last_decided = d.last_decided.max(epoch);
            if completed {
                d.last_completed = d.last_completed.max(epoch);
            }
        });
    }

    /// Follow checkpoint outcomes.
    pub fn decisions(&self) -> watch::Receiver<Decided> {
        self.decided.subscribe()
    }

    /// Wait until every view in `views` and every sink in `sinks` has
    /// deposited its state for `epoch`, or fail after `timeout`, or as soon
    /// as `failed` describes one that stopped (it would never deposit), e.g.
    /// `materialized view "v"`.
    pub async fn collect(
        &self,
        epoch: Epoch,
        views: &[String],
        sinks: &[String],
        timeout: Duration,
        failed: impl Fn() -> Option<String>,
    ) -> Result<Collected> {
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
                if views.iter().all(|v| p.views.contains_key(v))
                    && sinks.iter().all(|k| p.sinks.contains_key(k))
                {
                    let got = Collected {
                        views: std::mem::take(&mut p.views),
                        sinks: std::mem::take(&mut p.sinks),
                    };
                    s.pending = None;
                    return Ok(got);
                }
            }
            if let Some(v) = failed() {
                self.abandon(epoch);
                return Err(EddyError::Internal(format!(
                    "{v} stopped before checkpoint {epoch} reached it"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<String> = {
                    let s = self.state.lock();
                    let p = s.pending.as_ref();
                    let missing_views = views
                        .iter()
                        .filter(|v| !p.is_some_and(|p| p.views.contains_key(*v)));
                    let missing_sinks = sinks
                        .iter()
                        .filter(|k| !p.is_some_and(|p| p.sinks.contains_key(*k)));
                    missing_views.chain(missing_sinks).cloned().collect()
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
        if rec.status == "completed" {
            s.totals.completed += 1;
            s.totals.bytes += rec.bytes;
            s.totals.duration_ms += rec.duration_ms;
        } else {
            s.totals.failed += 1;
        }
        if s.history.len() == HISTORY {
            s.history.pop_front();
        }
        s.history.push_back(rec);
    }

    /// Every attempt since the process started.
    pub fn totals(&self) -> CheckpointTotals {
        self.state.lock().totals
    }

    /// Recent attempts, oldest first.
    pub fn history(&self) -> Vec<CheckpointRecord> {
        self.state.lock().history.iter().cloned().collect()
    }
}
