//! The streaming runtime: runs a view's operator [`Graph`] as tasks.
//!
//! ```text
//!  view inputs ──► task (chained operators, one partition) ──► hash exchange ──►
//!                  task ×N (chained operators, partition i) ──► exchange ──►
//!                  task (…, the last operator) ──► ViewSink: the view's rows, subscribers, hub
//! ```
//! The runtime alone knows channels and tasks: [`align::Aligner`] is the
//! only place barriers are aligned and watermarks merged, [`task`] the only
//! task loop. Every task lives in the view's `JoinSet`; dropping the view
//! aborts them. A task that fails or panics marks the view failed and
//! returns; its channels close, so the view's other tasks end too, while
//! the server and every other view keep running.

pub mod align;
pub mod graph;
mod sink;
mod task;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use graph::{Edge, Graph, Node};

use crate::error::{EddyError, Result};
use crate::operators::{Distribution, OperatorState, Partition, RestoreContext};
use crate::state::{NodeSnapshot, ViewSnapshot};
use crate::types::{EventTime, Message};
use crate::views::MaterializedView;
use align::{Aligner, Channel};
use graph::Source;
use task::{Fused, Outlet, Task};

/// What a view reads: messages that bring it up to date, then the live channel.
pub struct ViewInput {
    /// Catch-up messages (a table's retained rows, an upstream view's rows).
    pub snapshot: Vec<Message>,
    /// The live subscription.
    pub rx: mpsc::Receiver<Message>,
}

