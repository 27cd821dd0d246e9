//! Building a view's operator [`Graph`] node by node while the planner
//! lowers its query (see [`super::lower`]).
//!
//! ```text
//!  input ─► [window | drop_late] ─► steps ─┐ (hash of the join keys)
//!  input ─► [window | drop_late] ─► steps ─┴► join ─► steps         (×partitions)
//!     ─► (hash of PARTITION BY) [top_n ─► steps]                     (×partitions)
//!     ─► (hash of GROUP BY) [sessions ─►] aggregate ─► steps         (×partitions)
//!     ─► (hash of PARTITION BY) [top_n ─► steps]                     (×partitions)
//!     ─► [delay ─► …the next aggregate, join or union…]
//!     ─► gather                                                      (one partition) ─► the view
//! ```
//! A Top-N without PARTITION BY, a join without equi-join keys and a lookup
//! join (its table's changes must reach it before the next stream row) run
//! on one partition.
//!
//! Node ids are stable for a given plan (`window`, `window_2`, `join`,
//! `top_n`, `sessions`, `aggregate`, …): checkpointed state is keyed by them.

use std::sync::Arc;

use crate::error::Result;
use crate::operators::aggregate::AggregateSpec;
use crate::operators::aggregate::{routing_keys, Aggregate, Sessions};
use crate::operators::join::{hash_keys, Join};
use crate::operators::steps::Step;
use crate::operators::steps::{Steps, Union};
use crate::operators::top_n::TopN;
use crate::operators::window::{Delay, DropLate, WindowAssign, WindowSpec};
use crate::operators::{Distribution, OperatorSpec, StreamOperator};
use crate::runtime::graph::Factory;
use crate::runtime::{Edge, Graph, Node};

/// Builds a view's graph node by node, and the list of inputs it reads.
#[derive(Default)]
pub(super) struct Builder {
    /// The graph so far.
    pub graph: Graph,
    /// The objects the view reads, by [`Edge::Input`] index.
    pub inputs: Vec<String>,
}

impl Builder {
    /// The edge that reads the object `name`.
    pub fn input(&mut self, name: &str) -> Edge {
        self.inputs.push(name.to_string());
        Edge::Input(self.inputs.len() - 1)
    }

    fn add(
        &mut self,
        kind: &str,
        spec: OperatorSpec,
        parallelism: usize,
        inputs: Vec<Edge>,
        make: Factory,
    ) -> Edge {
        let id = self.graph.fresh_id(kind);
        Edge::Node(self.graph.add(Node {
            id,
            spec,
            parallelism,
            inputs,
            make,
        }))
    }

    /// Stateless steps after `at`, on its partitions.
    pub fn steps_at(&mut self, at: At, steps: &[Step]) -> At {
        At {
            edge: self.steps(at.edge, steps, at.parallelism),
            parallelism: at.parallelism,
        }
    }

    /// Stateless steps after `from` (nothing when there are none).
    fn steps(&mut self, from: Edge, steps: &[Step], parallelism: usize) -> Edge {
        if steps.is_empty() {
            return from;
        }
        let steps = steps.to_vec();
        self.add(
            "steps",
            OperatorSpec::stateless(),
            parallelism,
            vec![from],
            factory(move || Ok(Steps::new(steps.clone()))),
        )
    }
}

/// A factory for an operator that is the same on every partition.
fn factory<O: StreamOperator + 'static>(
    make: impl Fn() -> Result<O> + Send + Sync + 'static,
) -> Factory {
    Arc::new(move |_| Ok(Box::new(make()?) as Box<dyn StreamOperator>))
}

fn single(inputs: usize, accepts_retractions: bool) -> OperatorSpec {
    OperatorSpec {
        inputs: vec![Distribution::Single; inputs],
        accepts_retractions,
        ..OperatorSpec::stateless()
    }
}

/// Where the stream being built stands: the edge that produces it and the
/// partitions that edge runs on.
#[derive(Clone, Copy, Debug)]
pub(super) struct At {
    /// The edge that produces it.
    pub edge: Edge,
    /// Partitions of that edge.
    pub parallelism: usize,
}

