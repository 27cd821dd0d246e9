//! The tasks that maintain one materialized view.
//!
//! ```text
//! input ──► front: window assignment, late-row drop, stateless steps, hash exchange
//!             │ (bounded channel per partition)
//!             ▼
//!        partition i: AggregateOperator + stateless steps after it     (×N)
//!             │ (a bounded channel per partition)
//!             ▼
//!        sink: combine partition watermarks (minimum), apply to the view, publish downstream
//!              (one channel per partition, so barriers can be aligned)
//! ```
//! A view without an aggregate has just the front and the sink. Every task
//! lives in the view's [`JoinSet`]; dropping the view aborts them. A task
//! that fails marks the view failed and returns; its channels close, so the
//! rest of the view's tasks end too and its input subscription is dropped,
//! while the server and every other view keep running.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{create_hashes, RandomState};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::aggregate::{AggregateOperator, AggregateSpec};
use super::front::{run_front, run_join_front, Front};
use super::join::JoinOperator;
use super::message::{Changes, EventTime, Message, Watermark};
use super::session::SessionBuffer;
use super::stateless::apply_steps;
use super::top_n::TopNOperator;
use crate::checkpoint::{ViewProgress, ViewSnapshot};
use crate::error::{EddyError, Result};
use crate::views::MaterializedView;

/// What a view reads: messages that bring it up to date, then the live channel.
pub struct ViewInput {
    /// Catch-up messages (a table's retained rows, an upstream view's rows).
    pub snapshot: Vec<Message>,
    /// The live subscription.
    pub rx: mpsc::Receiver<Message>,
}

/// Spawn the view's tasks into `tasks`. `restored` is the view's state from
/// a checkpoint (its rows are already in the view's store).
pub fn spawn_view(
    view: Arc<MaterializedView>,
    inputs: Vec<ViewInput>,
    tasks: &mut JoinSet<()>,
    channel_capacity: usize,
    restored: Option<ViewSnapshot>,
) -> Result<()> {
    let partitions = if view.plan.agg.is_some() {
        view.plan.partitions
    } else {
        1
    };
    let progress = restored
        .as_ref()
        .map(|r| r.progress.clone())
        .unwrap_or_default();
    let mut sink_rxs = Vec::new();
    let mut part_txs = Vec::new();
    let mut front_sink = None;
    if let Some(spec) = &view.plan.agg {
        let groups = match &restored {
            Some(r) => route_groups(spec, &r.groups, partitions)?,
            None => vec![Vec::new(); partitions],
        };
        let mut held = vec![Vec::new(); partitions];
        if let Some(r) = &restored {
            let hasher = RandomState::with_seed(PARTITION_SEED);
            for b in &r.sessions {
                for (p, part) in partition(spec, &hasher, Changes::inserts(b.clone()), partitions)?
                {
                    held[p].push(part.batch);
                }
            }
        }
        for (i, (groups, held)) in groups.into_iter().zip(held).enumerate() {
            let (tx, rx) = mpsc::channel(channel_capacity);
            let (sink_tx, sink_rx) = mpsc::channel(channel_capacity);
            sink_rxs.push(sink_rx);
            part_txs.push(tx);
            let mut op = AggregateOperator::new(spec.clone())?;
            op.restore(&groups)?;
            let sessions = match spec.session {
                Some(s) => {
                    let mut buf = SessionBuffer::new(spec, s, spec.max_groups)?;
                    buf.restore(&held)?;
                    Some(buf)
                }
                None => None,
            };
            let v = view.clone();
            tasks.spawn(guarded(view.clone(), async move {
                run_partition(&v, i, op, sessions, rx, sink_tx).await
            }));
        }
    } else {
        let (sink_tx, sink_rx) = mpsc::channel(channel_capacity);
        sink_rxs.push(sink_rx);
        front_sink = Some(sink_tx);
    }
    view.rows_late.store(progress.rows_late, Ordering::Relaxed);
    let top_n = match &view.plan.top_n {
        Some((_, spec)) => {
            let mut op = TopNOperator::new(spec.clone())?;
            if let Some(r) = &restored {
                op.restore(&r.top_n)?;
            }
            Some(op)
        }
        None => None,
    };
    let join = match &view.plan.join {
        Some(j) => {
            let mut op = JoinOperator::new(j.spec.clone())?;
            if let Some(r) = &restored {
                op.restore(0, &r.join[0])?;
                op.restore(1, &r.join[1])?;
            }
            Some(op)
        }
        None => None,
    };
    let expected = if join.is_some() { 2 } else { 1 };
    if inputs.len() != expected {
        return Err(EddyError::Internal(format!(
            "view expects {expected} input(s), got {}",
            inputs.len()
        )));
    }
    // A Top-N of the aggregate's output runs in the sink, over every partition's rows.
    let (top_n, sink_top_n) = if view.plan.top_n_after_agg {
        (None, top_n)
    } else {
        (top_n, None)
    };
    let v = view.clone();
    let watermark = progress.input_watermark;
    let side_wms = match progress.side_watermarks.as_slice() {
        [l, r] => [*l, *r],
        _ => [None, None],
    };
    tasks.spawn(guarded(view.clone(), async move {
        let front = Front::new(&v, top_n, part_txs, front_sink, watermark);
        match join {
            Some(op) => run_join_front(front, op, inputs, side_wms).await,
            None => match inputs.into_iter().next() {
                Some(input) => run_front(front, input).await,
                None => Ok(()),
            },
        }
    }));
    let v = view.clone();
    tasks.spawn(guarded(view, async move {
        run_sink(&v, sink_rxs, progress, sink_top_n).await
    }));
    Ok(())
}

