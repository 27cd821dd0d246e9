//! A view's changes as clients see them (`SUBSCRIBE`): each change batch the view applies gets
//! a position, the newest are kept for a resume (`AS OF`), and every client subscriber has a
//! bounded buffer. A subscriber that falls behind is cut off, never waited for: the view and
//! the other subscribers go on, and the client may resume from the last position it saw.
//!
//! Positions are the microseconds since the Unix epoch when the view applied the change, made
//! strictly increasing and checkpointed with the view's rows. After a restart a view goes on
//! from its checkpoint's position, and new positions are later than any sent before the
//! restart (the clock moved on), so a position the checkpoint does not cover (changes the
//! view made after it, made again after the restart) is told apart and refused, rather than
//! resumed with duplicates.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::error::{EddyError, Result};
use crate::types::Changes;

/// What a client subscriber receives.
#[derive(Debug, Clone)]
pub enum Event {
    /// Changes the view applied at `position`.
    Data {
        /// The position.
        position: i64,
        /// The rows and their weights.
        changes: Changes,
    },
    /// Every change up to `position` has been sent; the view's event-time watermark.
    Progress {
        /// The position.
        position: i64,
        /// The watermark (ns), if the view has one.
        watermark: Option<i64>,
    },
}

/// Why a subscriber's stream ended.
#[derive(Debug, Clone)]
pub enum Ended {
    /// It fell behind by more than its buffer.
    Lagged,
    /// The view was dropped.
    Dropped,
    /// The view was replaced by a definition with other operators (rebuilt).
    Replaced,
    /// The view failed.
    Failed(String),
}

/// Limits of a view's client subscriptions.
#[derive(Debug, Clone, Copy)]
pub struct ChangeLimits {
    /// Change batches a subscriber may have waiting before it is cut off.
    pub buffer: usize,
    /// Bytes of the newest changes kept for resumes.
    pub retain_bytes: usize,
}

