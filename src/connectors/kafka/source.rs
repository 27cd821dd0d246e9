//! The Kafka source reader: one blocking thread per source running a
//! `BaseConsumer` on manually assigned partitions (eddy tracks offsets; they
//! are committed to the consumer group only so lag tools can see them).
//!
//! Watermarks are kept per partition (the largest watermark-expression value
//! read from it); the source's watermark is the minimum over partitions that
//! are not idle. A partition with no records for `watermark.idle_timeout`
//! stops holding it back until it has records again.
//!
//! Outages: a missing topic or unreachable brokers put the source in status
//! `retrying` with the error in `eddy.sources.last_error`; librdkafka
//! reconnects by itself, and reading resumes at the next offset.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::context::Reporting;
use super::options::{KafkaOptions, StartupMode};
use crate::connectors::format::Record;
use crate::connectors::ingest::Ingest;
use crate::connectors::pipeline::{Done, Pipeline};
use crate::connectors::runner::Produced;
use crate::connectors::stream::{PartitionProgress, StreamObject};
use crate::connectors::BatchBounds;
use crate::error::EddyError;

/// The consumer, with librdkafka's own error reports kept.
type BaseConsumer = rdkafka::consumer::BaseConsumer<Reporting>;

/// Longest single poll, so a dropped source is noticed quickly.
const POLL: Duration = Duration::from_millis(50);
/// How often idle partitions, progress and new partitions are looked at.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(10);
/// How often offsets are committed and high watermarks fetched.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Metadata and offset lookups give up after this long (then retry).
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the topic's partitions are listed again, to read partitions added
/// after the source started (from their first record).
const DISCOVER_EVERY: Duration = Duration::from_secs(10);
/// Backoff between attempts to find the topic, doubling up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Reading state of one partition.
#[derive(Debug)]
struct Partition {
    id: i32,
    /// Next offset after the records published (checkpoints, commits, lag).
    next_offset: Option<i64>,
    /// Next offset after the records polled (some may still be decoding).
    polled: Option<i64>,
    low_watermark: Option<i64>,
    high_watermark: Option<i64>,
    watermark: Option<i64>,
    last_record: Instant,
    idle: bool,
}

/// The channel closed: the source was dropped.
struct Closed;

/// Per partition, the offset after a chunk's last record of it.
type Ends = Vec<(i32, i64)>;

struct Reader {
    opts: KafkaOptions,
    pipeline: Pipeline<Ends>,
    bounds: BatchBounds,
    tx: mpsc::Sender<Produced>,
    stream: Arc<StreamObject>,
    partitions: BTreeMap<i32, Partition>,
    /// Whether the last thing reported was an error.
    unhealthy: bool,
    /// Where a checkpoint says each partition resumes.
    resume: Resume,
    /// When partitions were last listed.
    last_discovery: Instant,
    /// Where a `latest` source started in each partition (a view created
    /// later backfills from there); checkpointed with the position.
    origin: BTreeMap<i32, i64>,
    /// Reading a range for a view's backfill (see [`read_kafka_range`]).
    bound: Option<Bound>,
}

/// A backfill's range: per partition, the offset to stop before (what the
/// source's own reader has published); partitions without one are not read.
#[derive(Debug, Default)]
struct Bound {
    targets: BTreeMap<i32, i64>,
    /// Partitions at their end: where the broker said it was.
    eof: BTreeMap<i32, i64>,
    /// Partitions that reached their target.
    done: std::collections::BTreeSet<i32>,
}

/// A checkpointed Kafka position: per partition, the next offset and the watermark.
#[derive(Debug, Default)]
struct Resume {
    offsets: BTreeMap<i32, i64>,
    watermarks: BTreeMap<i32, i64>,
    origin: BTreeMap<i32, i64>,
}

