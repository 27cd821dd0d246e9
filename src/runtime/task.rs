//! The one task loop: aligned input events in, chained operators called in
//! order, output to the next task (through a hash exchange) or to the view.
//!
//! Within a task, an event runs to completion synchronously: rows an
//! operator emits go to the next operator of the chain before the next
//! event is read, so no row is in flight inside a task when a barrier is
//! handled and every operator's state is captured at the same point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;

use super::align::{Aligner, Event};
use super::sink::ViewSink;
use crate::error::{EddyError, Result};
use crate::operators::{route, Output, StreamOperator};
use crate::state::NodeSnapshot;
use crate::types::{Changes, EventTime, Message, Watermark};
use crate::views::MaterializedView;

/// What leaves an operator: rows, a forwarded watermark, a barrier.
#[derive(Debug)]
pub(super) enum Item {
    Data(Changes),
    Watermark(EventTime),
    Barrier(u64),
}

/// An operator instance inside a task, with the runtime's bookkeeping.
pub(super) struct Fused {
    /// The graph node's id.
    pub id: String,
    /// The operator.
    pub op: Box<dyn StreamOperator>,
    /// The local node and port its output feeds; `None`: the task's outlet.
    pub consumer: Option<(usize, usize)>,
    /// Per input port, the watermark it has seen.
    pub watermarks: Vec<Option<EventTime>>,
    /// The last watermark it forwarded.
    pub forwarded: Option<EventTime>,
    /// Input rows it dropped as late.
    pub rows_late: u64,
    /// Its live counters.
    pub stats: Arc<crate::views::OperatorStats>,
    /// It was carried over from a replaced definition and its consumers
    /// were not: its standing output goes to them before any input.
    pub restate: bool,
}

/// Where a task's output goes.
pub(super) enum Outlet {
    /// The partitions of the next task: rows by hash of `keys` (or all to
    /// the one partition), watermarks and barriers to every partition.
    Exchange {
        txs: Vec<mpsc::Sender<Message>>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
    },
    /// The view itself.
    View(Box<ViewSink>),
}

/// One task: a chain of operators for one partition.
pub(super) struct Task {
    pub view: Arc<MaterializedView>,
    pub partition: usize,
    pub aligner: Aligner,
    /// Per aligner port, the local node and node port it feeds.
    pub entries: Vec<(usize, usize)>,
    pub nodes: Vec<Fused>,
    pub outlet: Outlet,
    /// The task's operator state bytes, for `eddy.views`.
    pub bytes: Arc<AtomicU64>,
}

