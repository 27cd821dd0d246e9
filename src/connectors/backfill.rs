//! Backfill: a view created on a stream that has already delivered records
//! reads them first, then goes on with the live stream — no gap, no record
//! twice.
//!
//! ```text
//!  phase 1..n (live stream keeps running):  range reader ──► view input
//!      reads from the backfill's position up to where the stream's own
//!      reader is now (its checkpoint position: Kafka offsets, file line,
//!      table log row)
//!  last phase (the stream's publishing held, under the handoff lock):
//!      the rest up to where the stream is; subscribe the view to it
//! ```
//! A phase reads with a reader of its own (Kafka: another consumer; files:
//! the file again; tables: the table's log), through a replay of the
//! source's ingest path (rejected records are not dead-lettered twice). Its
//! rows go to the view's input channel only. The last phase starts once a
//! phase had few records left to read (or after [`OPEN_PHASES_MAX`]
//! phases): other views wait on the stream only for that remainder.
//!
//! Checkpoints: a checkpoint first takes the handoff lock, so a view is
//! either backfilling at its barrier or subscribed to the stream; a
//! backfilling view gets its barrier from [`Backfill::barrier`], which
//! records the backfill's position with the checkpoint. A restored view
//! resumes its backfill from there ([`Start::Resume`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::dead_letter::DeadLetterStore;
use super::file::{read_file_range, FileOptions};
use super::ingest::{Ingest, IngestSpec};
use super::kafka::{
    origin_offsets, range_targets, read_kafka_range, remaining, KafkaOptions, StartupMode,
};
use super::runner::{Produced, READER_CHANNEL_CAPACITY};
use super::stream::StreamObject;
use super::BatchBounds;
use crate::error::{EddyError, Result};
use crate::sql::ObjectKind;
use crate::state::Epoch;
use crate::types::message::WatermarkTracker;
use crate::types::{Changes, Message, Watermark};

/// Phases read while the stream runs before the last one holds it.
pub const OPEN_PHASES_MAX: usize = 4;
/// A phase that started with at most this many records to read is followed
/// by the last phase.
pub const HANDOFF_RECORDS: i64 = 20_000;

/// How a source's connector reads again for a backfill (kept at `CREATE SOURCE`).
#[derive(Debug, Clone)]
pub enum ReplaySpec {
    /// A Kafka topic.
    Kafka {
        /// The source's Kafka options.
        opts: KafkaOptions,
        /// Its ingest path.
        spec: IngestSpec,
        /// Its batching.
        bounds: BatchBounds,
    },
    /// Files.
    File {
        /// The source's file options.
        opts: FileOptions,
        /// Its ingest path.
        spec: IngestSpec,
        /// Its batching.
        bounds: BatchBounds,
    },
}

/// Where a backfill starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Where the source itself started (`backfill = 'startup'`, the default).
    Startup,
    /// The oldest record the topic still holds (`backfill = 'earliest'`).
    Earliest,
    /// The first Kafka record at or after this time (epoch ms).
    Timestamp(i64),
    /// Where a checkpoint of the view left it.
    Resume(Value),
}

/// A checkpoint's barrier, and where to say how far the backfill was.
struct BarrierRequest {
    epoch: Epoch,
    reply: oneshot::Sender<Value>,
}

/// One view input's backfill, as the engine and `eddy.views` see it.
pub struct Backfill {
    /// The view.
    pub view: String,
    /// The stream it reads.
    pub input: String,
    /// Which of the view's inputs (a stream read twice has two).
    pub index: usize,
    requests: mpsc::Sender<BarrierRequest>,
    /// Rows handed to the view so far.
    pub rows: AtomicU64,
    /// Records still to read up to the stream's position at the phase start (Kafka,
    /// tables; -1 when unknown).
    pub remaining: AtomicI64,
    /// Something the user must know (rows no longer available, a Kafka outage).
    pub note: Mutex<Option<String>>,
}

