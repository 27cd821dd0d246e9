//! A stream object: a table (fed by `INSERT`) or a source (fed by a
//! connector). Both push record batches through [`StreamObject::push`], which
//! counts rows, detects late rows, advances the watermark and publishes to
//! every subscribed view.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::kernels::aggregate::max;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;

mod alter;

pub use alter::widen;

use super::table_log::TableLog;
use crate::error::{EddyError, Result};
use crate::sql::ObjectKind;
use crate::state::{Epoch, StreamPosition};
use crate::types::message::WatermarkTracker;
use crate::types::publish::Publisher;
use crate::types::time::event_times_ns;
use crate::types::{Changes, Message, Watermark};

/// Sentinel for "no watermark yet" in atomics.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Progress counters of a stream, shown in `eddy.sources`.
#[derive(Debug)]
pub struct SourceMetrics {
    /// Rows accepted.
    pub rows_read: AtomicU64,
    /// Rows rejected (bad records).
    pub rows_rejected: AtomicU64,
    /// Rows whose event time was below the watermark on arrival.
    pub rows_late: AtomicU64,
    /// Current watermark (ns), or [`NO_WATERMARK`].
    pub watermark: AtomicI64,
    /// Largest event time seen (ns), or [`NO_WATERMARK`].
    pub max_event_time: AtomicI64,
    /// `running`, `finished`, `failed`.
    pub status: Mutex<String>,
    /// Last error, if any.
    pub last_error: Mutex<Option<String>>,
    /// Records upstream not yet read (Kafka: high watermark minus position, summed
    /// over partitions); 0 for tables and generators.
    pub lag: AtomicI64,
    /// Dead letters of this source evicted from `eddy.dead_letters` by its bound.
    pub dead_letters_evicted: Arc<AtomicU64>,
    /// Per-partition progress (Kafka), shown in `eddy.source_partitions`.
    pub partitions: Mutex<Vec<PartitionProgress>>,
    /// Rows accepted per second lately.
    pub rate: crate::types::rate::RateMeter,
}

/// Progress of one partition of a partitioned source.
#[derive(Debug, Clone, Default)]
pub struct PartitionProgress {
    /// Partition number.
    pub partition: i32,
    /// Next offset to read.
    pub next_offset: Option<i64>,
    /// High watermark reported by the broker.
    pub high_watermark: Option<i64>,
    /// Event-time watermark of this partition (ns).
    pub watermark: Option<i64>,
    /// True when the partition is idle and does not hold the source watermark back.
    pub idle: bool,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        SourceMetrics {
            rows_read: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            rows_late: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
            max_event_time: AtomicI64::new(NO_WATERMARK),
            status: Mutex::new("running".into()),
            last_error: Mutex::new(None),
            lag: AtomicI64::new(0),
            dead_letters_evicted: Arc::new(AtomicU64::new(0)),
            partitions: Mutex::new(Vec::new()),
            rate: Default::default(),
        }
    }
}

/// How a stream derives its watermark.
#[derive(Debug, Clone)]
pub struct WatermarkGen {
    /// Index of the event-time column.
    pub time_index: usize,
    /// Name of the event-time column.
    pub time_column: String,
    /// The watermark expression (evaluated per row; the watermark is the max).
    pub expr: Arc<dyn PhysicalExpr>,
    /// The expression rises with the time column alone (`ts`, `ts - INTERVAL '4' SECOND`): a
    /// batch's candidate is its value at the row with the greatest event time, so only that row
    /// is evaluated.
    pub monotone: bool,
}

/// Rows of a table kept for `SELECT` (most recent first out when full).
struct Retained {
    batches: VecDeque<RecordBatch>,
    rows: usize,
    max_rows: usize,
    evicted_rows: u64,
}

impl Retained {
    /// Keep `batch`, evicting the oldest rows beyond the bound.
    fn keep(&mut self, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.batches.push_back(batch);
        while self.rows > self.max_rows {
            let Some(b) = self.batches.pop_front() else {
                break;
            };
            self.rows -= b.num_rows();
            self.evicted_rows += b.num_rows() as u64;
        }
    }
}