/// Spawn the tasks that run `graph` for `view` into `tasks`. `restored` is
/// the view's state from a checkpoint (its rows are already in the store),
/// or operators' state carried over from a replaced definition: then the
/// nodes in `restate` first send their standing output (see
/// [`StreamOperator::standing`](crate::operators::StreamOperator::standing))
/// to the new operators after them.
pub async fn spawn_view(
    view: Arc<MaterializedView>,
    graph: &Graph,
    inputs: Vec<ViewInput>,
    tasks: &mut JoinSet<()>,
    channel_capacity: usize,
    restored: Option<ViewSnapshot>,
    restate: &[String],
) -> Result<()> {
    graph.validate(inputs.len())?;
    let plans = graph.tasks()?;
    let restored = restored.unwrap_or_default();
    let saved = Saved::new(graph, &restored.nodes)?;
    view.rows_late
        .store(saved.rows_late(), std::sync::atomic::Ordering::Relaxed);
    // Channels: a view input feeds its task's port; every partition of an
    // upstream task feeds every partition of the task it exchanges into.
    let mut inputs: Vec<Option<ViewInput>> = inputs.into_iter().map(Some).collect();
    let mut channels: Vec<Vec<Vec<Channel>>> = plans
        .iter()
        .map(|p| (0..p.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let mut outlets: Vec<Vec<Option<Outlet>>> = plans
        .iter()
        .map(|p| (0..p.parallelism).map(|_| None).collect())
        .collect();
    let mut prefer = vec![None; plans.len()];
    for (t, plan) in plans.iter().enumerate() {
        for (i, port) in plan.ports.iter().enumerate() {
            match port.source {
                Source::Input(k) => {
                    let input = inputs
                        .get_mut(k)
                        .and_then(Option::take)
                        .ok_or_else(|| EddyError::Internal(format!("view input {k} read twice")))?;
                    if graph.prefer_input == Some(k) {
                        prefer[t] = Some(i);
                    }
                    channels[t][0].push(Channel {
                        port: i,
                        backlog: VecDeque::from(input.snapshot),
                        rx: input.rx,
                    });
                }
                Source::Task(u) => {
                    let keys = match &graph.nodes[port.node].spec.inputs[port.node_port] {
                        Distribution::Hash(keys) => keys.clone(),
                        Distribution::Any | Distribution::Single => Vec::new(),
                    };
                    for outlet in outlets[u].iter_mut() {
                        let mut txs = Vec::new();
                        for part in channels[t].iter_mut() {
                            let (tx, rx) = mpsc::channel(channel_capacity);
                            txs.push(tx);
                            part.push(Channel {
                                port: i,
                                backlog: VecDeque::new(),
                                rx,
                            });
                        }
                        *outlet = Some(Outlet::Exchange {
                            txs,
                            keys: keys.clone(),
                        });
                    }
                }
            }
        }
    }
    let last = graph.nodes.len() - 1;
    for (t, plan) in plans.iter().enumerate() {
        for (p, chans) in std::mem::take(&mut channels[t]).into_iter().enumerate() {
            let partition = Partition {
                index: p,
                count: plan.parallelism,
            };
            let outlet = match outlets[t][p].take() {
                Some(o) => o,
                None if plan.nodes.contains(&last) => Outlet::View(Box::new(
                    sink::ViewSink::new(view.clone(), restored.published_watermark).await,
                )),
                None => return Err(EddyError::Internal("a view task without an output".into())),
            };
            let local = |v: usize| plan.nodes.iter().position(|&n| n == v);
            let mut nodes = Vec::with_capacity(plan.nodes.len());
            for &v in &plan.nodes {
                let node = &graph.nodes[v];
                let mut op = (node.make)(partition)?;
                let (state, watermarks, forwarded, rows_late) =
                    saved.for_node(&node.id, partition, node.inputs.len());
                op.restore(
                    state,
                    &RestoreContext {
                        partition,
                        watermarks: &watermarks,
                    },
                )
                .map_err(|e| restore_error(&node.id, e))?;
                let consumer = graph
                    .consumer(v)
                    .and_then(|(c, port)| local(c).map(|c| (c, port)));
                let stats = view.operator_stats(&node.id, op.explain(), p);
                nodes.push(Fused {
                    restate: restate.contains(&node.id),
                    id: node.id.clone(),
                    op,
                    consumer,
                    watermarks,
                    forwarded,
                    rows_late,
                    stats,
                });
            }
            let entries = plan
                .ports
                .iter()
                .map(|port| (local(port.node).unwrap_or(0), port.node_port))
                .collect();
            let task = Task {
                view: view.clone(),
                partition: p,
                aligner: Aligner::new(chans, plan.ports.len(), prefer[t]),
                entries,
                nodes,
                outlet,
                bytes: view.state_slot(),
            };
            tasks.spawn(guarded(view.clone(), task.run()));
        }
    }
    Ok(())
}

fn restore_error(id: &str, e: EddyError) -> EddyError {
    EddyError::Internal(format!(
        "cannot restore the checkpointed state of operator {id}: {e}"
    ))
}

/// Checkpointed node state by node id.
struct Saved<'a> {
    by_id: HashMap<&'a str, Vec<&'a NodeSnapshot>>,
    /// Late rows counted by operators the graph does not have (a format-1
    /// checkpoint's view total): they count toward the first operator.
    orphan_late: u64,
    first: &'a str,
}

impl<'a> Saved<'a> {
    /// Index `nodes`; state for an operator the graph does not have is an
    /// error (the plan changed under the checkpoint).
    fn new(graph: &'a Graph, nodes: &'a [NodeSnapshot]) -> Result<Self> {
        let mut by_id: HashMap<&str, Vec<&NodeSnapshot>> = HashMap::new();
        let mut orphan_late = 0;
        for n in nodes {
            if !graph.nodes.iter().any(|g| g.id == n.id) {
                if n.state.is_empty() {
                    orphan_late += n.rows_late;
                    continue;
                }
                return Err(EddyError::Internal(format!(
                    "the checkpoint holds state of operator {} ({}), which this view's plan \
                     does not have",
                    n.id,
                    n.state.part_names().join(", ")
                )));
            }
            by_id.entry(n.id.as_str()).or_default().push(n);
        }
        let first = graph.nodes.first().map_or("", |n| n.id.as_str());
        Ok(Saved {
            by_id,
            orphan_late,
            first,
        })
    }

    /// Late rows counted over every node and partition.
    fn rows_late(&self) -> u64 {
        self.by_id
            .values()
            .flatten()
            .map(|n| n.rows_late)
            .sum::<u64>()
            + self.orphan_late
    }

    /// What partition `part` of node `id` resumes from: every partition's
    /// state (the operator keeps its own keys), the watermarks per port and
    /// forwarded, and the late-row count (all on partition 0).
    fn for_node(
        &self,
        id: &str,
        part: Partition,
        ports: usize,
    ) -> (
        OperatorState,
        Vec<Option<EventTime>>,
        Option<EventTime>,
        u64,
    ) {
        let saved = self.by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        let mut state = OperatorState::default();
        for n in saved {
            state.extend(n.state.clone());
        }
        let min = |values: Vec<Option<EventTime>>| -> Option<EventTime> {
            if values.is_empty() {
                None
            } else {
                crate::operators::merged(&values)
            }
        };
        let watermarks = (0..ports)
            .map(|i| {
                min(saved
                    .iter()
                    .map(|n| n.watermarks.get(i).copied().flatten())
                    .collect())
            })
            .collect();
        let forwarded = min(saved.iter().map(|n| n.forwarded).collect());
        let rows_late = if part.index == 0 {
            let orphans = if id == self.first {
                self.orphan_late
            } else {
                0
            };
            saved.iter().map(|n| n.rows_late).sum::<u64>() + orphans
        } else {
            0
        };
        (state, watermarks, forwarded, rows_late)
    }
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