impl Default for ChangeLimits {
    fn default() -> Self {
        ChangeLimits {
            buffer: 1024,
            retain_bytes: 16 << 20,
        }
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the view's rows now, as inserts.
    Snapshot,
    /// With the next change.
    Now,
    /// After this position (one the client saw).
    After(i64),
}

/// What `eddy.subscriptions` shows of one subscriber.
#[derive(Debug)]
pub struct SubscriberInfo {
    /// Unique in this process.
    pub id: u64,
    /// How it reads: `rows`, `copy`, `cursor` (pgwire), `sse`, `websocket` (HTTP).
    pub via: &'static str,
    /// When it started (ms since the Unix epoch).
    pub started_ms: i64,
    /// Rows sent so far.
    pub rows_sent: std::sync::atomic::AtomicU64,
    /// The position of the last rows sent.
    pub position: std::sync::atomic::AtomicI64,
}

static NEXT_SUBSCRIBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One subscriber as `eddy.subscriptions` lists it.
#[derive(Debug, Clone)]
pub struct SubscriberRow {
    /// Its figures.
    pub info: Arc<SubscriberInfo>,
    /// Change batches waiting in its buffer.
    pub buffered: usize,
}

/// One client's end of a subscription.
pub struct Receiver {
    /// Its figures (updated as rows are sent).
    pub info: Arc<SubscriberInfo>,
    /// Events to send first (a snapshot, or retained changes), then a progress event.
    pub initial: Vec<Event>,
    /// Live events.
    pub rx: mpsc::Receiver<Event>,
    /// Why it ended, once it has.
    pub ended: Arc<Mutex<Option<Ended>>>,
    /// The buffer it has.
    pub buffer: usize,
    /// The view's watermark (ns) when it started, if it has one.
    pub watermark: Option<i64>,
}

struct Client {
    tx: mpsc::Sender<Event>,
    ended: Arc<Mutex<Option<Ended>>>,
    info: Arc<SubscriberInfo>,
}

/// A view's positions, retained changes and client subscribers.
pub struct ChangeLog {
    limits: ChangeLimits,
    /// The last position given.
    last: i64,
    /// The retained changes cover every change after this position.
    base: i64,
    history: VecDeque<(i64, Changes, usize)>,
    history_bytes: usize,
    clients: Vec<Client>,
    /// Set when the view is gone: new subscriptions are refused.
    closed: Option<Ended>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl ChangeLog {
    /// A log for a new view: its first position is now.
    pub fn new(limits: ChangeLimits) -> Self {
        let now = now_micros();
        ChangeLog {
            limits,
            last: now,
            base: now,
            history: VecDeque::new(),
            history_bytes: 0,
            clients: Vec::new(),
            closed: None,
        }
    }

    /// Go on from a checkpoint taken at `position`.
    pub fn restore(&mut self, position: i64) {
        self.last = position;
        self.base = position;
        self.history.clear();
        self.history_bytes = 0;
    }

    /// The last position given: the view's rows are as of it.
    pub fn position(&self) -> i64 {
        self.last
    }

    /// Client subscribers now (not counting those gone since the last change).
    pub fn subscribers(&self) -> usize {
        self.clients.iter().filter(|c| !c.tx.is_closed()).count()
    }

    /// The subscribers now, for `eddy.subscriptions`.
    pub fn subscriber_rows(&self) -> Vec<SubscriberRow> {
        self.clients
            .iter()
            .filter(|c| !c.tx.is_closed())
            .map(|c| SubscriberRow {
                info: c.info.clone(),
                buffered: c.tx.max_capacity() - c.tx.capacity(),
            })
            .collect()
    }

    /// The view applied `changes`: give them a position, keep them, send them.
    pub fn record(&mut self, changes: &Changes) {
        self.last = (self.last + 1).max(now_micros());
        let bytes = changes.batch.get_array_memory_size();
        self.history.push_back((self.last, changes.clone(), bytes));
        self.history_bytes += bytes;
        while self.history_bytes > self.limits.retain_bytes {
            let Some((position, _, bytes)) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= bytes;
            self.base = position;
        }
        if !self.clients.is_empty() {
            self.send(Event::Data {
                position: self.last,
                changes: changes.clone(),
            });
        }
    }

    /// Tell subscribers how far the view has come.
    pub fn progress(&mut self, watermark: Option<i64>) {
        if !self.clients.is_empty() {
            self.send(Event::Progress {
                position: self.last,
                watermark,
            });
        }
    }

    /// Send to every subscriber without waiting: one whose buffer is full is cut off.
    fn send(&mut self, event: Event) {
        self.clients.retain(|c| match c.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                *c.ended.lock() = Some(Ended::Lagged);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// The view is gone: end every subscription, refuse new ones.
    pub fn close(&mut self, why: Ended) {
        for c in self.clients.drain(..) {
            *c.ended.lock() = Some(why.clone());
        }
        self.closed = Some(why);
    }

    /// A new subscriber of view `view`. `snapshot` gives the view's rows (called only for
    /// [`Start::Snapshot`]); the caller holds the view's rows locked so that no change comes
    /// between them and the subscription.
    pub fn subscribe(
        &mut self,
        view: &str,
        start: Start,
        via: &'static str,
        watermark: Option<i64>,
        snapshot: impl FnOnce() -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>>,
    ) -> Result<Receiver> {
        match &self.closed {
            Some(Ended::Failed(e)) => {
                return Err(EddyError::Execution(format!(
                    "materialized view \"{view}\" failed: {e}"
                )))
            }
            Some(_) => {
                return Err(EddyError::UndefinedObject(format!(
                    "materialized view \"{view}\" does not exist"
                )))
            }
            None => {}
        }
        let mut initial = match start {
            // One batch: every event of a subscription is all the changes at its position.
            Start::Snapshot => {
                let rows = snapshot()?;
                match rows.first() {
                    None => Vec::new(),
                    Some(b) => vec![Event::Data {
                        position: self.last,
                        changes: Changes::inserts(datafusion::arrow::compute::concat_batches(
                            &b.schema(),
                            &rows,
                        )?),
                    }],
                }
            }
            Start::Now => Vec::new(),
            Start::After(p) => self.after(view, p)?,
        };
        initial.push(Event::Progress {
            position: self.last,
            watermark,
        });
        let (tx, rx) = mpsc::channel(self.limits.buffer);
        let ended = Arc::new(Mutex::new(None));
        let info = Arc::new(SubscriberInfo {
            id: NEXT_SUBSCRIBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            via,
            started_ms: now_micros() / 1000,
            rows_sent: Default::default(),
            position: Default::default(),
        });
        self.clients.push(Client {
            tx,
            ended: ended.clone(),
            info: info.clone(),
        });
        Ok(Receiver {
            info,
            initial,
            rx,
            ended,
            buffer: self.limits.buffer,
            watermark,
        })
    }

    /// The retained changes after position `p`, if `p` is one this log can resume from.
    fn after(&self, view: &str, p: i64) -> Result<Vec<Event>> {
        let known = p == self.base
            || p == self.last
            || self
                .history
                .binary_search_by_key(&p, |(q, _, _)| *q)
                .is_ok();
        if !known {
            let message = if p < self.base {
                format!(
                    "position {p} of materialized view \"{view}\" is no longer kept: the oldest \
                     it resumes from is {}",
                    self.base
                )
            } else {
                format!(
                    "position {p} is not one materialized view \"{view}\" sent (after a restart, \
                     positions later than its last checkpoint, {}, cannot be resumed)",
                    self.base
                )
            };
            return Err(EddyError::InvalidParameter {
                message,
                hint: Some(
                    "Subscribe again without AS OF: the snapshot brings the client up to date \
                     (--subscribe-retain-bytes sets how much is kept for resumes)."
                        .into(),
                ),
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|(q, _, _)| *q > p)
            .map(|(q, c, _)| Event::Data {
                position: *q,
                changes: c.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    fn rows(v: &[i64]) -> Changes {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        Changes::inserts(
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(v.to_vec()))]).unwrap(),
        )
    }

    fn positions(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Data { position, .. } => Some(*position),
                Event::Progress { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_subscriber_resumes_after_the_last_position_it_saw() {
        let mut log = ChangeLog::new(ChangeLimits::default());
        let start = log.position();
        log.record(&rows(&[1]));
        let first = log.position();
        log.record(&rows(&[2]));
        log.record(&rows(&[3]));
        assert!(first > start && log.position() > first);
        let r = log.subscribe("v", Start::After(first), "rows", None, || unreachable!());
        let r = r.unwrap();
        assert_eq!(positions(&r.initial).len(), 2);
        assert!(positions(&r.initial)[0] > first);
        let all = log.subscribe("v", Start::After(start), "rows", None, || unreachable!());
        assert_eq!(positions(&all.unwrap().initial).len(), 3);
        // A position the view never gave (one from before a restart) is refused.
        let err = log
            .subscribe(
                "v",
                Start::After(first + 1_000_000_000),
                "rows",
                None,
                || unreachable!(),
            )
            .err()
            .unwrap();
        assert_eq!(err.sqlstate(), "22023");
        log.restore(first);
        assert!(log
            .subscribe("v", Start::After(first), "rows", None, || unreachable!())
            .is_ok());
        assert!(log
            .subscribe(
                "v",
                Start::After(first - 1),
                "rows",
                None,
                || unreachable!()
            )
            .is_err());
    }

    #[test]
    fn retention_is_bounded_and_old_positions_are_refused() {
        let mut log = ChangeLog::new(ChangeLimits {
            buffer: 4,
            retain_bytes: 1,
        });
        let start = log.position();
        log.record(&rows(&[1]));
        log.record(&rows(&[2]));
        let err = log
            .subscribe("v", Start::After(start), "rows", None, || unreachable!())
            .err()
            .unwrap();
        assert!(err.to_string().contains("no longer kept"), "{err}");
        assert!(log
            .subscribe(
                "v",
                Start::After(log.position()),
                "rows",
                None,
                || unreachable!()
            )
            .is_ok());
    }

    #[test]
    fn a_full_buffer_cuts_the_subscriber_off_and_no_one_waits() {
        let mut log = ChangeLog::new(ChangeLimits {
            buffer: 2,
            retain_bytes: 1 << 20,
        });
        let mut slow = log
            .subscribe("v", Start::Now, "rows", None, || unreachable!())
            .unwrap();
        let mut fast = log
            .subscribe("v", Start::Now, "rows", None, || unreachable!())
            .unwrap();
        for i in 0..5 {
            log.record(&rows(&[i]));
            assert!(matches!(fast.rx.try_recv(), Ok(Event::Data { .. })));
        }
        assert!(matches!(*slow.ended.lock(), Some(Ended::Lagged)));
        assert!(fast.ended.lock().is_none());
        assert_eq!(log.subscribers(), 1);
        // What the slow one had buffered is still delivered, then its stream ends.
        assert!(slow.rx.try_recv().is_ok() && slow.rx.try_recv().is_ok());
        assert!(matches!(
            slow.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