/// A table or source.
pub struct StreamObject {
    /// Object name.
    pub name: String,
    /// Table or source.
    pub kind: ObjectKind,
    /// Connector name (`table` for INSERT-fed tables).
    pub connector: String,
    /// Row schema.
    pub schema: SchemaRef,
    /// Watermark definition.
    pub watermark: Option<WatermarkGen>,
    /// Progress counters.
    pub metrics: SourceMetrics,
    /// Subscribers (views).
    pub publisher: Publisher,
    tracker: Mutex<WatermarkTracker>,
    push_lock: tokio::sync::Mutex<()>,
    retained: Option<Mutex<Retained>>,
    /// Connectors wait for this to be true before reading (see [`StreamObject::started`]).
    start_gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// A table's write-ahead log, when the server has a data dir.
    table_log: Option<Arc<Mutex<TableLog>>>,
    /// Orders logging and publishing of concurrent INSERTs.
    insert_lock: tokio::sync::Mutex<()>,
    /// Rows published and the connector's position (changed under `push_lock`).
    position: Mutex<Position>,
    /// An upsert table's current rows (`PRIMARY KEY`); its pushes are log rows.
    upsert: Option<Mutex<super::upsert::UpsertState>>,
    /// How the source's connector reads again, for views that backfill.
    replay: std::sync::OnceLock<super::backfill::ReplaySpec>,
}

/// How far a stream has got.
#[derive(Debug, Default)]
struct Position {
    rows: u64,
    connector: Option<serde_json::Value>,
}

impl std::fmt::Debug for StreamObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamObject")
            .field("name", &self.name)
            .finish()
    }
}

impl StreamObject {
    /// Create a stream. `retain_rows` > 0 keeps that many recent rows for `SELECT` (tables).
    pub fn new(
        name: String,
        kind: ObjectKind,
        connector: String,
        schema: SchemaRef,
        watermark: Option<WatermarkGen>,
        retain_rows: usize,
    ) -> Self {
        StreamObject {
            name,
            kind,
            connector,
            schema,
            watermark,
            metrics: SourceMetrics::default(),
            publisher: Publisher::new(),
            tracker: Mutex::new(WatermarkTracker::default()),
            push_lock: tokio::sync::Mutex::new(()),
            retained: (retain_rows > 0).then(|| {
                Mutex::new(Retained {
                    batches: VecDeque::new(),
                    rows: 0,
                    max_rows: retain_rows,
                    evicted_rows: 0,
                })
            }),
            start_gate: None,
            table_log: None,
            insert_lock: tokio::sync::Mutex::new(()),
            position: Mutex::new(Position::default()),
            upsert: None,
            replay: std::sync::OnceLock::new(),
        }
    }

    /// Say how the source's connector reads again (once, at `CREATE SOURCE`).
    pub fn set_replay(&self, spec: super::backfill::ReplaySpec) {
        let _ = self.replay.set(spec);
    }

    /// How the source's connector reads again (Kafka and file sources).
    pub fn replay(&self) -> Option<&super::backfill::ReplaySpec> {
        self.replay.get()
    }

    /// A stream of the same name, schema and watermark that nobody reads: a
    /// backfill's range reader computes watermarks and reports its own
    /// progress with it, leaving this stream's counters alone.
    pub fn stand_in(&self) -> StreamObject {
        StreamObject::new(
            self.name.clone(),
            self.kind,
            self.connector.clone(),
            self.schema.clone(),
            self.watermark.clone(),
            0,
        )
    }