/// Split checkpointed aggregate groups over `n` partitions the way
/// [`partition`] routes rows (so the partition count may change across restarts).
fn route_groups(
    spec: &AggregateSpec,
    batches: &[RecordBatch],
    n: usize,
) -> Result<Vec<Vec<RecordBatch>>> {
    let mut out = vec![Vec::new(); n];
    let hasher = RandomState::with_seed(PARTITION_SEED);
    let n_groups = spec.group_exprs.len();
    for b in batches {
        if n <= 1 || n_groups == 0 {
            out[0].push(b.clone());
            continue;
        }
        let mut hashes = vec![0u64; b.num_rows()];
        let keys: Vec<ArrayRef> = (0..n_groups)
            .filter(|i| !is_session_bound(spec, *i))
            .map(|i| b.column(i + 1).clone())
            .collect();
        create_hashes(&keys, &hasher, &mut hashes)?;
        for (p, slot) in out.iter_mut().enumerate() {
            let mask: BooleanArray = hashes
                .iter()
                .map(|h| Some((*h % n as u64) as usize == p))
                .collect();
            slot.push(filter_record_batch(b, &mask)?);
        }
    }
    Ok(out)
}

/// Run a view task; an error or a panic marks the view failed (and only the view).
async fn guarded(
    view: Arc<MaterializedView>,
    task: impl std::future::Future<Output = Result<()>> + Send,
) {
    match AssertUnwindSafe(task).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => view.fail(&e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            view.fail(&EddyError::Internal(format!(
                "a view operator panicked: {what}"
            )));
        }
    }
}

/// Seed of the hash that routes groups to partitions (fixed: checkpointed
/// groups are routed the same way after a restart).
pub(super) const PARTITION_SEED: u64 = 0x5eed;

pub(super) fn closed() -> EddyError {
    EddyError::Shutdown("a view task stopped".into())
}

pub(super) async fn broadcast(
    parts: &[mpsc::Sender<Message>],
    sink: Option<&mpsc::Sender<Message>>,
    msg: Message,
) -> Result<()> {
    if let Some(sink) = sink {
        return sink.send(msg).await.map_err(|_| closed());
    }
    for p in parts {
        p.send(msg.clone()).await.map_err(|_| closed())?;
    }
    Ok(())
}

