//! A view's front task: it reads the view's input (or, for a join, both
//! inputs), runs what comes before the aggregate and routes the rows to the
//! aggregate partitions (or straight to the view's sink).
//!
//! A join front reads its two inputs fairly, keeps a watermark per side
//! (the join frees each side's rows by the other side's watermark) and
//! passes on the smaller of the two. Barriers are aligned: a side that
//! delivered the barrier of the epoch in progress is not read again until
//! the other side has delivered it too, so the join's state at the barrier
//! holds exactly what both inputs published before it.

use std::sync::atomic::Ordering;

use datafusion::common::hash_utils::RandomState;
use tokio::sync::mpsc;

use super::join::JoinOperator;
use super::message::{Changes, EventTime, Message, Watermark};
use super::pipeline::{broadcast, closed, next_unblocked, partition, ViewInput, PARTITION_SEED};
use super::stateless::apply_steps;
use super::top_n::TopNOperator;
use super::window::{assign, event_times_ns};
use crate::checkpoint::ViewSnapshot;
use crate::error::Result;
use crate::plan::{JoinSide, ViewPlan};
use crate::views::MaterializedView;

/// Everything after the input: Top-N, the stateless steps, routing.
pub(super) struct Front<'a> {
    view: &'a MaterializedView,
    plan: &'a ViewPlan,
    hasher: RandomState,
    top_n: Option<TopNOperator>,
    parts: Vec<mpsc::Sender<Message>>,
    sink: Option<mpsc::Sender<Message>>,
    /// The view's input watermark (late rows are below it).
    watermark: Option<EventTime>,
}

impl<'a> Front<'a> {
    pub(super) fn new(
        view: &'a MaterializedView,
        top_n: Option<TopNOperator>,
        parts: Vec<mpsc::Sender<Message>>,
        sink: Option<mpsc::Sender<Message>>,
        watermark: Option<EventTime>,
    ) -> Self {
        Front {
            view,
            plan: &view.plan,
            hasher: RandomState::with_seed(PARTITION_SEED),
            top_n,
            parts,
            sink,
            watermark,
        }
    }

    /// Rows in the shape of the view's input (after windows, or the join).
    async fn data(&mut self, changes: Changes) -> Result<()> {
        let plan = self.plan;
        let changes = match (&plan.top_n, self.top_n.as_mut()) {
            (Some((at, _)), Some(op)) => {
                let ranked = op.process(&apply_steps(&plan.pre[..*at], changes)?)?;
                apply_steps(&plan.pre[*at..], ranked)?
            }
            _ => apply_steps(&plan.pre, changes)?,
        };
        if changes.num_rows() == 0 {
            return Ok(());
        }
        match (&plan.agg, &self.sink) {
            (Some(spec), _) => {
                for (i, part) in partition(spec, &self.hasher, changes, self.parts.len())? {
                    self.parts[i]
                        .send(Message::Data(part))
                        .await
                        .map_err(|_| closed())?;
                }
            }
            (None, Some(sink)) => {
                let changes = apply_steps(&plan.post, changes)?;
                sink.send(Message::Data(changes))
                    .await
                    .map_err(|_| closed())?;
            }
            (None, None) => return Err(closed()),
        }
        Ok(())
    }

    /// The view's input watermark moved to `w`.
    async fn watermark(&mut self, w: Watermark) -> Result<()> {
        if let Watermark::EventTime(t) = w {
            if self.watermark.is_some_and(|cur| t <= cur) {
                return Ok(());
            }
            self.watermark = Some(t);
            if let Some(op) = self.top_n.as_mut() {
                op.on_watermark(t);
            }
        }
        broadcast(&self.parts, self.sink.as_ref(), Message::Watermark(w)).await
    }

    /// Record the front's state for checkpoint `epoch` and pass the barrier on.
    async fn barrier(
        &mut self,
        epoch: u64,
        more: impl FnOnce(&mut ViewSnapshot) -> Result<()>,
    ) -> Result<()> {
        {
            let mut pending = self.view.pending_checkpoint.lock();
            *pending = ViewSnapshot::default();
            pending.progress.input_watermark = self.watermark;
            pending.progress.rows_late = self.view.rows_late.load(Ordering::Relaxed);
            if let Some(op) = &self.top_n {
                pending.top_n = op.snapshot()?;
            }
            more(&mut pending)?;
        }
        broadcast(&self.parts, self.sink.as_ref(), Message::Barrier(epoch)).await
    }

    fn top_n_bytes(&self) -> usize {
        self.top_n.as_ref().map_or(0, TopNOperator::state_bytes)
    }
}

