//! Materialized views: their rows, progress counters, and the
//! [`TableProvider`] that lets `SELECT` read a consistent snapshot.

pub mod changes;
pub mod store;
pub mod subscription;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;

use crate::connectors::stream::NO_WATERMARK;
use crate::error::{EddyError, Result};
use crate::sql::EmitMode;
use crate::state::{CheckpointHub, NodeSnapshot, ViewSnapshot};
use crate::types::publish::Publisher;
use crate::types::{Changes, Message, ViewOutput};
use changes::{ChangeLimits, ChangeLog, Start};
use store::ViewStore;

/// One operator partition's live counters (`eddy.operators`, `/metrics`), kept by the task
/// that runs it.
#[derive(Debug, Default)]
pub struct OperatorStats {
    /// The graph node's id.
    pub id: String,
    /// Its EXPLAIN line.
    pub explain: String,
    /// Which partition.
    pub partition: usize,
    /// Rows in (over every input port).
    pub rows_in: AtomicU64,
    /// Rows out.
    pub rows_out: AtomicU64,
    /// Bytes of state.
    pub state_bytes: AtomicU64,
    /// The last watermark it forwarded (ns), or NO_WATERMARK.
    pub watermark: AtomicI64,
    /// Time its task waited to hand output on (the next task's channel full, or the view's
    /// subscribers): the operator at the end of a task carries its task's wait.
    pub blocked_ns: AtomicU64,
}

/// A materialized view: rows maintained by its pipeline.
pub struct MaterializedView {
    /// View name.
    pub name: String,
    /// Row schema.
    pub schema: SchemaRef,
    /// Emission mode.
    pub emit: EmitMode,
    /// What its output stream is like.
    pub output: ViewOutput,
    /// The rows.
    pub store: Mutex<ViewStore>,
    /// Downstream subscribers (views on this view).
    pub publisher: Publisher,
    /// Client subscribers (`SUBSCRIBE`): positions, retained changes. Locked after `store`.
    pub changes: Mutex<ChangeLog>,
    /// Input rows dropped as late.
    pub rows_late: AtomicU64,
    /// Rows changed per second lately.
    pub rate: crate::types::rate::RateMeter,
    /// Operator state bytes, one slot per task.
    task_bytes: Mutex<Vec<Arc<AtomicU64>>>,
    /// Every operator partition's counters, in graph order.
    operators: Mutex<Vec<Arc<OperatorStats>>>,
    /// Output watermark (ns), or NO_WATERMARK.
    pub watermark: AtomicI64,
    /// `running`, `backfilling` (see [`MaterializedView::backfilling`]) or `failed`.
    pub status: Mutex<String>,
    /// The view's backfills (reading what its streams delivered before it existed).
    pub backfills: Mutex<Vec<Arc<crate::connectors::backfill::Backfill>>>,
    /// The error that stopped the view.
    pub last_error: Mutex<Option<String>>,
    /// Operator state gathered per checkpoint whose barrier is passing through.
    pending_checkpoints: Mutex<BTreeMap<u64, ViewSnapshot>>,
    /// Where the view hands in its checkpoint state (none without a data dir).
    pub hub: Option<Arc<CheckpointHub>>,
    /// Where its graph delivers its state at a [`crate::state::HANDOVER`]
    /// barrier (`engine::replace`).
    pub handover: Mutex<Option<tokio::sync::oneshot::Sender<ViewSnapshot>>>,
}

impl std::fmt::Debug for MaterializedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterializedView")
            .field("name", &self.name)
            .finish()
    }
}

impl MaterializedView {
    /// A new, empty view whose rows are `output`.
    pub fn new(
        output: ViewOutput,
        emit: EmitMode,
        max_rows: u64,
        subscriptions: ChangeLimits,
        hub: Option<Arc<CheckpointHub>>,
    ) -> Result<Self> {
        Ok(MaterializedView {
            name: output.name.clone(),
            schema: output.schema.clone(),
            emit,
            store: Mutex::new(if output.updating {
                ViewStore::new(output.schema.clone(), max_rows)?
            } else {
                ViewStore::append_only(output.schema.clone(), max_rows)?
            }),
            output,
            publisher: Publisher::new(),
            changes: Mutex::new(ChangeLog::new(subscriptions)),
            rows_late: AtomicU64::new(0),
            rate: Default::default(),
            task_bytes: Mutex::new(Vec::new()),
            operators: Mutex::new(Vec::new()),
            watermark: AtomicI64::new(NO_WATERMARK),
            status: Mutex::new("running".into()),
            backfills: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
            pending_checkpoints: Mutex::new(BTreeMap::new()),
            hub,
            handover: Mutex::new(None),
        })
    }

    /// Apply changes to the rows and publish them downstream.
    pub async fn apply(&self, changes: Changes) -> Result<()> {
        let mut result = Ok(());
        self.publisher
            .publish(Message::Data(changes), |m| {
                if let Message::Data(c) = m {
                    let mut store = self.store.lock();
                    result = store.apply(c);
                    if result.is_ok() {
                        self.rate.add(c.num_rows() as u64);
                        self.changes.lock().record(c);
                    }
                }
            })
            .await;
        result
    }