impl At {
    /// A view input, read on one partition.
    pub fn input(edge: Edge) -> Self {
        At {
            edge,
            parallelism: 1,
        }
    }
}

/// Window assignment after `at` (per HOP pane when `panes` is given).
pub(super) fn window(
    b: &mut Builder,
    at: At,
    spec: WindowSpec,
    schema: datafusion::arrow::datatypes::SchemaRef,
    panes: Option<crate::operators::aggregate::PaneSpec>,
) -> At {
    let edge = b.add(
        "window",
        OperatorSpec::stateless(),
        at.parallelism,
        vec![at.edge],
        factory(move || {
            Ok(match panes {
                Some(p) => WindowAssign::panes(&spec, p.pane_window(&spec), schema.clone()),
                None => WindowAssign::new(spec.clone(), schema.clone()),
            })
        }),
    );
    At { edge, ..at }
}

/// Rows below the watermark by column `col` dropped (and counted as late).
pub(super) fn drop_late(b: &mut Builder, at: At, col: usize) -> At {
    let edge = b.add(
        "drop_late",
        OperatorSpec::stateless(),
        at.parallelism,
        vec![at.edge],
        factory(move || Ok(DropLate::new(col))),
    );
    At { edge, ..at }
}

/// The watermark held back by `ns` after `at`.
pub(super) fn delay(b: &mut Builder, at: At, ns: i64) -> At {
    let edge = b.add(
        "delay",
        OperatorSpec::stateless(),
        at.parallelism,
        vec![at.edge],
        factory(move || Ok(Delay::new(ns))),
    );
    At { edge, ..at }
}

/// A join of `sides` on `n` partitions by hash of its keys (on one without
/// equi-join keys, and for a lookup join: it reads the table's changes
/// before each stream row, so both inputs go to one task).
pub(super) fn join(
    b: &mut Builder,
    sides: [At; 2],
    spec: &crate::operators::join::JoinSpec,
    timed: [bool; 2],
    n: usize,
) -> Result<At> {
    let keyed = !spec.keys[0].is_empty() && spec.lookup.is_none();
    let p = if keyed { n } else { 1 };
    let mut edges = Vec::with_capacity(2);
    let mut dists = Vec::with_capacity(2);
    for (s, side) in sides.iter().enumerate() {
        edges.push(exchange_from(b, *side, p));
        dists.push(if keyed {
            Distribution::Hash(hash_keys(spec, s)?)
        } else {
            Distribution::Single
        });
    }
    // The planner's row bound is for the whole join: each partition gets its share.
    let spec = Arc::new(spec.per_partition(p));
    let edge = b.add(
        "join",
        OperatorSpec {
            inputs: dists,
            ..single(2, true)
        },
        p,
        edges,
        factory(move || Join::new(spec.clone(), timed)),
    );
    Ok(At {
        edge,
        parallelism: p,
    })
}

/// `UNION ALL` of `inputs` on one partition: rows pass as they come, the
/// watermark is the least of the inputs'.
pub(super) fn union(b: &mut Builder, inputs: &[At]) -> At {
    let edges = inputs.iter().map(|at| exchange_from(b, *at, 1)).collect();
    let n = inputs.len();
    let edge = b.add(
        "union",
        single(n, true),
        1,
        edges,
        factory(move || Ok(Union::new(n))),
    );
    At {
        edge,
        parallelism: 1,
    }
}

/// A temporal filter after `at` (on its partitions; rows leave as
/// processing time passes them).
pub(super) fn temporal_filter(
    b: &mut Builder,
    at: At,
    spec: crate::operators::temporal::TemporalSpec,
) -> At {
    use crate::operators::temporal::TemporalFilter;
    let edge = b.add(
        "temporal_filter",
        OperatorSpec::stateless(),
        at.parallelism,
        vec![at.edge],
        factory(move || TemporalFilter::new(spec.clone())),
    );
    At { edge, ..at }
}