/// How often operators get a processing-time tick when no input arrives
/// (rows past their `state_ttl` go even while the inputs are quiet).
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Processing time in nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Task {
    /// Run until an input closes (the view is stopping) or an operator fails.
    pub async fn run(mut self) -> Result<()> {
        self.restate().await?;
        let mut clock = tokio::time::interval(TICK);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Reading the aligner is cancel-safe: a message is taken only when returned.
            let event = tokio::select! {
                event = self.aligner.next() => match event? {
                    Some(event) => Some(event),
                    None => return Ok(()),
                },
                _ = clock.tick() => None,
            };
            let mut items = Vec::new();
            let now = now_ns();
            for n in 0..self.nodes.len() {
                let mut out = Output::default();
                self.nodes[n].op.on_tick(now, &mut out)?;
                // A processing-time operator moves its output watermark with the clock.
                let node = &mut self.nodes[n];
                let forward = out
                    .take_watermark()
                    .filter(|f| node.forwarded.is_none_or(|cur| *f > cur));
                if forward.is_some() {
                    node.forwarded = forward;
                }
                self.deliver(n, out, forward, &mut items)?;
            }
            let Some(event) = event else {
                self.store_bytes();
                self.send(items).await?;
                continue;
            };
            match event {
                Event::Data(port, changes) => {
                    let (n, p) = self.entries[port];
                    self.feed(n, p, Item::Data(changes), &mut items)?;
                }
                Event::Watermark(port, t) => {
                    let (n, p) = self.entries[port];
                    self.feed(n, p, Item::Watermark(t), &mut items)?;
                }
                Event::Barrier(epoch) => {
                    self.checkpoint(epoch)?;
                    items.push(Item::Barrier(epoch));
                }
            }
            self.store_bytes();
            self.send(items).await?;
        }
    }

    /// Send what carried-over operators' new consumers must see first:
    /// their standing output, then the watermark they had forwarded.
    async fn restate(&mut self) -> Result<()> {
        let mut items = Vec::new();
        for n in 0..self.nodes.len() {
            if !self.nodes[n].restate {
                continue;
            }
            let mut out = Output::default();
            for changes in self.nodes[n].op.standing()? {
                out.emit(changes);
            }
            let forward = self.nodes[n].forwarded;
            self.deliver(n, out, forward, &mut items)?;
        }
        self.send(items).await
    }

    fn store_bytes(&self) {
        let mut bytes = 0;
        for n in &self.nodes {
            let b = n.op.state_bytes();
            n.stats.state_bytes.store(b as u64, Ordering::Relaxed);
            if let Some(f) = n.forwarded {
                n.stats.watermark.store(f, Ordering::Relaxed);
            }
            bytes += b;
        }
        self.bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// Hand `item` to port `port` of local node `n`, and what it emits on.
    fn feed(&mut self, n: usize, port: usize, item: Item, items: &mut Vec<Item>) -> Result<()> {
        let node = &mut self.nodes[n];
        let mut out = Output::default();
        let forward = match item {
            Item::Data(changes) => {
                node.stats
                    .rows_in
                    .fetch_add(changes.num_rows() as u64, Ordering::Relaxed);
                node.op.on_data(port, changes, &mut out)?;
                None
            }
            Item::Watermark(t) => {
                let slot = &mut node.watermarks[port];
                if slot.is_some_and(|cur| t <= cur) {
                    return Ok(());
                }
                *slot = Some(t);
                let f = node.op.on_watermark(port, &node.watermarks, &mut out)?;
                f.filter(|f| node.forwarded.is_none_or(|cur| *f > cur))
            }
            Item::Barrier(_) => {
                return Err(EddyError::Internal("a barrier inside a task".into()));
            }
        };
        if let Some(f) = forward {
            node.forwarded = Some(f);
        }
        self.deliver(n, out, forward, items)
    }

    /// Pass node `n`'s output on: rows first, then the watermark it forwards.
    fn deliver(
        &mut self,
        n: usize,
        mut out: Output,
        forward: Option<EventTime>,
        items: &mut Vec<Item>,
    ) -> Result<()> {
        let (changes, late) = out.take();
        let rows: usize = changes.iter().map(Changes::num_rows).sum();
        self.nodes[n]
            .stats
            .rows_out
            .fetch_add(rows as u64, Ordering::Relaxed);
        if late > 0 {
            self.nodes[n].rows_late += late;
            self.view.rows_late.fetch_add(late, Ordering::Relaxed);
        }
        let next = self.nodes[n].consumer;
        let downstream = changes
            .into_iter()
            .map(Item::Data)
            .chain(forward.map(Item::Watermark));
        for item in downstream {
            match next {
                Some((m, p)) => self.feed(m, p, item, items)?,
                None => items.push(item),
            }
        }
        Ok(())
    }

    /// Every input delivered barrier `epoch`: capture each operator's state.
    fn checkpoint(&mut self, epoch: u64) -> Result<()> {
        for node in &mut self.nodes {
            let state = node.op.checkpoint()?;
            self.view.deposit_node(
                epoch,
                NodeSnapshot {
                    id: node.id.clone(),
                    partition: self.partition,
                    watermarks: node.watermarks.clone(),
                    forwarded: node.forwarded,
                    rows_late: node.rows_late,
                    state,
                },
            );
        }
        Ok(())
    }

    async fn send(&mut self, items: Vec<Item>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        for item in items {
            match &mut self.outlet {
                Outlet::View(sink) => sink.accept(item).await?,
                Outlet::Exchange { txs, keys } => exchange(txs, keys, item).await?,
            }
        }
        // The wait is the tail operator's: its output is what waited.
        if let Some(tail) = self.nodes.iter().find(|n| n.consumer.is_none()) {
            tail.stats
                .blocked_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

pub(super) fn closed() -> EddyError {
    EddyError::Shutdown("a view task stopped".into())
}

async fn exchange(
    txs: &[mpsc::Sender<Message>],
    keys: &[Arc<dyn PhysicalExpr>],
    item: Item,
) -> Result<()> {
    let msg = match item {
        Item::Data(changes) if txs.len() > 1 => {
            for (p, part) in split(keys, changes, txs.len())? {
                txs[p]
                    .send(Message::Data(part))
                    .await
                    .map_err(|_| closed())?;
            }
            return Ok(());
        }
        Item::Data(changes) => Message::Data(changes),
        Item::Watermark(t) => Message::Watermark(Watermark::EventTime(t)),
        Item::Barrier(e) => Message::Barrier(e),
    };
    for tx in txs {
        tx.send(msg.clone()).await.map_err(|_| closed())?;
    }
    Ok(())
}

/// Split changes by hash of `keys` into `n` partitions (non-empty parts only).
fn split(
    keys: &[Arc<dyn PhysicalExpr>],
    changes: Changes,
    n: usize,
) -> Result<Vec<(usize, Changes)>> {
    let rows = changes.num_rows();
    let cols = keys
        .iter()
        .map(|e| e.evaluate(&changes.batch).and_then(|v| v.into_array(rows)))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    if cols.is_empty() {
        return Ok(vec![(0, changes)]);
    }
    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, p) in route(&cols, rows, n)?.into_iter().enumerate() {
        idx[p].push(i as u32);
    }
    let mut out = Vec::new();
    for (p, rows) in idx.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let rows = UInt32Array::from(rows);
        let cols = changes
            .batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(changes.batch.schema(), cols)?;
        let weights = match &changes.weights {
            None => None,
            Some(w) => take(w.as_ref(), &rows, None)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .map(Arc::new),
        };
        out.push((p, Changes { batch, weights }));
    }
    Ok(out)
}