    /// Hold the stream: nothing is published (rows, watermarks, barriers)
    /// until the guard is dropped. A backfill's last phase holds it.
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.push_lock.lock().await
    }

    /// The table's log as it is now, to read rows from (`None` without a log).
    pub fn log_range(&self) -> Option<super::table_log::LogRange> {
        self.table_log.as_ref().map(|l| l.lock().range())
    }

    /// True when the table keeps a log (the server has a data directory).
    pub fn has_log(&self) -> bool {
        self.table_log.is_some()
    }

    /// Make this table an upsert table: rows pushed are log rows (see [`super::upsert`]).
    pub fn with_upsert(mut self, state: super::upsert::UpsertState) -> Self {
        self.upsert = Some(Mutex::new(state));
        self
    }

    /// True for an upsert table (one with a `PRIMARY KEY`).
    pub fn is_upsert(&self) -> bool {
        self.upsert.is_some()
    }

    /// An upsert table's key columns.
    pub fn primary_key(&self) -> Option<Vec<String>> {
        self.upsert.as_ref().map(|u| u.lock().key_names())
    }

    /// An upsert table's current rows (empty for other streams).
    pub fn current_rows(&self) -> Result<Vec<RecordBatch>> {
        match &self.upsert {
            Some(u) => u.lock().rows(),
            None => Ok(Vec::new()),
        }
    }

    /// Log this table's INSERTs durably in `log`.
    pub fn with_table_log(mut self, log: TableLog) -> Self {
        self.table_log = Some(Arc::new(Mutex::new(log)));
        self
    }

    /// Rows logged by earlier runs of the server (empty without a log).
    pub fn logged_batches(&self) -> Result<super::table_log::Replayed> {
        match &self.table_log {
            Some(log) => log.lock().replay(),
            None => Ok(super::table_log::Replayed::default()),
        }
    }

    /// Drop the parts of the table's log before row `row` beyond the newest
    /// `keep_bytes` (see [`TableLog::compact`]); returns the bytes freed.
    /// Blocking (file removal).
    pub fn compact_log(&self, row: u64, keep_bytes: u64) -> u64 {
        match &self.table_log {
            Some(log) => log.lock().compact(row, keep_bytes),
            None => 0,
        }
    }

    /// Rows ever logged by the table (0 without a log).
    pub fn log_next_row(&self) -> u64 {
        self.table_log.as_ref().map_or(0, |l| l.lock().next_row())
    }

    /// `INSERT`: log `batches` durably (fsync, on a blocking thread), then publish them.
    pub async fn insert(&self, batches: Vec<RecordBatch>) -> Result<()> {
        let _order = self.insert_lock.lock().await;
        if let Some(u) = &self.upsert {
            u.lock().check_capacity(&batches)?;
        }
        if let Some(log) = &self.table_log {
            let log = log.clone();
            let to_log = batches.clone();
            tokio::task::spawn_blocking(move || log.lock().append(&to_log))
                .await
                .map_err(|e| EddyError::Internal(format!("table log task: {e}")))??;
        }
        for b in batches {
            self.push(b).await?;
        }
        Ok(())
    }

    /// Hold the connector until `gate` is true (the engine opens it once a
    /// restart has recreated every object, so all views see the same records).
    pub fn with_start_gate(mut self, gate: tokio::sync::watch::Receiver<bool>) -> Self {
        self.start_gate = Some(gate);
        self
    }

    /// Wait until the connector may start reading.
    pub async fn started(&self) {
        if let Some(gate) = &self.start_gate {
            let mut gate = gate.clone();
            // An error means the engine is gone; nothing to wait for then.
            let _ = gate.wait_for(|open| *open).await;
        }
    }

    /// Wait until the connector may start and a view reads the stream, so the
    /// first view sees it from its first row. The gate is checked again once a
    /// reader is there: a statement that creates several views (a query string,
    /// a view with hoisted join inputs) holds it until all of them have
    /// subscribed, so none of them misses the first rows.
    pub async fn wait_for_first_reader(&self, poll: std::time::Duration) {
        loop {
            self.started().await;
            let open = self.start_gate.as_ref().is_none_or(|g| *g.borrow());
            if open && self.publisher.subscriber_count().await > 0 {
                return;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// A file source `s` of one nullable BIGINT column `v`, without a watermark (tests).
    #[cfg(test)]
    pub(crate) fn test_source() -> Self {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        StreamObject::new(
            "s".into(),
            ObjectKind::Source,
            "file".into(),
            schema,
            None,
            0,
        )
    }

    /// The event-time column the watermark refers to.
    pub fn time_column(&self) -> Option<&str> {
        self.watermark.as_ref().map(|w| w.time_column.as_str())
    }

    /// Rows of a table evicted from its `SELECT` history.
    pub fn evicted_rows(&self) -> u64 {
        self.retained.as_ref().map_or(0, |r| r.lock().evicted_rows)
    }

    /// Push a batch (already of this stream's schema) to every subscriber:
    /// count it, count late rows, then publish the data and the advanced
    /// watermark, in that order. The watermark candidate is the largest value
    /// of the watermark expression over the batch.
    pub async fn push(&self, batch: RecordBatch) -> Result<()> {
        let candidate = self.batch_watermark(&batch)?;
        self.push_with_watermark(batch, candidate).await
    }

    /// The watermark candidate of a batch: the largest value of the watermark
    /// expression over its rows.
    pub fn batch_watermark(&self, batch: &RecordBatch) -> Result<Option<i64>> {
        Ok(self
            .group_watermarks(batch, |_| 0, 1)?
            .and_then(|per_group| per_group[0]))
    }

    /// The watermark candidate of each group of rows of `batch` (row `i` is in
    /// group `group(i)`, one of `groups`; a partitioned source's partitions):
    /// the largest value of the watermark expression over the group's rows,
    /// `None` where no row has one. `None` when the stream has no watermark. A
    /// monotone expression is evaluated on each group's latest row only.
    pub fn group_watermarks(
        &self,
        batch: &RecordBatch,
        group: impl Fn(usize) -> usize,
        groups: usize,
    ) -> Result<Option<Vec<Option<i64>>>> {
        use datafusion::arrow::array::Array;
        let Some(wm) = &self.watermark else {
            return Ok(None);
        };
        let mut out = vec![None; groups];
        if !wm.monotone {
            if let Some(c) = self.watermark_candidates(batch)? {
                for row in 0..c.len() {
                    let g = group(row);
                    if c.is_valid(row) {
                        let v = c.value(row);
                        out[g] = Some(out[g].map_or(v, |w: i64| w.max(v)));
                    }
                }
            }
            return Ok(Some(out));
        }
        let ts = event_times_ns(batch.column(wm.time_index))?;
        let mut latest: Vec<Option<(i64, usize)>> = vec![None; groups];
        for (row, t) in ts.iter().enumerate() {
            if let Some(t) = t {
                let g = group(row);
                if latest[g].is_none_or(|(m, _)| t > m) {
                    latest[g] = Some((t, row));
                }
            }
        }
        let rows: Vec<u32> = latest.iter().flatten().map(|&(_, r)| r as u32).collect();
        if rows.is_empty() {
            return Ok(Some(out));
        }
        let picked = datafusion::arrow::compute::take_record_batch(
            batch,
            &datafusion::arrow::array::UInt32Array::from(rows),
        )?;
        if let Some(c) = self.watermark_candidates(&picked)? {
            let mut k = 0;
            for (g, l) in latest.iter().enumerate() {
                if l.is_some() {
                    out[g] = c.is_valid(k).then(|| c.value(k));
                    k += 1;
                }
            }
        }
        Ok(Some(out))
    }

    /// Rows of `batch` that cannot enter the stream because of their event
    /// time, with why, ascending: an event time outside the nanosecond range
    /// watermarks are kept in (1677-09-21 to 2262-04-11), or one whose
    /// watermark expression cannot be computed (`ts - INTERVAL '1' SECOND`
    /// at the bottom of that range). Checked before a row is logged or
    /// published, so such a row is refused (INSERT) or dead-lettered
    /// (sources), never half-accepted.
    pub fn event_time_violations(&self, batch: &RecordBatch) -> Vec<(usize, String)> {
        let Some(wm) = &self.watermark else {
            return Vec::new();
        };
        if batch.num_rows() == 0 || self.event_times_computable(wm, batch) {
            return Vec::new();
        }
        // Some row fails: find which, one row at a time (rare).
        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            let one = batch.slice(row, 1);
            let result = event_times_ns(one.column(wm.time_index))
                .and_then(|_| self.watermark_candidates(&one).map(|_| ()));
            if let Err(e) = result {
                out.push((
                    row,
                    format!(
                        "event time {} = {} cannot be used: {e} (event times must lie between \
                         1677-09-21 00:12:44 and 2262-04-11 23:47:16, where the watermark \
                         `{}` can be computed too)",
                        wm.time_column,
                        display_value(one.column(wm.time_index)),
                        wm.expr
                    ),
                ));
            }
        }
        out
    }

    /// True when every row's event time and watermark can be computed. A
    /// monotone watermark is checked at the earliest and latest event time only.
    fn event_times_computable(&self, wm: &WatermarkGen, batch: &RecordBatch) -> bool {
        let Ok(ts) = event_times_ns(batch.column(wm.time_index)) else {
            return false;
        };
        if !wm.monotone {
            return self.watermark_candidates(batch).is_ok();
        }
        let rows = [
            ts.iter()
                .enumerate()
                .filter_map(|(i, t)| Some((t?, i)))
                .min(),
            ts.iter()
                .enumerate()
                .filter_map(|(i, t)| Some((t?, i)))
                .max(),
        ];
        rows.into_iter()
            .flatten()
            .all(|(_, row)| self.watermark_candidates(&batch.slice(row, 1)).is_ok())
    }

    /// The watermark expression evaluated on each row of `batch` (ns), or
    /// `None` when the stream has no watermark.
    pub fn watermark_candidates(
        &self,
        batch: &RecordBatch,
    ) -> Result<Option<datafusion::arrow::array::TimestampNanosecondArray>> {
        let Some(wm) = &self.watermark else {
            return Ok(None);
        };
        if batch.num_rows() == 0 {
            return Ok(Some(
                datafusion::arrow::array::TimestampNanosecondArray::from(Vec::<i64>::new()),
            ));
        }
        let v = wm.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(Some(event_times_ns(&v)?))
    }

    /// Like [`StreamObject::push`], with the watermark candidate computed by
    /// the caller (a partitioned source combines per-partition watermarks).
    pub async fn push_with_watermark(
        &self,
        batch: RecordBatch,
        candidate: Option<i64>,
    ) -> Result<()> {
        self.push_at(batch, candidate, None).await
    }

    /// Like [`StreamObject::push_with_watermark`]; the connector's position
    /// after this batch (offsets, lines, generator position) is recorded with
    /// it, for checkpoints.
    pub async fn push_at(
        &self,
        batch: RecordBatch,
        candidate: Option<i64>,
        connector_position: Option<serde_json::Value>,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            if let Some(p) = connector_position {
                let _guard = self.push_lock.lock().await;
                self.position.lock().connector = Some(p);
            }
            if let Some(c) = candidate {
                self.advance_watermark(c).await;
            }
            return Ok(());
        }
        let _guard = self.push_lock.lock().await;
        let rows = batch.num_rows() as u64;
        let mut new_wm = None;
        if let Some(wm) = &self.watermark {
            let ts = event_times_ns(batch.column(wm.time_index))?;
            let current = self.tracker.lock().current();
            if let Some(cur) = current {
                let late = ts.iter().filter(|t| t.is_some_and(|t| t < cur)).count();
                self.metrics
                    .rows_late
                    .fetch_add(late as u64, Ordering::Relaxed);
            }
            if let Some(m) = max(&ts) {
                self.metrics.max_event_time.fetch_max(m, Ordering::Relaxed);
            }
            if let Some(candidate) = candidate {
                new_wm = self.tracker.lock().advance(candidate);
            }
        }
        self.metrics
            .rows_read
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.metrics.rate.add(batch.num_rows() as u64);
        let retained = &self.retained;
        match &self.upsert {
            Some(u) => {
                self.publisher
                    .publish_with(|| Ok(Message::Data(u.lock().apply(&batch)?)))
                    .await?
            }
            None => {
                self.publisher
                    .publish(Message::Data(Changes::inserts(batch)), |m| {
                        if let (Some(r), Message::Data(c)) = (retained, m) {
                            r.lock().keep(c.batch.clone());
                        }
                    })
                    .await
            }
        }
        {
            let mut p = self.position.lock();
            p.rows += rows;
            if connector_position.is_some() {
                p.connector = connector_position;
            }
        }
        if let Some(w) = new_wm {
            self.publish_watermark(w).await;
        }
        Ok(())
    }

    /// Checkpoint barrier: record where the stream is and publish the barrier,
    /// atomically with respect to pushes.
    pub async fn inject_barrier(&self, epoch: Epoch) -> StreamPosition {
        let guard = self.push_lock.lock().await;
        let pos = self.position_while_held(&guard);
        self.publisher
            .publish(Message::Barrier(epoch), |_| {})
            .await;
        pos
    }

    /// A keyed source's current rows, for a checkpoint (tables rebuild theirs
    /// from their log; other streams have none).
    fn keyed_rows(&self) -> Vec<RecordBatch> {
        if self.kind != ObjectKind::Source {
            return Vec::new();
        }
        self.current_rows().unwrap_or_else(|e| {
            tracing::error!(source = %self.name, error = %e, "cannot read the source's current rows for a checkpoint");
            Vec::new()
        })
    }

    /// Start from a checkpointed position (before the connector starts).
    pub async fn restore_position(&self, pos: &StreamPosition) {
        for b in &pos.current {
            match super::upsert::with_op(b, true) {
                Ok(log) => self.retain_only(log),
                Err(e) => {
                    tracing::error!(source = %self.name, error = %e, "cannot restore the source's current rows")
                }
            }
        }
        let _guard = self.push_lock.lock().await;
        {
            let mut p = self.position.lock();
            p.rows = pos.rows;
            p.connector = pos.connector.clone();
        }
        if let Some(w) = pos.watermark {
            self.tracker.lock().advance(w);
            self.metrics.watermark.store(w, Ordering::Relaxed);
            self.publisher.set_watermark(Watermark::EventTime(w)).await;
        }
    }

    /// The connector position to resume from, if a checkpoint recorded one.
    pub fn resume_position(&self) -> Option<serde_json::Value> {
        self.position.lock().connector.clone()
    }

    /// True when the rows it keeps for `SELECT` are all it ever delivered
    /// (or it has delivered nothing yet): a new view starts from them at once,
    /// with nothing to backfill. Hold the stream to act on the answer.
    pub fn holds_everything(&self) -> bool {
        let nothing_yet = {
            let p = self.position.lock();
            p.rows == 0 && p.connector.is_none()
        };
        nothing_yet
            || self
                .retained
                .as_ref()
                .is_some_and(|r| r.lock().evicted_rows == 0)
    }

    /// Rows published so far.
    pub fn rows_published(&self) -> u64 {
        self.position.lock().rows
    }

    /// Keep `batch` for `SELECT` without publishing it (a restored table's
    /// rows that its views' checkpointed state already holds).
    pub fn retain_only(&self, batch: RecordBatch) {
        if let Some(u) = &self.upsert {
            if let Err(e) = u.lock().apply(&batch) {
                tracing::error!(table = %self.name, error = %e, "cannot restore the table's rows");
            }
            return;
        }
        if let Some(r) = &self.retained {
            r.lock().keep(batch);
        }
    }

    /// Advance the watermark without data (an idle partition stopped holding it back).
    pub async fn advance_watermark(&self, candidate: i64) {
        if self.watermark.is_none() {
            return;
        }
        let _guard = self.push_lock.lock().await;
        let new_wm = self.tracker.lock().advance(candidate);
        if let Some(w) = new_wm {
            self.publish_watermark(w).await;
        }
    }

    async fn publish_watermark(&self, w: i64) {
        self.metrics.watermark.store(w, Ordering::Relaxed);
        self.publisher
            .publish(Message::Watermark(Watermark::EventTime(w)), |_| {})
            .await;
    }

    /// Messages that bring a new subscriber up to date: a table's retained rows.
    pub fn snapshot_messages(&self) -> Vec<Message> {
        if let Some(u) = &self.upsert {
            return match u.lock().rows() {
                Ok(rows) => rows
                    .into_iter()
                    .map(|b| Message::Data(Changes::inserts(b)))
                    .collect(),
                Err(e) => {
                    tracing::error!(table = %self.name, error = %e, "cannot read the table's rows");
                    Vec::new()
                }
            };
        }
        match &self.retained {
            None => Vec::new(),
            Some(r) => r
                .lock()
                .batches
                .iter()
                .map(|b| Message::Data(Changes::inserts(b.clone())))
                .collect(),
        }
    }

    /// Count `rows` logged rows as consumed without publishing them (rows of a
    /// table's log that could not be replayed), so the checkpointed row count
    /// keeps matching the log.
    pub async fn skip_logged_rows(&self, rows: u64) {
        let _guard = self.push_lock.lock().await;
        self.position.lock().rows += rows;
    }

    /// Count `rows` rejected rows and show why in `eddy.sources.last_error`
    /// (the stream keeps running).
    pub fn note_rejected(&self, rows: u64, why: String) {
        self.metrics
            .rows_rejected
            .fetch_add(rows, Ordering::Relaxed);
        *self.metrics.last_error.lock() = Some(why);
    }

    /// Mark the stream failed with an error (shown in `eddy.sources`).
    pub fn fail(&self, error: &EddyError) {
        *self.metrics.status.lock() = "failed".into();
        *self.metrics.last_error.lock() = Some(error.to_string());
    }
}

/// One value as text, for messages.
fn display_value(col: &datafusion::arrow::array::ArrayRef) -> String {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("NULL");
    ArrayFormatter::try_new(col.as_ref(), &opts)
        .map(|f| f.value(0).to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `SELECT` over a table reads its retained rows; sources are not stored.
#[derive(Debug)]
pub struct StreamTable(pub Arc<StreamObject>);

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if let Some(u) = &self.0.upsert {
            let rows = u
                .lock()
                .rows()
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            return Ok(MemorySourceConfig::try_new_exec(
                &[rows],
                self.0.schema.clone(),
                projection.cloned(),
            )?);
        }
        let Some(r) = &self.0.retained else {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                EddyError::NotSupported {
                    message: format!(
                        "source \"{}\" is a stream and is not stored; it cannot be queried directly",
                        self.0.name
                    ),
                    hint: Some(
                        "Create a materialized view over it and query the view.".into(),
                    ),
                },
            )));
        };
        let batches: Vec<RecordBatch> = r.lock().batches.iter().cloned().collect();
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.0.schema.clone(),
            projection.cloned(),
        )?)
    }
}