impl Resume {
    fn parse(v: &serde_json::Value) -> Self {
        let map = |key: &str| -> BTreeMap<i32, i64> {
            v[key]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(p, n)| Some((p.parse().ok()?, n.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Resume {
            offsets: map("offsets"),
            watermarks: map("watermarks"),
            origin: map("origin"),
        }
    }
}

/// Read the topic until the source is dropped (or fails with `on_error = 'fail'`).
/// Runs on a blocking thread.
pub fn read_kafka(
    opts: KafkaOptions,
    ingest: Ingest,
    bounds: BatchBounds,
    stream: Arc<StreamObject>,
    tx: mpsc::Sender<Produced>,
    resume: Option<serde_json::Value>,
) {
    run_reader(opts, ingest, bounds, stream, tx, resume, None)
}

/// Read the topic from `start` (a position [`read_kafka`] checkpointed, or
/// none: from the startup mode) up to, not including, `targets` (per
/// partition, the next offset of the source's own reader), then send
/// `Produced::Finished`. For a view's backfill: `ingest` should be a replay
/// (no dead letters twice), `stream` a stand-in whose metrics show the
/// backfill's progress; offsets are not committed. Runs on a blocking thread.
pub fn read_kafka_range(
    opts: KafkaOptions,
    ingest: Ingest,
    bounds: BatchBounds,
    stream: Arc<StreamObject>,
    tx: mpsc::Sender<Produced>,
    start: Option<serde_json::Value>,
    targets: BTreeMap<i32, i64>,
) {
    let bound = Bound {
        targets,
        ..Bound::default()
    };
    run_reader(opts, ingest, bounds, stream, tx, start, Some(bound))
}

/// The targets of a backfill reading up to where a source's reader is:
/// the next offset per partition of a [`read_kafka`] position.
pub fn range_targets(position: Option<&serde_json::Value>) -> BTreeMap<i32, i64> {
    position
        .map(|p| Resume::parse(p).offsets)
        .unwrap_or_default()
}

/// The offsets a `latest` source started at, from its position (empty when
/// it started elsewhere or has not placed itself yet).
pub fn origin_offsets(position: Option<&serde_json::Value>) -> BTreeMap<i32, i64> {
    position
        .map(|p| Resume::parse(p).origin)
        .unwrap_or_default()
}

/// Records between `position` and `targets`, summed over partitions.
pub fn remaining(position: Option<&serde_json::Value>, targets: &BTreeMap<i32, i64>) -> i64 {
    let at = range_targets(position);
    targets
        .iter()
        .map(|(p, &t)| (t - at.get(p).copied().unwrap_or(0)).max(0))
        .sum()
}

fn run_reader(
    opts: KafkaOptions,
    ingest: Ingest,
    bounds: BatchBounds,
    stream: Arc<StreamObject>,
    tx: mpsc::Sender<Produced>,
    resume: Option<serde_json::Value>,
    bound: Option<Bound>,
) {
    let pipeline = match Pipeline::new(ingest, bounds.decode_threads, &stream.name) {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.blocking_send(Produced::Failed(e));
            return;
        }
    };
    let resume = resume.map(|v| Resume::parse(&v)).unwrap_or_default();
    let mut r = Reader {
        opts,
        pipeline,
        bounds,
        tx,
        stream,
        partitions: BTreeMap::new(),
        unhealthy: false,
        origin: resume.origin.clone(),
        resume,
        last_discovery: Instant::now(),
        bound,
    };
    match r.run() {
        Ok(()) | Err(Stop::Closed) => {}
        Err(Stop::Failed(e)) => {
            let _ = r.tx.blocking_send(Produced::Failed(e));
        }
    }
}

enum Stop {
    Closed,
    Failed(EddyError),
}

impl From<Closed> for Stop {
    fn from(_: Closed) -> Self {
        Stop::Closed
    }
}

impl Reader {
    fn send(&self, p: Produced) -> Result<(), Closed> {
        self.tx.blocking_send(p).map_err(|_| Closed)
    }

    fn retrying(&mut self, msg: String) -> Result<(), Closed> {
        tracing::warn!(source = %self.stream.name, error = %msg, "kafka source retrying");
        // Shown at once, even before a view reads the source (the channel
        // is only drained then).
        *self.stream.metrics.last_error.lock() = Some(msg.clone());
        self.unhealthy = true;
        self.send(Produced::Retrying(msg))
    }

    fn healthy(&mut self) -> Result<(), Closed> {
        if self.unhealthy {
            self.unhealthy = false;
            self.send(Produced::Healthy)?;
        }
        Ok(())
    }

    /// Sleep up to `d`, returning early with `Closed` if the source was dropped.
    fn pause(&self, d: Duration) -> Result<(), Closed> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.tx.is_closed() {
                return Err(Closed);
            }
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }

    fn consumer(&self) -> Result<BaseConsumer, EddyError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.opts.bootstrap)
            .set("group.id", &self.opts.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "enable.partition.eof",
                if self.bound.is_some() {
                    "true"
                } else {
                    "false"
                },
            )
            .set("client.id", format!("eddy-{}", self.stream.name))
            // An offset the broker no longer has (retention deleted it before eddy read
            // it): go on from the oldest record it has, never skip ahead to the newest.
            // eddy reports the gap (see `lost`).
            .set("auto.offset.reset", "earliest")
            // Brokers answer a fetch as soon as data arrives; this bounds the wait when
            // one does not (librdkafka's default is 500 ms). Overridable via properties.
            .set("fetch.wait.max.ms", "100");
        for (k, v) in &self.opts.properties {
            cfg.set(k, v);
        }
        cfg.create_with_context(Reporting::new(&self.stream.name))
            .map_err(|e| EddyError::Connector(format!("cannot create Kafka consumer: {e}")))
    }

    fn run(&mut self) -> Result<(), Stop> {
        let consumer = self.consumer().map_err(Stop::Failed)?;
        self.assign(&consumer)?;
        let mut pending: Vec<Record> = Vec::new();
        let mut first_pending = Instant::now();
        let mut last_progress = Instant::now();
        let mut next_housekeeping = Instant::now();
        loop {
            if self.tx.is_closed() {
                return Err(Stop::Closed);
            }
            // With chunks decoding, look for records without waiting: the
            // oldest chunk is published when there are none.
            let wait = if self.pipeline.is_empty() {
                POLL
            } else {
                Duration::ZERO
            };
            let polled = consumer.poll(wait);
            // One clock reading per record.
            let now = Instant::now();
            match polled {
                Some(Ok(m)) if !self.within_bound(m.partition(), m.offset()) => {}
                Some(Ok(m)) => {
                    self.healthy()?;
                    if pending.is_empty() {
                        first_pending = now;
                    }
                    let p = m.partition();
                    if self.opts.startup == StartupMode::Latest {
                        self.origin.entry(p).or_insert(m.offset());
                    }
                    let mut gap = None;
                    if let Some(part) = self.partitions.get_mut(&p) {
                        gap = deleted_before_read(part, m.offset());
                        part.polled = Some(m.offset() + 1);
                        part.last_record = now;
                    }
                    if let Some((from, to)) = gap {
                        self.lost(p, from, to, m.offset())?;
                    }
                    pending.push(Record {
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        key: m.key().map(<[u8]>::to_vec),
                        partition: Some(p),
                        offset: m.offset(),
                        timestamp_ms: m.timestamp().to_millis(),
                        file: None,
                    });
                }
                Some(Err(KafkaError::PartitionEOF(p))) if self.bound.is_some() => {
                    self.at_end(&consumer, p)
                }
                Some(Err(e)) => self.retrying(describe(&e))?,
                None => {
                    if let Some(done) = self.pipeline.next(true) {
                        self.publish(done)?;
                    }
                }
            }
            let full = pending.len() >= self.bounds.max_rows;
            let due = !pending.is_empty() && now - first_pending >= self.bounds.max_wait;
            if full || due {
                self.submit(std::mem::take(&mut pending))?;
            }
            while let Some(done) = self.pipeline.next(false) {
                self.publish(done)?;
            }
            if self.range_read() {
                if !pending.is_empty() {
                    self.submit(std::mem::take(&mut pending))?;
                }
                while let Some(done) = self.pipeline.next(true) {
                    self.publish(done)?;
                }
                self.send(Produced::Position(self.position()))?;
                self.send(Produced::Finished)?;
                return Ok(());
            }
            if now < next_housekeeping {
                continue;
            }
            next_housekeeping = now + HOUSEKEEPING_EVERY;
            self.check_idle(now)?;
            if now - last_progress >= PROGRESS_EVERY {
                last_progress = now;
                self.progress(&consumer)?;
            }
            if now - self.last_discovery >= DISCOVER_EVERY && self.bound.is_none() {
                self.last_discovery = now;
                self.discover(&consumer)?;
            }
        }
    }

    /// Find the topic's partitions (retrying with backoff) and assign them at
    /// their startup offsets.
    fn assign(&mut self, consumer: &BaseConsumer) -> Result<(), Stop> {
        let topic = self.opts.topic.clone();
        let mut backoff = BACKOFF_MIN;
        let ids = loop {
            if self.tx.is_closed() {
                return Err(Stop::Closed);
            }
            match consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT) {
                Ok(md) => {
                    let t = md.topics().iter().find(|t| t.name() == topic);
                    match t {
                        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                            break t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>();
                        }
                        _ => self.retrying(format!(
                            "topic '{topic}' does not exist on {} (retrying)",
                            self.opts.bootstrap
                        ))?,
                    }
                }
                Err(e) => {
                    // Serve librdkafka's queued events: its client errors
                    // (a refused login, a failed handshake) say why.
                    let _ = consumer.poll(Duration::ZERO);
                    self.retrying(format!(
                        "cannot reach Kafka at {}: {}{} (retrying)",
                        self.opts.bootstrap,
                        describe(&e),
                        consumer
                            .context()
                            .take_error()
                            .map(|c| format!("; the client reports: {c}"))
                            .unwrap_or_default()
                    ))?
                }
            }
            self.pause(backoff)?;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        };
        let mut tpl = TopicPartitionList::new();
        for &id in &ids {
            let offset = match (self.resume.offsets.get(&id), self.opts.startup) {
                // Resumed partitions are placed after the timestamp lookup below.
                (Some(_), StartupMode::Timestamp(_)) => Offset::Beginning,
                (Some(&o), _) => Offset::Offset(o),
                (None, StartupMode::Earliest) => Offset::Beginning,
                // Started here before (the origin a checkpoint or a handover carries) but
                // nothing of it published yet: from there, not from a later end.
                (None, StartupMode::Latest) => self
                    .resume
                    .origin
                    .get(&id)
                    .map_or(Offset::End, |&o| Offset::Offset(o)),
                (None, StartupMode::Timestamp(ms)) => Offset::Offset(ms),
            };
            tpl.add_partition_offset(&topic, id, offset)
                .map_err(|e| Stop::Failed(EddyError::Connector(e.to_string())))?;
        }
        if let StartupMode::Timestamp(_) = self.opts.startup {
            tpl = loop {
                match consumer.offsets_for_times(tpl.clone(), METADATA_TIMEOUT) {
                    Ok(t) => break t,
                    Err(e) => {
                        self.retrying(format!(
                            "cannot look up offsets for the startup timestamp: {} (retrying)",
                            describe(&e)
                        ))?;
                        self.pause(backoff)?;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            };
            for (&id, &o) in &self.resume.offsets {
                if ids.contains(&id) {
                    let _ = tpl.set_partition_offset(&topic, id, Offset::Offset(o));
                }
            }
        }
        consumer.assign(&tpl).map_err(|e| {
            Stop::Failed(EddyError::Connector(format!(
                "cannot assign partitions: {e}"
            )))
        })?;
        let now = Instant::now();
        self.partitions = ids
            .into_iter()
            .map(|id| {
                (
                    id,
                    Partition {
                        id,
                        next_offset: self.resume.offsets.get(&id).copied(),
                        polled: self.resume.offsets.get(&id).copied(),
                        low_watermark: None,
                        high_watermark: None,
                        watermark: self.resume.watermarks.get(&id).copied(),
                        last_record: now,
                        idle: false,
                    },
                )
            })
            .collect();
        // A checkpointed offset the broker has since deleted: say what was lost.
        let resumed: Vec<(i32, i64)> = self.resume.offsets.iter().map(|(&p, &o)| (p, o)).collect();
        for (p, saved) in resumed {
            if let Ok((low, _)) = consumer.fetch_watermarks(&topic, p, METADATA_TIMEOUT) {
                if low > saved {
                    self.lost(p, saved, low - 1, low)?;
                }
            }
        }
        self.healthy()?;
        self.publish_progress();
        Ok(())
    }

    /// List the topic's partitions again and read the ones added since (from
    /// their first record: everything in a new partition is new).
    fn discover(&mut self, consumer: &BaseConsumer) -> Result<(), Closed> {
        let topic = self.opts.topic.clone();
        let Ok(md) = consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT) else {
            return Ok(()); // Unreachable brokers show up through polling.
        };
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(());
        };
        let added: Vec<i32> = t
            .partitions()
            .iter()
            .map(|p| p.id())
            .filter(|id| !self.partitions.contains_key(id))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &id in &added {
            if tpl
                .add_partition_offset(&topic, id, Offset::Beginning)
                .is_err()
            {
                return Ok(());
            }
        }
        if let Err(e) = consumer.incremental_assign(&tpl) {
            return self.retrying(format!(
                "cannot read partitions {added:?} added to '{topic}': {} (retrying)",
                describe(&e)
            ));
        }
        tracing::info!(source = %self.stream.name, partitions = ?added, "reading partitions added to the topic");
        let now = Instant::now();
        for id in added {
            self.partitions.insert(
                id,
                Partition {
                    id,
                    next_offset: None,
                    polled: None,
                    low_watermark: None,
                    high_watermark: None,
                    watermark: None,
                    last_record: now,
                    idle: false,
                },
            );
        }
        self.publish_progress();
        Ok(())
    }

    /// Report that offsets `from..=to` of partition `p` were deleted by the
    /// broker before eddy read them; reading goes on at `resumed_at`.
    fn lost(&mut self, p: i32, from: i64, to: i64, resumed_at: i64) -> Result<(), Closed> {
        let msg = format!(
            "partition {p}: offsets {from}..{to} were deleted by the broker (retention) before \
             they were read; reading went on at offset {resumed_at}"
        );
        tracing::error!(source = %self.stream.name, "{msg}");
        self.send(Produced::Notice(msg))
    }

    /// Start decoding `records` (waiting for room: publishing the oldest chunks).
    fn submit(&mut self, records: Vec<Record>) -> Result<(), Stop> {
        self.fetch_schemas(&records)?;
        while !self.pipeline.has_room() {
            if let Some(done) = self.pipeline.next(true) {
                self.publish(done)?;
            }
        }
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &records {
            if let Some(p) = r.partition {
                let end = ends.entry(p).or_insert(r.offset + 1);
                *end = (*end).max(r.offset + 1);
            }
        }
        self.pipeline.submit(records, ends.into_iter().collect());
        Ok(())
    }

    /// Fetch the writer schemas `records` name from the schema registry (if
    /// the format uses one); while it cannot be reached, retry with backoff.
    fn fetch_schemas(&mut self, records: &[Record]) -> Result<(), Closed> {
        let mut backoff = BACKOFF_MIN;
        while let Err(e) = self.pipeline.fetch_schemas(records) {
            self.retrying(format!("{e} (retrying)"))?;
            self.pause(backoff)?;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.healthy()
    }

    /// A decoded chunk, in order: update per-partition offsets and
    /// watermarks, hand the rows over.
    fn publish(&mut self, done: Done<Ends>) -> Result<(), Stop> {
        for &(p, end) in &done.tag {
            if let Some(part) = self.partitions.get_mut(&p) {
                part.next_offset = Some(end);
            }
        }
        match done.processed.rows {
            Some((batch, rows_from)) => self.publish_rows(&done.records, batch, rows_from)?,
            None => self.send(Produced::Position(self.position()))?,
        }
        match done.processed.failure {
            Some(e) => Err(Stop::Failed(e)),
            None => Ok(()),
        }
    }

    fn publish_rows(
        &mut self,
        records: &[Record],
        batch: datafusion::arrow::record_batch::RecordBatch,
        rows_from: Vec<usize>,
    ) -> Result<(), Stop> {
        // Rows by partition: the partitions of this batch, in order of first row.
        // Records of a partition come in runs: look at the last one's first.
        let mut ids: Vec<i32> = Vec::new();
        let mut last = 0;
        let group: Vec<usize> = rows_from
            .iter()
            .map(|&rec| {
                let p = records[rec].partition.unwrap_or(-1);
                if ids.get(last) != Some(&p) {
                    last = ids.iter().position(|&q| q == p).unwrap_or_else(|| {
                        ids.push(p);
                        ids.len() - 1
                    });
                }
                last
            })
            .collect();
        for &p in &ids {
            if let Some(part) = self.partitions.get_mut(&p) {
                part.idle = false;
            }
        }
        let candidates = self
            .stream
            .group_watermarks(&batch, |row| group[row], ids.len())
            .map_err(Stop::Failed)?;
        if let Some(c) = &candidates {
            for (&p, v) in ids.iter().zip(c) {
                if let (Some(part), Some(v)) = (self.partitions.get_mut(&p), *v) {
                    part.watermark = Some(part.watermark.map_or(v, |w| w.max(v)));
                }
            }
        }
        let combined = candidates.is_some().then(|| self.combined()).flatten();
        self.send(Produced::Rows(batch, Some(combined), Some(self.position())))?;
        Ok(())
    }

    /// Next offset and watermark of every partition, for checkpoints.
    fn position(&self) -> serde_json::Value {
        let offsets: serde_json::Map<String, serde_json::Value> = self
            .partitions
            .values()
            .filter_map(|p| Some((p.id.to_string(), p.next_offset?.into())))
            .collect();
        let watermarks: serde_json::Map<String, serde_json::Value> = self
            .partitions
            .values()
            .filter_map(|p| Some((p.id.to_string(), p.watermark?.into())))
            .collect();
        let mut pos = serde_json::json!({ "offsets": offsets, "watermarks": watermarks });
        if !self.origin.is_empty() {
            pos["origin"] = self
                .origin
                .iter()
                .map(|(p, o)| (p.to_string(), serde_json::Value::from(*o)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        pos
    }

    /// Reading a range: whether the record at `offset` of `partition` is in
    /// it. The first record at or past a partition's target ends that partition.
    fn within_bound(&mut self, partition: i32, offset: i64) -> bool {
        let Some(b) = &mut self.bound else {
            return true;
        };
        match b.targets.get(&partition) {
            Some(&t) if offset < t => true,
            _ => {
                b.done.insert(partition);
                false
            }
        }
    }

    /// Reading a range: partition `p` has no more records now.
    fn at_end(&mut self, consumer: &BaseConsumer, p: i32) {
        let Ok(pos) = consumer.position() else {
            return;
        };
        let mut at = pos.elements().iter().find_map(|e| match e.offset() {
            Offset::Offset(o) if e.partition() == p => Some(o),
            _ => None,
        });
        if at.is_none() {
            // Nothing consumed from it: it holds nothing from its oldest offset on.
            at = consumer
                .fetch_watermarks(&self.opts.topic, p, METADATA_TIMEOUT)
                .ok()
                .map(|(low, _)| low);
        }
        if let (Some(b), Some(at)) = (&mut self.bound, at) {
            b.eof.insert(p, at);
        }
    }

    /// Reading a range: every partition has reached its target (a partition
    /// the source's reader has not read from needs nothing).
    fn range_read(&mut self) -> bool {
        let Some(b) = &mut self.bound else {
            return false;
        };
        if self.partitions.is_empty() {
            return false;
        }
        for part in self.partitions.values() {
            let Some(&t) = b.targets.get(&part.id) else {
                b.done.insert(part.id);
                continue;
            };
            let at = part.polled.unwrap_or(i64::MIN);
            let end = b.eof.get(&part.id).copied().unwrap_or(i64::MIN);
            if at >= t || end >= t {
                b.done.insert(part.id);
            }
        }
        self.partitions.keys().all(|p| b.done.contains(p))
    }

    /// The source watermark: the minimum over partitions that are not idle.
    /// When every partition is idle, the largest any partition reached (all
    /// have gone quiet; none holds the others back).
    fn combined(&self) -> Option<i64> {
        if let Some(b) = &self.bound {
            // Reading a range: the watermark the source's reader had at the same
            // records, never more (the live stream takes over at its own). A
            // partition with records still to read holds it back.
            let mut min: Option<i64> = None;
            for p in self.partitions.values() {
                let has_records = b.targets.contains_key(&p.id) && !b.done.contains(&p.id);
                match p.watermark {
                    Some(w) => min = Some(min.map_or(w, |m| m.min(w))),
                    None if has_records => return None,
                    None => {}
                }
            }
            return min;
        }
        let active: Vec<&Partition> = self.partitions.values().filter(|p| !p.idle).collect();
        if active.is_empty() {
            return self.partitions.values().filter_map(|p| p.watermark).max();
        }
        active
            .iter()
            .map(|p| p.watermark)
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .min()
    }

    /// Mark partitions idle after the idle timeout; the watermark may move.
    fn check_idle(&mut self, now: Instant) -> Result<(), Closed> {
        let timeout = self.opts.idle_timeout;
        let mut changed = false;
        for p in self.partitions.values_mut() {
            if !p.idle && now.saturating_duration_since(p.last_record) >= timeout {
                p.idle = true;
                changed = true;
            }
        }
        if changed && self.stream.watermark.is_some() {
            if let Some(w) = self.combined() {
                self.send(Produced::Watermark(w))?;
            }
        }
        Ok(())
    }

    /// Commit read offsets to the group (for lag tools), refresh high
    /// watermarks and publish per-partition progress.
    fn progress(&mut self, consumer: &BaseConsumer) -> Result<(), Closed> {
        // A partition not read from yet (startup 'latest', nothing produced):
        // record the offset it was placed at, so a restart resumes there.
        let mut resolved = false;
        if self
            .partitions
            .values()
            .any(|p| p.next_offset.is_none() && p.polled.is_none())
        {
            if let Ok(pos) = consumer.position() {
                for e in pos.elements() {
                    if let (Offset::Offset(o), Some(p)) =
                        (e.offset(), self.partitions.get_mut(&e.partition()))
                    {
                        if p.next_offset.is_none() && p.polled.is_none() {
                            p.next_offset = Some(o);
                            p.polled = Some(o);
                            resolved = true;
                            if self.opts.startup == StartupMode::Latest {
                                self.origin.entry(p.id).or_insert(o);
                            }
                        }
                    }
                }
            }
        }
        if resolved {
            self.send(Produced::Position(self.position()))?;
        }
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions.values() {
            if let Some(o) = p.next_offset {
                let _ = tpl.add_partition_offset(&self.opts.topic, p.id, Offset::Offset(o));
            }
        }
        if tpl.count() > 0 && self.bound.is_none() {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(source = %self.stream.name, error = %e, "offset commit failed");
            }
        }
        for p in self.partitions.values_mut() {
            if let Ok((low, high)) =
                consumer.fetch_watermarks(&self.opts.topic, p.id, Duration::from_millis(500))
            {
                p.low_watermark = Some(low);
                p.high_watermark = Some(high);
            }
        }
        self.publish_progress();
        Ok(())
    }

    fn publish_progress(&self) {
        let progress: Vec<PartitionProgress> = self
            .partitions
            .values()
            .map(|p| PartitionProgress {
                partition: p.id,
                next_offset: p.next_offset,
                high_watermark: p.high_watermark,
                watermark: p.watermark,
                idle: p.idle,
            })
            .collect();
        let lag: i64 = self
            .partitions
            .values()
            .filter_map(|p| {
                let high = p.high_watermark?;
                // Nothing read yet from a partition: everything retained is lag
                // when starting from the earliest offset, nothing otherwise.
                let next = match (p.next_offset, self.opts.startup) {
                    (Some(n), _) => n,
                    (None, StartupMode::Earliest) => p.low_watermark.unwrap_or(0),
                    (None, _) => high,
                };
                Some((high - next).max(0))
            })
            .sum();
        let m = &self.stream.metrics;
        m.lag.store(lag, Ordering::Relaxed);
        *m.partitions.lock() = progress;
    }
}

/// The offsets skipped before `offset` in `part` that the broker had
/// already deleted (below its oldest offset as last fetched), if any. Other
/// gaps are normal (compacted topics, transaction markers).
fn deleted_before_read(part: &Partition, offset: i64) -> Option<(i64, i64)> {
    let expected = part.polled?;
    let low = part.low_watermark?;
    (offset > expected && low > expected).then(|| (expected, low.min(offset) - 1))
}

/// A Kafka error in words.
fn describe(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{e} ({code:?})"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(next: Option<i64>, low: Option<i64>) -> Partition {
        Partition {
            id: 0,
            next_offset: next,
            polled: next,
            low_watermark: low,
            high_watermark: None,
            watermark: None,
            last_record: Instant::now(),
            idle: false,
        }
    }

    #[test]
    fn only_gaps_below_the_oldest_offset_are_losses() {
        // Expected 5, the broker keeps 9.. and hands out 9: 5..=8 were deleted.
        assert_eq!(
            deleted_before_read(&part(Some(5), Some(9)), 9),
            Some((5, 8))
        );
        // A gap above the oldest offset (compaction, transaction markers) is normal.
        assert_eq!(deleted_before_read(&part(Some(5), Some(2)), 9), None);
        // No gap, or nothing known yet.
        assert_eq!(deleted_before_read(&part(Some(5), Some(9)), 5), None);
        assert_eq!(deleted_before_read(&part(None, Some(9)), 12), None);
        assert_eq!(deleted_before_read(&part(Some(5), None), 12), None);
        // The broker's oldest is above the record handed out (stale): up to the record.
        assert_eq!(
            deleted_before_read(&part(Some(5), Some(20)), 12),
            Some((5, 11))
        );
    }
}
