//! The tasks that maintain one materialized view.
//!
//! ```text
//! input ──► front: window assignment, late-row drop, stateless steps, hash exchange
//!             │ (bounded channel per partition)
//!             ▼
//!        partition i: AggregateOperator + stateless steps after it     (×N)
//!             │ (one bounded channel)
//!             ▼
//!        sink: combine partition watermarks (minimum), apply to the view, publish downstream
//! ```
//! A view without an aggregate has just the front and the sink. Every task
//! lives in the view's [`JoinSet`]; dropping the view aborts them. A task
//! that fails marks the view failed and returns; its channels close, so the
//! rest of the view's tasks end too and its input subscription is dropped,
//! while the server and every other view keep running.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{create_hashes, RandomState};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::aggregate::{AggregateOperator, AggregateSpec};
use super::message::{Changes, EventTime, Message, Watermark};
use super::stateless::apply_steps;
use super::window::assign;
use crate::error::{EddyError, Result};
use crate::views::MaterializedView;

/// What a view reads: messages that bring it up to date, then the live channel.
pub struct ViewInput {
    /// Catch-up messages (a table's retained rows, an upstream view's rows).
    pub snapshot: Vec<Message>,
    /// The live subscription.
    pub rx: mpsc::Receiver<Message>,
}

/// Spawn the view's tasks into `tasks`.
pub fn spawn_view(
    view: Arc<MaterializedView>,
    input: ViewInput,
    tasks: &mut JoinSet<()>,
    channel_capacity: usize,
) {
    let partitions = if view.plan.agg.is_some() {
        view.plan.partitions
    } else {
        1
    };
    let (sink_tx, sink_rx) = mpsc::channel::<(usize, Message)>(channel_capacity);
    let mut part_txs = Vec::new();
    if let Some(spec) = &view.plan.agg {
        for i in 0..partitions {
            let (tx, rx) = mpsc::channel(channel_capacity);
            part_txs.push(tx);
            let v = view.clone();
            let spec = spec.clone();
            let sink = sink_tx.clone();
            tasks.spawn(guarded(view.clone(), async move {
                run_partition(&v, i, spec, rx, sink).await
            }));
        }
    }
    let v = view.clone();
    let front_sink = sink_tx;
    tasks.spawn(guarded(view.clone(), async move {
        run_front(&v, input, part_txs, front_sink).await
    }));
    let v = view.clone();
    tasks.spawn(guarded(view, async move {
        run_sink(&v, partitions, sink_rx).await
    }));
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

fn closed() -> EddyError {
    EddyError::Shutdown("a view task stopped".into())
}

async fn run_front(
    view: &MaterializedView,
    input: ViewInput,
    parts: Vec<mpsc::Sender<Message>>,
    sink: mpsc::Sender<(usize, Message)>,
) -> Result<()> {
    let plan = &view.plan;
    let hasher = RandomState::with_seed(0x5eed);
    let mut watermark: Option<EventTime> = None;
    let ViewInput { snapshot, mut rx } = input;
    let mut snapshot = snapshot.into_iter();
    loop {
        let msg = match snapshot.next() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        match msg {
            Message::Data(mut changes) => {
                if let Some((spec, schema)) = &plan.window {
                    let (windowed, late) = assign(spec, schema, &changes, watermark)?;
                    if late > 0 {
                        view.rows_late.fetch_add(late, Ordering::Relaxed);
                    }
                    changes = windowed;
                }
                let changes = apply_steps(&plan.pre, changes)?;
                if changes.num_rows() == 0 {
                    continue;
                }
                match &plan.agg {
                    None => {
                        let changes = apply_steps(&plan.post, changes)?;
                        sink.send((0, Message::Data(changes)))
                            .await
                            .map_err(|_| closed())?;
                    }
                    Some(spec) => {
                        for (i, part) in partition(spec, &hasher, changes, parts.len())? {
                            parts[i]
                                .send(Message::Data(part))
                                .await
                                .map_err(|_| closed())?;
                        }
                    }
                }
            }
            Message::Watermark(w) => {
                if let Watermark::EventTime(t) = w {
                    if watermark.is_some_and(|cur| t <= cur) {
                        continue;
                    }
                    watermark = Some(t);
                }
                broadcast(&parts, &sink, Message::Watermark(w)).await?;
            }
            Message::Barrier(epoch) => broadcast(&parts, &sink, Message::Barrier(epoch)).await?,
        }
    }
}

async fn broadcast(
    parts: &[mpsc::Sender<Message>],
    sink: &mpsc::Sender<(usize, Message)>,
    msg: Message,
) -> Result<()> {
    if parts.is_empty() {
        return sink.send((0, msg)).await.map_err(|_| closed());
    }
    for p in parts {
        p.send(msg.clone()).await.map_err(|_| closed())?;
    }
    Ok(())
}

/// Split changes by hash of the group key into `n` partitions.
fn partition(
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
        .map(|e| e.evaluate(&changes.batch).and_then(|v| v.into_array(rows)))
        .collect::<datafusion::error::Result<_>>()?;
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
    spec: Arc<AggregateSpec>,
    mut rx: mpsc::Receiver<Message>,
    sink: mpsc::Sender<(usize, Message)>,
) -> Result<()> {
    let mut op = AggregateOperator::new(spec)?;
    let post = &view.plan.post;
    while let Some(msg) = rx.recv().await {
        let out = match &msg {
            Message::Data(changes) => op.process(changes)?,
            Message::Watermark(Watermark::EventTime(t)) => op.on_watermark(*t)?,
            Message::Watermark(Watermark::Idle) | Message::Barrier(_) => None,
        };
        view.state_bytes[index].store(op.state_bytes() as u64, Ordering::Relaxed);
        if let Some(out) = out {
            let out = apply_steps(post, out)?;
            if out.num_rows() > 0 {
                sink.send((index, Message::Data(out)))
                    .await
                    .map_err(|_| closed())?;
            }
        }
        if !matches!(msg, Message::Data(_)) {
            sink.send((index, msg)).await.map_err(|_| closed())?;
        }
    }
    Ok(())
}

async fn run_sink(
    view: &MaterializedView,
    partitions: usize,
    mut rx: mpsc::Receiver<(usize, Message)>,
) -> Result<()> {
    let out_time = &view.plan.out_time;
    let mut wms: Vec<Option<EventTime>> = vec![None; partitions];
    let mut published: Option<EventTime> = None;
    while let Some((i, msg)) = rx.recv().await {
        match msg {
            Message::Data(changes) => view.apply(changes).await?,
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
                let out = min.saturating_sub(out_time.delay_ns);
                if !out_time.forwards || published.is_some_and(|p| out <= p) {
                    continue;
                }
                published = Some(out);
                view.publisher
                    .publish(Message::Watermark(Watermark::EventTime(out)), |_| {})
                    .await;
            }
            Message::Watermark(Watermark::Idle) | Message::Barrier(_) => {}
        }
    }
    Ok(())
}