/// Window functions (OVER) after `at`, per PARTITION BY key on `n`
/// partitions (on one without PARTITION BY).
pub(super) fn over(
    b: &mut Builder,
    at: At,
    spec: Arc<crate::operators::over::OverSpec>,
    n: usize,
) -> At {
    use crate::operators::over::Over;
    let (p, dist) = match spec.partition_by.is_empty() {
        true => (1, Distribution::Single),
        false => (n, Distribution::Hash(spec.partition_by.clone())),
    };
    let from = exchange_from(b, at, p);
    let edge = b.add(
        "over",
        OperatorSpec {
            inputs: vec![dist],
            ..single(1, true)
        },
        p,
        vec![from],
        factory(move || Over::new(spec.clone())),
    );
    At {
        edge,
        parallelism: p,
    }
}

/// The end of the view: every partition's rows meet in one task (a view
/// input read as it is still passes one operator).
pub(super) fn gather(b: &mut Builder, at: At) {
    if at.parallelism > 1 {
        pass(b, "gather", at.edge);
    } else if matches!(at.edge, Edge::Input(_)) {
        pass(b, "forward", at.edge);
    }
}

/// `steps`, with a Top-N after the first `i` of them when there is one.
pub(super) fn steps_around_top_n(
    b: &mut Builder,
    at: At,
    steps: &[Step],
    top_n: Option<(usize, &Arc<crate::operators::top_n::TopNSpec>)>,
    n: usize,
) -> At {
    let Some((i, spec)) = top_n else {
        return b.steps_at(at, steps);
    };
    let at = b.steps_at(at, &steps[..i]);
    // Ranked per PARTITION BY key on `n` partitions; a global ranking on one.
    let (p, dist) = match spec.partition_by.is_empty() {
        true => (1, Distribution::Single),
        false => (n, Distribution::Hash(spec.partition_by.clone())),
    };
    let from = exchange_from(b, at, p);
    let spec = spec.clone();
    let edge = b.add(
        "top_n",
        OperatorSpec {
            inputs: vec![dist],
            ..single(1, spec.keep_all)
        },
        p,
        vec![from],
        factory(move || TopN::new(spec.clone())),
    );
    b.steps_at(
        At {
            edge,
            parallelism: p,
        },
        &steps[i..],
    )
}

/// The edge a node on `p` partitions reads `at` from: a view input read
/// directly cannot feed several partitions, so a task of its own reads it.
pub(super) fn exchange_from(b: &mut Builder, at: At, p: usize) -> Edge {
    if p > 1 && matches!(at.edge, Edge::Input(_)) {
        pass(b, "exchange", at.edge)
    } else {
        at.edge
    }
}

/// The aggregate on `n` partitions by hash of its group keys, behind its
/// SESSION / count-window buffer when it has one.
pub(super) fn aggregate(b: &mut Builder, at: At, agg: &Arc<AggregateSpec>, n: usize) -> At {
    let mut from = exchange_from(b, at, n);
    let mut dist = Distribution::Hash(routing_keys(agg));
    if agg.session.is_some() {
        let spec = agg.clone();
        from = b.add(
            "sessions",
            OperatorSpec {
                inputs: vec![dist],
                accepts_retractions: false,
                emits_retractions: false,
                time: crate::operators::TimeMapping::Same,
                restates: false,
            },
            n,
            vec![from],
            factory(move || Sessions::new(&spec)),
        );
        // Rows reach the aggregate in the partition the buffer holds them in.
        dist = Distribution::Any;
    }
    let spec = agg.clone();
    let edge = b.add(
        "aggregate",
        OperatorSpec {
            inputs: vec![dist],
            accepts_retractions: agg.retract,
            emits_retractions: true,
            time: crate::operators::TimeMapping::Same,
            // Without windows every group's last result row is in its state.
            restates: agg.window.is_none() && agg.session.is_none(),
        },
        n,
        vec![from],
        factory(move || Aggregate::new(spec.clone())),
    );
    At {
        edge,
        parallelism: n,
    }
}

/// A node on one partition that passes rows on: where an input is read
/// before an exchange, or where every partition's rows meet.
pub(super) fn pass(b: &mut Builder, kind: &str, from: Edge) -> Edge {
    b.add(
        kind,
        single(1, true),
        1,
        vec![from],
        factory(|| Ok(Steps::new(Vec::new()))),
    )
}