/// The front of a view with one input.
pub(super) async fn run_front(mut front: Front<'_>, input: ViewInput) -> Result<()> {
    let view = front.view;
    let plan = front.plan;
    let ViewInput { snapshot, mut rx } = input;
    let mut snapshot = snapshot.into_iter();
    let assignment = plan.assignment();
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
                if let Some((spec, schema)) = &assignment {
                    let (windowed, late) = assign(spec, schema, &changes, front.watermark)?;
                    if late > 0 {
                        view.rows_late.fetch_add(late, Ordering::Relaxed);
                    }
                    changes = windowed;
                }
                front.data(changes).await?;
            }
            Message::Watermark(w) => front.watermark(w).await?,
            Message::Barrier(epoch) => front.barrier(epoch, |_| Ok(())).await?,
        }
        view.front_bytes
            .store(front.top_n_bytes() as u64, Ordering::Relaxed);
    }
}

/// Processing time in nanoseconds since the Unix epoch (for `state_ttl`).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// One side's rows in the join's input shape: windows, late rows, steps.
fn side_rows(
    view: &MaterializedView,
    side: &JoinSide,
    changes: Changes,
    watermark: Option<EventTime>,
) -> Result<Changes> {
    let mut changes = changes;
    if let Some((spec, schema)) = &side.window {
        let (windowed, late) = assign(spec, schema, &changes, watermark)?;
        if late > 0 {
            view.rows_late.fetch_add(late, Ordering::Relaxed);
        }
        changes = windowed;
    } else if let (Some(col), Some(w)) = (side.drop_late, watermark) {
        let t = event_times_ns(changes.batch.column(col))?;
        let keep: datafusion::arrow::array::BooleanArray =
            t.iter().map(|t| Some(t.is_some_and(|t| t >= w))).collect();
        let late = keep.false_count() as u64;
        if late > 0 {
            view.rows_late.fetch_add(late, Ordering::Relaxed);
            changes = changes.filter(&keep)?;
        }
    }
    apply_steps(&side.steps, changes)
}

/// The front of a join view.
pub(super) async fn run_join_front(
    mut front: Front<'_>,
    mut op: JoinOperator,
    inputs: Vec<ViewInput>,
    mut side_wms: [Option<EventTime>; 2],
) -> Result<()> {
    let view = front.view;
    let Some(join) = front.plan.join.clone() else {
        return Err(crate::error::EddyError::Internal(
            "join front without a join".into(),
        ));
    };
    let mut rxs = Vec::with_capacity(2);
    let mut snapshots = Vec::with_capacity(2);
    for input in inputs {
        rxs.push(input.rx);
        snapshots.push(input.snapshot);
    }
    // A lookup join reads the table's current rows before the stream's.
    let order = match join.spec.lookup {
        Some(1) => [1, 0],
        _ => [0, 1],
    };
    let [first, second] = order;
    let catch_up: Vec<(usize, Message)> = std::mem::take(&mut snapshots[first])
        .into_iter()
        .map(|m| (first, m))
        .chain(
            std::mem::take(&mut snapshots[second])
                .into_iter()
                .map(|m| (second, m)),
        )
        .collect();
    let mut catch_up = catch_up.into_iter();
    let mut blocked = [false; 2];
    let mut start = 0;
    loop {
        // A lookup join drains the table's changes before the next stream row, so a
        // row sees every table change published before it.
        if let Some(t) = join.spec.lookup {
            start = t;
        }
        let (s, msg) = match catch_up.next() {
            Some(m) => m,
            None => match next_unblocked(&mut rxs, &blocked, &mut start).await {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        let now = now_ns();
        op.on_time(now);
        match msg {
            Message::Data(changes) => {
                let rows = side_rows(view, &join.sides[s], changes, side_wms[s])?;
                if rows.num_rows() > 0 {
                    let out = op.process(s, &rows, now)?;
                    if out.num_rows() > 0 {
                        front.data(out).await?;
                    }
                }
            }
            Message::Watermark(Watermark::EventTime(t)) => {
                if side_wms[s].is_some_and(|cur| t <= cur) {
                    continue;
                }
                side_wms[s] = Some(t);
                op.on_watermark(s, t);
                // The joined watermark: the smaller side's, over the sides that have one
                // (the stream's alone in a lookup join).
                let timed: Vec<usize> = match join.spec.lookup {
                    Some(t) => vec![1 - t],
                    None => (0..2).filter(|&i| join.sides[i].watermarked).collect(),
                };
                let joined = timed
                    .iter()
                    .map(|&i| side_wms[i])
                    .collect::<Option<Vec<_>>>()
                    .and_then(|w| w.into_iter().min());
                if let Some(w) = joined {
                    front.watermark(Watermark::EventTime(w)).await?;
                }
            }
            Message::Watermark(Watermark::Idle) => {}
            Message::Barrier(epoch) => {
                blocked[s] = true;
                if blocked.iter().all(|b| *b) {
                    blocked = [false; 2];
                    let wms = side_wms;
                    let op = &op;
                    front
                        .barrier(epoch, |pending| {
                            pending.progress.side_watermarks = wms.to_vec();
                            pending.join = [op.snapshot(0)?, op.snapshot(1)?];
                            Ok(())
                        })
                        .await?;
                }
            }
        }
        view.front_bytes.store(
            (op.state_bytes() + front.top_n_bytes()) as u64,
            Ordering::Relaxed,
        );
    }
}