    /// Load checkpointed rows into the (empty) store; they are as of change `position`.
    pub fn restore_rows(
        &self,
        rows: &[datafusion::arrow::record_batch::RecordBatch],
        position: Option<i64>,
    ) -> Result<()> {
        let mut store = self.store.lock();
        for b in rows {
            store.apply(&Changes::inserts(b.clone()))?;
        }
        if let Some(p) = position {
            self.changes.lock().restore(p);
        }
        Ok(())
    }

    /// The rows now and the change position they are as of, taken together.
    pub fn rows_at_position(
        &self,
    ) -> Result<(Arc<Vec<datafusion::arrow::record_batch::RecordBatch>>, i64)> {
        let mut store = self.store.lock();
        let rows = store.snapshot()?;
        Ok((rows, self.changes.lock().position()))
    }

    /// A new client subscription (`SUBSCRIBE`) starting at `start`.
    pub fn subscribe_changes(&self, start: Start, via: &'static str) -> Result<changes::Receiver> {
        let mut store = self.store.lock();
        let watermark = Some(self.watermark.load(Ordering::Relaxed)).filter(|w| *w != NO_WATERMARK);
        self.changes
            .lock()
            .subscribe(&self.name, start, via, watermark, || {
                Ok(store.snapshot()?.as_ref().clone())
            })
    }

    /// The view's watermark moved to `watermark` (ns): tell client subscribers.
    pub fn advance_watermark(&self, watermark: i64) {
        let before = self.watermark.fetch_max(watermark, Ordering::Relaxed);
        if watermark > before {
            self.changes.lock().progress(Some(watermark));
        }
    }

    /// Messages that bring a new downstream subscriber up to date.
    pub fn snapshot_messages(&self) -> Result<Vec<Message>> {
        let snap = self.store.lock().snapshot()?;
        Ok(snap
            .iter()
            .map(|b| Message::Data(Changes::inserts(b.clone())))
            .collect())
    }

    /// Total state bytes: every task's operators, and the rows.
    pub fn state_bytes(&self) -> u64 {
        self.task_bytes
            .lock()
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.store.lock().bytes() as u64
    }

    /// A slot where one task keeps its operators' state bytes.
    pub fn state_slot(&self) -> Arc<AtomicU64> {
        let slot = Arc::new(AtomicU64::new(0));
        self.task_bytes.lock().push(slot.clone());
        slot
    }

    /// Counters for partition `partition` of operator `id` (explained as `explain`).
    pub fn operator_stats(
        &self,
        id: &str,
        explain: String,
        partition: usize,
    ) -> Arc<OperatorStats> {
        let stats = Arc::new(OperatorStats {
            id: id.to_string(),
            explain,
            partition,
            watermark: AtomicI64::new(NO_WATERMARK),
            ..OperatorStats::default()
        });
        self.operators.lock().push(stats.clone());
        stats
    }

    /// Forget the counters and state slots of a graph that stopped (its
    /// successor registers its own).
    pub fn forget_tasks(&self) {
        self.task_bytes.lock().clear();
        self.operators.lock().clear();
    }

    /// Every operator partition's counters.
    pub fn operators(&self) -> Vec<Arc<OperatorStats>> {
        self.operators.lock().clone()
    }

    /// Add one operator partition's state to checkpoint `epoch`.
    pub fn deposit_node(&self, epoch: u64, node: NodeSnapshot) {
        self.pending_checkpoints
            .lock()
            .entry(epoch)
            .or_default()
            .nodes
            .push(node);
    }

    /// The operator state gathered for `epoch` (older epochs that never
    /// completed are dropped).
    pub fn take_pending(&self, epoch: u64) -> ViewSnapshot {
        let mut pending = self.pending_checkpoints.lock();
        let snap = pending.remove(&epoch).unwrap_or_default();
        pending.retain(|e, _| *e > epoch);
        snap
    }

    /// The view's status: `backfilling` while a backfill of a running view goes on.
    pub fn status(&self) -> String {
        let status = self.status.lock().clone();
        if status == "running" && self.backfills.lock().iter().any(|b| !b.ended()) {
            return "backfilling".into();
        }
        status
    }

    /// Rows its backfills handed over, and records they still have to read
    /// (`None` when it never backfilled / has no backfill running).
    pub fn backfill_progress(&self) -> (Option<i64>, Option<i64>) {
        use std::sync::atomic::Ordering::Relaxed;
        let b = self.backfills.lock();
        if b.is_empty() {
            return (None, None);
        }
        let rows = b.iter().map(|b| b.rows.load(Relaxed) as i64).sum();
        let running: Vec<_> = b.iter().filter(|b| !b.ended()).collect();
        let remaining = (!running.is_empty()).then(|| {
            running
                .iter()
                .map(|b| b.remaining.load(Relaxed).max(0))
                .sum()
        });
        (Some(rows), remaining)
    }

    /// Mark the view failed.
    pub fn fail(&self, error: &EddyError) {
        tracing::warn!(view = %self.name, error = %error, "materialized view failed");
        *self.status.lock() = "failed".into();
        *self.last_error.lock() = Some(error.to_string());
        self.changes
            .lock()
            .close(changes::Ended::Failed(error.to_string()));
    }
}

/// `SELECT` over a view reads a snapshot of its rows.
#[derive(Debug)]
pub struct ViewTable(pub Arc<MaterializedView>);

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let snap = self
            .0
            .store
            .lock()
            .snapshot()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[snap.as_ref().clone()],
            self.0.schema.clone(),
            projection.cloned(),
        )?)
    }
}
