//! Consistent checkpoints with aligned barriers.
//!
//! ```text
//!  CHECKPOINT / every checkpoint_interval
//!        │ epoch e
//!        ▼
//!  every table and source, under its push lock: record its position (rows
//!  published, connector offsets, watermark) and publish Barrier(e)
//!        │
//!        ▼
//!  view front ──► aggregate partitions ──► view sink ──► downstream views
//!  (watermark)    (groups → Arrow batch)   waits for Barrier(e) from every
//!                                          partition (aligned: it stops
//!                                          reading a partition that delivered
//!                                          it), then records the view's rows
//!        │
//!        ▼
//!  hub: every view deposited → files written and fsynced → manifest renamed
//!  into place (the checkpoint exists from that moment) → old ones pruned
//! ```
//!
//! Everything a source published before its barrier is in the state
//! captured for epoch e, nothing after it; the positions recorded say where
//! each source resumes. Recovery ([`files::load_latest`]) picks the newest
//! checkpoint whose files all match their checksums.

pub mod files;
pub mod hub;

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{json, Value};

pub use crate::operators::OperatorState;

pub use hub::{CheckpointHub, CheckpointRecord, Collected, Decided};

/// A checkpoint's number; increases by one per attempted checkpoint.
pub type Epoch = u64;

/// The epoch of a barrier that hands one view's state to its next graph
/// (`engine::replace`), never a checkpoint's: the view keeps the state it
/// gathers instead of depositing it in the hub, and does not pass the
/// barrier downstream.
pub const HANDOVER: Epoch = u64::MAX;

/// Where a table or source was when the barrier passed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamPosition {
    /// Rows published so far (a table resumes its log after this many rows).
    pub rows: u64,
    /// The stream's watermark (ns).
    pub watermark: Option<i64>,
    /// Connector position (Kafka offsets, generator position, file lines).
    pub connector: Option<serde_json::Value>,
    /// A keyed source's current rows (its upserts so far); empty otherwise.
    /// Written to its own file, not to the JSON.
    pub current: Vec<RecordBatch>,
}

impl StreamPosition {
    /// As JSON, for the manifest.
    pub fn to_json(&self) -> Value {
        json!({"rows": self.rows, "watermark": self.watermark, "connector": self.connector})
    }

    /// Read [`StreamPosition::to_json`]'s output.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(StreamPosition {
            rows: v["rows"].as_u64()?,
            watermark: v["watermark"].as_i64(),
            connector: Some(v["connector"].clone()).filter(|c| !c.is_null()),
            current: Vec::new(),
        })
    }
}

/// A view's state at a barrier.
#[derive(Debug, Clone, Default)]
pub struct ViewSnapshot {
    /// The last watermark the view published downstream.
    pub published_watermark: Option<i64>,
    /// The view's rows.
    pub rows: Vec<RecordBatch>,
    /// The change position the rows are as of (what `SUBSCRIBE` resumes from).
    pub position: Option<i64>,
    /// Every operator's state, per partition.
    pub nodes: Vec<NodeSnapshot>,
    /// Inputs the view was still backfilling, by stream name: where each
    /// backfill resumes (see `connectors::backfill`).
    pub backfills: std::collections::BTreeMap<String, Value>,
}

/// One partition of one operator of a view's graph, at a barrier.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    /// The operator's id in the view's graph.
    pub id: String,
    /// Which partition.
    pub partition: usize,
    /// Per input port, the watermark it had seen.
    pub watermarks: Vec<Option<i64>>,
    /// The last watermark it forwarded.
    pub forwarded: Option<i64>,
    /// Input rows it dropped as late so far.
    pub rows_late: u64,
    /// What the operator returned from `checkpoint`.
    pub state: OperatorState,
}

/// An exactly-once sink's state at a barrier: the output it has not yet
/// committed, which is exactly the content of its open Kafka transaction.
#[derive(Debug, Clone, Default)]
pub struct SinkSnapshot {
    /// Where the first message of a transaction that may have committed
    /// landed (partition, offset): the transaction pre-committed at this
    /// barrier (the sink commits it once the checkpoint is durable), or one
    /// whose commit outcome the sink has not settled yet. `None`: nothing
    /// in `pending` can have been committed.
    pub delivered_at: Option<(i32, i64)>,
    /// How many of the oldest `pending` messages that transaction holds.
    pub in_transaction: u64,
    /// Per output partition, the offset after the sink's last message that
    /// is committed or in that transaction: where its output ends once the
    /// transaction commits.
    pub end_offsets: Vec<(i32, i64)>,
    /// The messages not yet committed, oldest first (columns `key`, `value`).
    pub pending: Vec<RecordBatch>,
}