/// Whether group expression `i` is a SESSION window bound (rows of one
/// session key must meet in one partition whatever their times) or a window
/// bound of a pane aggregate (a key's panes feed the same windows).
fn is_session_bound(spec: &AggregateSpec, i: usize) -> bool {
    spec.session
        .is_some_and(|s| s.window_groups.contains(&Some(i)))
        || spec.panes.is_some_and(|p| p.is_bound(i))
}

/// Split changes by hash of the group key into `n` partitions.
pub(super) fn partition(
    spec: &AggregateSpec,
    hasher: &RandomState,
    changes: Changes,
    n: usize,
) -> Result<Vec<(usize, Changes)>> {
    if n <= 1 || spec.group_exprs.is_empty() {
        return Ok(vec![(0, changes)]);
    }
    let rows = changes.num_rows();
    let keys: Vec<ArrayRef> = spec
        .group_exprs
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_session_bound(spec, *i))
        .map(|(_, e)| e.evaluate(&changes.batch).and_then(|v| v.into_array(rows)))
        .collect::<datafusion::error::Result<_>>()?;
    if keys.is_empty() {
        return Ok(vec![(0, changes)]);
    }
    let mut hashes = vec![0u64; rows];
    create_hashes(&keys, hasher, &mut hashes)?;
    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, h) in hashes.iter().enumerate() {
        idx[(*h % n as u64) as usize].push(i as u32);
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

async fn run_partition(
    view: &MaterializedView,
    index: usize,
    mut op: AggregateOperator,
    mut sessions: Option<SessionBuffer>,
    mut rx: mpsc::Receiver<Message>,
    sink: mpsc::Sender<Message>,
) -> Result<()> {
    let post = match (&view.plan.top_n, view.plan.top_n_after_agg) {
        (Some((at, _)), true) => &view.plan.post[..*at],
        _ => &view.plan.post[..],
    };
    while let Some(msg) = rx.recv().await {
        let out = match (&msg, sessions.as_mut()) {
            (Message::Data(changes), Some(buf)) => match buf.insert(changes)? {
                Some(complete) => op.process(&complete)?,
                None => None,
            },
            (Message::Data(changes), None) => op.process(changes)?,
            (Message::Watermark(Watermark::EventTime(t)), buf) => {
                // Closed sessions reach the aggregate before the watermark that emits them.
                if let Some(closed) = buf.map(|b| b.close(*t)).transpose()?.flatten() {
                    op.process(&closed)?;
                }
                op.on_watermark(*t)?
            }
            (Message::Watermark(Watermark::Idle), _) => None,
            (Message::Barrier(_), buf) => {
                let groups = op.snapshot()?;
                let held = buf.map(|b| b.snapshot()).unwrap_or_default();
                let mut pending = view.pending_checkpoint.lock();
                pending.groups.push(groups);
                pending.sessions.extend(held);
                None
            }
        };
        let held = sessions.as_ref().map_or(0, SessionBuffer::state_bytes);
        view.state_bytes[index].store((op.state_bytes() + held) as u64, Ordering::Relaxed);
        if let Some(out) = out {
            let out = apply_steps(post, out)?;
            if out.num_rows() > 0 {
                sink.send(Message::Data(out)).await.map_err(|_| closed())?;
            }
        }
        if !matches!(msg, Message::Data(_)) {
            sink.send(msg).await.map_err(|_| closed())?;
        }
    }
    Ok(())
}

/// The next message from an input that is not waiting at a barrier, taking
/// inputs in turn; `None` once any input has closed (the view is stopping).
pub(super) async fn next_unblocked(
    rxs: &mut [mpsc::Receiver<Message>],
    blocked: &[bool],
    start: &mut usize,
) -> Option<(usize, Message)> {
    std::future::poll_fn(|cx| {
        let n = rxs.len();
        for k in 0..n {
            let i = (*start + k) % n;
            if blocked[i] {
                continue;
            }
            match rxs[i].poll_recv(cx) {
                Poll::Ready(Some(m)) => {
                    *start = (i + 1) % n;
                    return Poll::Ready(Some((i, m)));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

async fn run_sink(
    view: &MaterializedView,
    mut rxs: Vec<mpsc::Receiver<Message>>,
    progress: ViewProgress,
    mut top_n: Option<TopNOperator>,
) -> Result<()> {
    let out_time = &view.plan.out_time;
    let after_top_n = match &view.plan.top_n {
        Some((at, _)) if top_n.is_some() => &view.plan.post[*at..],
        _ => &[],
    };
    let n = rxs.len();
    let mut wms: Vec<Option<EventTime>> = if progress.partition_watermarks.len() == n {
        progress.partition_watermarks
    } else {
        // The partition count changed since the checkpoint: every partition
        // starts where the slowest one was.
        let min = progress
            .partition_watermarks
            .iter()
            .copied()
            .min()
            .flatten();
        vec![min; n]
    };
    let mut published: Option<EventTime> = progress.published_watermark;
    if let Some(p) = published {
        view.watermark
            .fetch_max(p.saturating_add(out_time.delay_ns), Ordering::Relaxed);
        view.publisher.set_watermark(Watermark::EventTime(p)).await;
    }
    // Aligned barriers: an input that delivered the barrier of the epoch in
    // progress is not read again until every input has delivered it (every
    // input carries the same barriers in the same order).
    let mut blocked = vec![false; n];
    let mut start = 0;
    while let Some((i, msg)) = next_unblocked(&mut rxs, &blocked, &mut start).await {
        match msg {
            Message::Data(changes) => match top_n.as_mut() {
                Some(op) => {
                    let ranked = apply_steps(after_top_n, op.process(&changes)?)?;
                    view.front_bytes
                        .store(op.state_bytes() as u64, Ordering::Relaxed);
                    if ranked.num_rows() > 0 {
                        view.apply(ranked).await?;
                    }
                }
                None => view.apply(changes).await?,
            },
            Message::Watermark(Watermark::EventTime(t)) => {
                if let Some(slot) = wms.get_mut(i) {
                    *slot = Some(t);
                }
                let Some(min) = wms.iter().copied().collect::<Option<Vec<_>>>() else {
                    continue;
                };
                let Some(min) = min.into_iter().min() else {
                    continue;
                };
                // eddy.views shows the input's event-time progress.
                view.watermark.fetch_max(min, Ordering::Relaxed);
                if let Some(op) = top_n.as_mut() {
                    op.on_watermark(min);
                    view.front_bytes
                        .store(op.state_bytes() as u64, Ordering::Relaxed);
                }
                let out = min.saturating_sub(out_time.delay_ns);
                if !out_time.forwards || published.is_some_and(|p| out <= p) {
                    continue;
                }
                published = Some(out);
                view.publisher
                    .publish(Message::Watermark(Watermark::EventTime(out)), |_| {})
                    .await;
            }
            Message::Watermark(Watermark::Idle) => {}
            Message::Barrier(epoch) => {
                blocked[i] = true;
                if blocked.iter().all(|b| *b) {
                    blocked.iter_mut().for_each(|b| *b = false);
                    if let Some(op) = &top_n {
                        view.pending_checkpoint.lock().top_n = op.snapshot()?;
                    }
                    checkpoint_view(view, epoch, &wms, published).await?;
                }
            }
        }
    }
    Ok(())
}

/// Every input delivered the barrier: hand the view's state to the hub and
/// pass the barrier downstream.
async fn checkpoint_view(
    view: &MaterializedView,
    epoch: u64,
    wms: &[Option<EventTime>],
    published: Option<EventTime>,
) -> Result<()> {
    let rows = view.store.lock().snapshot()?;
    let mut snap = std::mem::take(&mut *view.pending_checkpoint.lock());
    snap.progress.partition_watermarks = wms.to_vec();
    snap.progress.published_watermark = published;
    snap.rows = if rows.is_empty() {
        vec![RecordBatch::new_empty(view.schema.clone())]
    } else {
        rows.as_ref().clone()
    };
    if let Some(hub) = &view.hub {
        hub.deposit(epoch, &view.name, snap);
    }
    view.publisher
        .publish(Message::Barrier(epoch), |_| {})
        .await;
    Ok(())
}