impl Backfill {
    /// The view's barrier for `epoch`, in order with the rows handed over;
    /// returns the position to resume from, or `None` when the backfill has
    /// ended (the view gets its barriers from the stream then).
    pub async fn barrier(&self, epoch: Epoch) -> Option<Value> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(BarrierRequest { epoch, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// True once the backfill ended (handed over, failed or dropped).
    pub fn ended(&self) -> bool {
        self.requests.is_closed()
    }
}

/// The backfills running, and the lock a checkpoint's barriers and every
/// handoff take, so the two never interleave.
#[derive(Default)]
pub struct Backfills {
    /// Held by a checkpoint while it injects barriers, and by a backfill's
    /// last phase.
    pub handoff: tokio::sync::Mutex<()>,
    active: Mutex<Vec<Arc<Backfill>>>,
}

impl Backfills {
    /// The backfills still running.
    pub fn active(&self) -> Vec<Arc<Backfill>> {
        let mut a = self.active.lock();
        a.retain(|b| !b.ended());
        a.clone()
    }
}

/// Everything one backfill needs.
pub struct Job {
    /// The stream read.
    pub stream: Arc<StreamObject>,
    /// How its connector reads again (`None`: a table).
    pub replay: Option<ReplaySpec>,
    /// Where to start.
    pub start: Start,
    /// At most this many rows per second (0: unthrottled).
    pub rows_per_second: u64,
    /// The view's input channel.
    pub tx: mpsc::Sender<Message>,
    /// The view's name (its subscription to the stream).
    pub view: String,
    /// Which of the view's inputs this is.
    pub index: usize,
    /// For the replayed ingest path.
    pub dead_letters: Arc<DeadLetterStore>,
}

/// Register a backfill for `job` in `registry`; returns it and the future
/// that runs it (spawn it with the view's tasks).
pub fn start(
    registry: &Arc<Backfills>,
    job: Job,
) -> (
    Arc<Backfill>,
    impl std::future::Future<Output = Result<()>> + Send + 'static,
) {
    let (requests, requests_rx) = mpsc::channel(1);
    let handle = Arc::new(Backfill {
        view: job.view.clone(),
        input: job.stream.name.clone(),
        index: job.index,
        requests,
        rows: AtomicU64::new(0),
        remaining: AtomicI64::new(-1),
        note: Mutex::new(None),
    });
    registry.active.lock().push(handle.clone());
    let driver = Driver {
        job,
        handle: handle.clone(),
        registry: registry.clone(),
        requests: requests_rx,
        position: None,
        tracker: WatermarkTracker::default(),
        throttle: Throttle::default(),
    };
    (handle, driver.run())
}

/// Spacing rows out to a rate.
#[derive(Default)]
struct Throttle {
    started: Option<Instant>,
    rows: u64,
}

struct Driver {
    job: Job,
    handle: Arc<Backfill>,
    registry: Arc<Backfills>,
    requests: mpsc::Receiver<BarrierRequest>,
    /// The range reader's position after the rows handed over.
    position: Option<Value>,
    tracker: WatermarkTracker,
    throttle: Throttle,
}

impl Driver {
    async fn run(mut self) -> Result<()> {
        let result = self.phases().await;
        if let Err(e) = &result {
            *self.handle.note.lock() = Some(e.to_string());
        }
        result
    }

    async fn phases(&mut self) -> Result<()> {
        if let Start::Resume(saved) = &self.job.start {
            self.position = Some(saved["reader"].clone()).filter(|v| !v.is_null());
            if let Some(w) = saved["watermark"].as_i64() {
                self.tracker.advance(w);
                self.send(Message::Watermark(Watermark::EventTime(w)))
                    .await?;
            }
            let rows = saved["rows"].as_u64().unwrap_or(0);
            self.handle.rows.store(rows, Ordering::Relaxed);
        }
        // Wait for a restart to recreate every object (the stream's position is final then).
        let stream = self.job.stream.clone();
        loop {
            tokio::select! {
                _ = stream.started() => break,
                req = self.requests.recv() => self.barrier(req).await?,
            }
        }
        let mut phase = 0;
        loop {
            phase += 1;
            let left = self.left(&self.target());
            self.handle.remaining.store(left, Ordering::Relaxed);
            // A file is read whole in one phase; what it gained meanwhile is little.
            let file = matches!(self.job.replay, Some(ReplaySpec::File { .. }));
            // A throttled backfill holds the stream for what it may read in 0.1 s.
            let handoff = match self.job.rows_per_second {
                0 => HANDOFF_RECORDS,
                r => HANDOFF_RECORDS.min((r / 10) as i64),
            };
            let last =
                phase > OPEN_PHASES_MAX || (0..=handoff).contains(&left) || (file && phase > 1);
            if last {
                return self.hand_off().await;
            }
            let target = self.target();
            self.read_phase(target).await?;
        }
    }

    /// The last phase: hold the stream, read up to it, subscribe.
    async fn hand_off(&mut self) -> Result<()> {
        let registry = self.registry.clone();
        let _handoff = loop {
            tokio::select! {
                g = registry.handoff.lock() => break g,
                req = self.requests.recv() => self.barrier(req).await?,
            }
        };
        let stream = self.job.stream.clone();
        let _held = stream.hold().await;
        // Not throttled: other views wait for it.
        self.job.rows_per_second = 0;
        let target = self.target();
        self.handle
            .remaining
            .store(self.left(&target), Ordering::Relaxed);
        self.read_phase(target).await?;
        let catch_up = stream
            .publisher
            .subscribe(&self.job.view, self.job.tx.clone(), Vec::new)
            .await;
        for m in catch_up {
            self.send(m).await?;
        }
        self.handle.remaining.store(0, Ordering::Relaxed);
        self.requests.close();
        tracing::info!(view = %self.job.view, stream = %stream.name,
            rows = self.handle.rows.load(Ordering::Relaxed), "backfill done; reading the live stream");
        Ok(())
    }

    /// Where the stream's own reader is: the backfill reads up to there.
    fn target(&self) -> Option<Value> {
        match self.job.stream.kind {
            ObjectKind::Table => Some(json!({ "rows": self.job.stream.rows_published() })),
            _ => self.job.stream.resume_position(),
        }
    }

    /// Records between the backfill's position and `target` (-1: unknown).
    fn left(&self, target: &Option<Value>) -> i64 {
        match (&self.job.replay, target) {
            (_, None) => 0,
            (Some(ReplaySpec::Kafka { .. }), Some(t)) => {
                remaining(self.position.as_ref(), &range_targets(Some(t)))
            }
            (Some(ReplaySpec::File { .. }), Some(t)) => {
                if self.position.as_ref() == Some(t) {
                    0
                } else {
                    -1
                }
            }
            (None, Some(t)) => {
                let at = self.position.as_ref().and_then(|p| p["rows"].as_u64());
                let to = t["rows"].as_u64().unwrap_or(0);
                to.saturating_sub(at.unwrap_or(0)) as i64
            }
        }
    }

    /// Read from the backfill's position up to `target`, handing rows to the view.
    async fn read_phase(&mut self, target: Option<Value>) -> Result<()> {
        if self.left(&target) == 0 {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::channel(READER_CHANNEL_CAPACITY);
        let reader = self.spawn_reader(target, tx)?;
        let result = loop {
            let produced = tokio::select! {
                p = rx.recv() => p,
                req = self.requests.recv() => match self.barrier(req).await {
                    Ok(()) => continue,
                    Err(e) => break Err(e),
                },
            };
            let Some(p) = produced else {
                break Err(EddyError::Connector(format!(
                    "the backfill reader of \"{}\" stopped unexpectedly",
                    self.job.stream.name
                )));
            };
            match self.take(p).await {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(rx);
        let _ = reader.await;
        result
    }

    /// Act on what a range reader produced; false when it finished.
    async fn take(&mut self, p: Produced) -> Result<bool> {
        match p {
            Produced::Rows(batch, candidate, position) => {
                let candidate = match candidate {
                    Some(c) => c,
                    None => self.job.stream.batch_watermark(&batch)?,
                };
                self.rows(batch).await?;
                if position.is_some() {
                    self.position = position;
                }
                if let Some(w) = candidate.and_then(|c| self.tracker.advance(c)) {
                    self.send(Message::Watermark(Watermark::EventTime(w)))
                        .await?;
                }
            }
            Produced::Position(p) => self.position = Some(p),
            Produced::Watermark(w) => {
                if let Some(w) = self.tracker.advance(w) {
                    self.send(Message::Watermark(Watermark::EventTime(w)))
                        .await?;
                }
            }
            Produced::Healthy => *self.handle.note.lock() = None,
            Produced::Retrying(msg) | Produced::Notice(msg) => *self.handle.note.lock() = Some(msg),
            Produced::Finished => return Ok(false),
            Produced::Failed(e) => return Err(e),
        }
        Ok(true)
    }

    /// Hand rows to the view, at most at the throttled rate. A barrier
    /// served while waiting comes before the batch, at the position before
    /// it (a throttled reader's batches are small, see [`Driver::bounds`]).
    async fn rows(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows() as u64;
        if self.job.rows_per_second > 0 {
            let started = *self.throttle.started.get_or_insert_with(Instant::now);
            self.throttle.rows += n;
            let due = Duration::from_secs_f64(
                self.throttle.rows as f64 / self.job.rows_per_second as f64,
            );
            let until = tokio::time::Instant::from_std(started + due);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    req = self.requests.recv() => self.barrier(req).await?,
                }
            }
        }
        self.send(Message::Data(Changes::inserts(batch))).await?;
        self.handle.rows.fetch_add(n, Ordering::Relaxed);
        let left = self.handle.remaining.load(Ordering::Relaxed);
        if left > 0 {
            self.handle
                .remaining
                .store((left - n as i64).max(0), Ordering::Relaxed);
        }
        Ok(())
    }

    /// A checkpoint's barrier request (`None`: the view went away): the
    /// barrier goes to the view after the rows handed over so far, and the
    /// checkpoint learns where the backfill resumes from. Not cancelled
    /// halfway: it runs in a `select!` arm's body, never as a branch.
    async fn barrier(&mut self, req: Option<BarrierRequest>) -> Result<()> {
        let Some(req) = req else {
            return Err(EddyError::Shutdown("view dropped".into()));
        };
        self.send(Message::Barrier(req.epoch)).await?;
        let _ = req.reply.send(json!({
            "input": self.job.stream.name,
            "start": start_json(&self.job.start),
            "reader": self.position,
            "watermark": self.tracker.current(),
            "rows": self.handle.rows.load(Ordering::Relaxed),
        }));
        Ok(())
    }

    async fn send(&self, m: Message) -> Result<()> {
        self.job
            .tx
            .send(m)
            .await
            .map_err(|_| EddyError::Shutdown("view dropped".into()))
    }

    /// A throttled reader's batches hold a twentieth of a second's rows, so
    /// the rate holds within what would be one batch.
    fn bounds(&self, bounds: &BatchBounds) -> BatchBounds {
        let mut b = *bounds;
        if self.job.rows_per_second > 0 {
            b.max_rows = b
                .max_rows
                .min((self.job.rows_per_second as usize / 20).max(1));
        }
        b
    }

    /// Start the phase's reader on a blocking thread.
    fn spawn_reader(
        &self,
        target: Option<Value>,
        tx: mpsc::Sender<Produced>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let stream = &self.job.stream;
        let replay = |spec: &IngestSpec, stand_in: &Arc<StreamObject>| {
            Ingest::replay(
                stand_in.clone(),
                spec.clone(),
                self.job.dead_letters.clone(),
            )
            .map_err(EddyError::invalid)
        };
        match &self.job.replay {
            Some(ReplaySpec::Kafka { opts, spec, bounds }) => {
                let stand_in = Arc::new(stream.stand_in());
                let ingest = replay(spec, &stand_in)?;
                let targets = range_targets(target.as_ref());
                let (opts, start) = self.kafka_start(opts, &targets);
                let bounds = self.bounds(bounds);
                Ok(tokio::task::spawn_blocking(move || {
                    read_kafka_range(opts, ingest, bounds, stand_in, tx, start, targets)
                }))
            }
            Some(ReplaySpec::File { opts, spec, bounds }) => {
                let ingest = replay(spec, &Arc::new(stream.stand_in()))?;
                let (opts, bounds, start) =
                    (opts.clone(), self.bounds(bounds), self.position.clone());
                Ok(tokio::task::spawn_blocking(move || {
                    read_file_range(opts, ingest, bounds, tx, start, target)
                }))
            }
            None => {
                let range = stream.log_range();
                let from = self
                    .position
                    .as_ref()
                    .and_then(|p| p["rows"].as_u64())
                    .unwrap_or(0);
                let to = target
                    .as_ref()
                    .and_then(|t| t["rows"].as_u64())
                    .unwrap_or(0);
                Ok(tokio::task::spawn_blocking(move || {
                    read_table_range(range, from, to, tx)
                }))
            }
        }
    }

    /// The options and position a Kafka phase starts from.
    fn kafka_start(
        &self,
        opts: &KafkaOptions,
        targets: &BTreeMap<i32, i64>,
    ) -> (KafkaOptions, Option<Value>) {
        let mut opts = opts.clone();
        let start = match &self.job.start {
            Start::Resume(saved) => Start::from_saved(saved),
            s => s.clone(),
        };
        match start {
            Start::Earliest => opts.startup = StartupMode::Earliest,
            Start::Timestamp(ms) => opts.startup = StartupMode::Timestamp(ms),
            Start::Startup | Start::Resume(_) => {}
        }
        if opts.startup != StartupMode::Latest {
            // Partitions not read yet start at the startup mode.
            return (opts, self.position.clone());
        }
        // A `latest` source started where it first placed itself; a partition
        // it has no start for has nothing before the stream's position.
        let origin = origin_offsets(self.job.stream.resume_position().as_ref());
        let read = range_targets(self.position.as_ref());
        let offsets: serde_json::Map<String, Value> = targets
            .iter()
            .map(|(p, t)| {
                let at = read.get(p).or(origin.get(p)).unwrap_or(t);
                (p.to_string(), Value::from(*at))
            })
            .collect();
        let mut start = self.position.clone().unwrap_or_else(|| json!({}));
        start["offsets"] = Value::Object(offsets);
        (opts, Some(start))
    }
}

/// How a checkpoint records where a backfill started (read by [`Start::from_saved`]).
fn start_json(start: &Start) -> Value {
    match start {
        Start::Startup => json!("startup"),
        Start::Earliest => json!("earliest"),
        Start::Timestamp(ms) => json!(ms),
        Start::Resume(saved) => saved["start"].clone(),
    }
}

impl Start {
    /// Where a backfill restored from `saved` started.
    fn from_saved(saved: &Value) -> Start {
        match &saved["start"] {
            Value::String(s) if s == "earliest" => Start::Earliest,
            Value::Number(n) => n.as_i64().map_or(Start::Startup, Start::Timestamp),
            _ => Start::Startup,
        }
    }
}

/// Read a table's logged rows `from..to` and hand them over.
fn read_table_range(
    range: Option<super::table_log::LogRange>,
    from: u64,
    to: u64,
    tx: mpsc::Sender<Produced>,
) {
    let Some(range) = range else {
        let _ = tx.blocking_send(Produced::Finished);
        return;
    };
    let first = range.first_row();
    if first > from {
        let _ = tx.blocking_send(Produced::Notice(format!(
            "rows {from}..{} of the table were compacted from its log before this view was \
             created; the view counts the rows from row {first} on",
            first - 1
        )));
    }
    let mut row = from.max(first);
    let result = range.read(row, to, |batch| {
        row += batch.num_rows() as u64;
        tx.blocking_send(Produced::Rows(batch, None, Some(json!({ "rows": row }))))
            .is_ok()
    });
    let last = match result {
        Ok(0) => Produced::Finished,
        Ok(lost) => {
            let _ = tx.blocking_send(Produced::Notice(format!(
                "{lost} rows of the table's log could not be read (corrupt or compacted meanwhile)"
            )));
            Produced::Finished
        }
        Err(e) => Produced::Failed(e),
    };
    let _ = tx.blocking_send(Produced::Position(json!({ "rows": to })));
    let _ = tx.blocking_send(last);
}
