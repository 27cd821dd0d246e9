//! Decode in parallel, publish in order.
//!
//! A reader thread (file, Kafka) cuts its records into chunks and submits
//! them here. Chunks are decoded and checked on a few worker threads at once
//! (each with a decoder of its own; [`Checker`] has no side effects), and
//! come back in the order they were submitted, where rejected records are
//! routed ([`Router`]: counts, dead letters, `on_error`) and the reader
//! publishes the rows with the position the chunk ends at. Positions,
//! watermarks and dead letters therefore see records in their order, as with
//! one thread, while decoding — the bulk of a reader's work — uses every core.
//!
//! Bounded: at most two chunks per thread are in flight; a reader waits
//! for the oldest before submitting more. Workers are joined when the
//! pipeline is dropped. With one thread nothing is spawned: chunks are
//! decoded as they are submitted.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use std::sync::Arc;

use super::format::registry::Registry;
use super::format::Record;
use super::ingest::{Checked, Checker, Ingest, Processed, Router};
use crate::error::{EddyError, Result};

/// A chunk handed back, in submission order.
#[derive(Debug)]
pub struct Done<T> {
    /// The chunk's records.
    pub records: Vec<Record>,
    /// What the reader attached when submitting (its position after the chunk).
    pub tag: T,
    /// Rows and the outcome of routing the rejected records.
    pub processed: Processed,
}

/// A chunk to decode, and where to send the result.
struct Job {
    records: Vec<Record>,
    reply: SyncSender<(Vec<Record>, Result<Checked>)>,
}

/// A worker thread and the way to it.
struct Lane {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// A chunk not yet handed back.
enum Pending<T> {
    /// Decoded as submitted (one thread).
    Ready(Vec<Record>, Result<Checked>, T),
    /// On a worker.
    Running(Receiver<(Vec<Record>, Result<Checked>)>, T),
}

/// Decodes chunks of records on worker threads and hands them back in order.
pub struct Pipeline<T> {
    router: Router,
    /// Where writer schemas named by records come from (Avro with a
    /// registry), and whether tombstones' keys name some too.
    registry: Option<(Arc<Registry>, bool)>,
    /// Decodes inline when there are no lanes.
    inline: Option<Checker>,
    lanes: Vec<Lane>,
    next_lane: usize,
    in_flight: VecDeque<Pending<T>>,
    limit: usize,
}

impl<T> Pipeline<T> {
    /// A pipeline decoding on `threads` threads (1: inline), named after `source`.
    pub fn new(ingest: Ingest, threads: usize, source: &str) -> Result<Self> {
        let registry = ingest.registry().map(|r| (r, ingest.registry_keys()));
        let (checker, router) = ingest.into_parts();
        let threads = threads.max(1);
        let mut p = Pipeline {
            router,
            registry,
            inline: None,
            lanes: Vec::new(),
            next_lane: 0,
            in_flight: VecDeque::new(),
            limit: 2 * threads,
        };
        if threads == 1 {
            p.inline = Some(checker);
            return Ok(p);
        }
        let mut checkers = Vec::with_capacity(threads);
        for _ in 1..threads {
            checkers.push(checker.fresh().map_err(EddyError::Internal)?);
        }
        checkers.push(checker);
        for (i, checker) in checkers.into_iter().enumerate() {
            // Two queued jobs per lane at most; the in-flight limit binds first.
            let (tx, rx) = sync_channel::<Job>(2);
            let thread = std::thread::Builder::new()
                .name(format!("decode{i}:{source}"))
                .spawn(move || work(checker, rx))
                .map_err(|e| EddyError::Internal(format!("cannot start a decoding thread: {e}")))?;
            p.lanes.push(Lane {
                jobs: Some(tx),
                thread: Some(thread),
            });
        }
        Ok(p)
    }

    /// Fetch the writer schemas `records` name that are not cached yet, so
    /// decoders find them; call before [`Pipeline::submit`]. Nothing to do
    /// unless the format reads schemas from a registry. `Err`: the registry
    /// cannot be reached (an outage: try again later; records with ids the
    /// registry does not have are not an error here, decoders reject them).
    pub fn fetch_schemas(&self, records: &[Record]) -> std::result::Result<(), String> {
        match &self.registry {
            Some((r, keys)) => r.fetch_missing(records, *keys),
            None => Ok(()),
        }
    }

    /// True when a chunk can be submitted without waiting for one to finish.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.limit
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Start decoding `records`; `tag` comes back with them. Call only with
    /// room ([`Pipeline::has_room`]); take finished chunks with [`Pipeline::next`].
    pub fn submit(&mut self, records: Vec<Record>, tag: T) {
        if let Some(c) = self.inline.as_mut() {
            let checked = c.check(&records);
            self.in_flight
                .push_back(Pending::Ready(records, checked, tag));
            return;
        }
        let lane = &self.lanes[self.next_lane];
        self.next_lane = (self.next_lane + 1) % self.lanes.len();
        let (reply, rx) = sync_channel(1);
        let sent = match &lane.jobs {
            Some(jobs) => jobs.send(Job { records, reply }),
            None => Err(std::sync::mpsc::SendError(Job { records, reply })),
        };
        match sent {
            Ok(()) => self.in_flight.push_back(Pending::Running(rx, tag)),
            // The worker is gone (it panicked): the chunk fails where it stands.
            Err(std::sync::mpsc::SendError(job)) => {
                self.in_flight
                    .push_back(Pending::Ready(job.records, Err(worker_died()), tag))
            }
        }
    }

    /// The oldest chunk, routed, if it is finished (`wait`: waiting for it).
    /// `None` when nothing is in flight, or (not waiting) the oldest is still
    /// being decoded.
    pub fn next(&mut self, wait: bool) -> Option<Done<T>> {
        let (records, checked, tag) = match self.in_flight.pop_front()? {
            Pending::Ready(records, checked, tag) => (records, checked, tag),
            Pending::Running(rx, tag) => {
                let got = if wait {
                    rx.recv().ok()
                } else {
                    match rx.try_recv() {
                        Ok(r) => Some(r),
                        Err(std::sync::mpsc::TryRecvError::Empty) => {
                            self.in_flight.push_front(Pending::Running(rx, tag));
                            return None;
                        }
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                    }
                };
                match got {
                    Some((records, checked)) => (records, checked, tag),
                    None => (Vec::new(), Err(worker_died()), tag),
                }
            }
        };
        let processed = self.router.route(&records, checked);
        Some(Done {
            records,
            tag,
            processed,
        })
    }

    /// Reject one record that never reached a decoder (e.g. over-long).
    pub fn reject_one(&self, record: Record, error: String) -> Result<()> {
        self.router.reject_one(record, error)
    }
}

impl<T> Drop for Pipeline<T> {
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            lane.jobs = None;
        }
        // Results nobody will read: let workers finish and exit.
        self.in_flight.clear();
        for lane in &mut self.lanes {
            if let Some(t) = lane.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A worker: decode jobs until the pipeline closes the lane.
fn work(mut checker: Checker, jobs: Receiver<Job>) {
    while let Ok(Job { records, reply }) = jobs.recv() {
        let checked = checker.check(&records);
        // The pipeline may be gone (the source was dropped): nothing to do.
        let _ = reply.send((records, checked));
    }
}

fn worker_died() -> EddyError {
    EddyError::Internal(
        "a decoding thread of this source stopped unexpectedly (see the server log)".into(),
    )
}

#[cfg(test)]
mod tests;
