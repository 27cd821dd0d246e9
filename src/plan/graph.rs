//! A [`ViewPlan`] as an operator [`Graph`] for the runtime.
//!
//! ```text
//!  input ─► [window | drop_late] ─► steps ─┐ (hash of the join keys)
//!  input ─► [window | drop_late] ─► steps ─┴► join ─► steps         (×partitions)
//!     ─► (hash of PARTITION BY) [top_n ─► steps]                     (×partitions)
//!     ─► (hash of GROUP BY) [sessions ─►] aggregate ─► steps         (×partitions)
//!     ─► (hash of PARTITION BY) [top_n ─► steps]                     (×partitions)
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
use crate::operators::steps::Steps;
use crate::operators::top_n::TopN;
use crate::operators::window::{DropLate, WindowAssign};
use crate::operators::{Distribution, OperatorSpec, StreamOperator};
use crate::runtime::graph::Factory;
use crate::runtime::{Edge, Graph, Node};

use super::ViewPlan;

/// Builds a graph node by node, each reading the previous one.
struct Builder {
    graph: Graph,
}

impl Builder {
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
    fn steps_at(&mut self, at: At, steps: &[Step]) -> At {
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
#[derive(Clone, Copy)]
struct At {
    edge: Edge,
    parallelism: usize,
}

/// The operator graph of `plan`: every keyed stateful operator (aggregate,
/// session buffer, Top-N with PARTITION BY, equi-join) runs on the plan's
/// partitions, fed by hash of its keys.
pub fn view_graph(plan: &ViewPlan) -> Result<Graph> {
    let mut b = Builder {
        graph: Graph::default(),
    };
    let n = plan.partitions.max(1);
    let mut at = match &plan.join {
        Some(join) => join_front(&mut b, join, n)?,
        None => single_front(&mut b, plan),
    };
    let (pre_top_n, post_top_n) = match &plan.top_n {
        Some((i, spec)) if plan.top_n_after_agg => (None, Some((*i, spec))),
        Some((i, spec)) => (Some((*i, spec)), None),
        None => (None, None),
    };
    at = steps_around_top_n(&mut b, at, &plan.pre, pre_top_n, n);
    if let Some(agg) = &plan.agg {
        at = aggregate(&mut b, at, agg, n);
        at = steps_around_top_n(&mut b, at, &plan.post, post_top_n, n);
    } else {
        at = b.steps_at(at, &plan.post);
    }
    if at.parallelism > 1 {
        pass(&mut b, "gather", at.edge);
    } else if matches!(at.edge, Edge::Input(_)) {
        pass(&mut b, "forward", at.edge);
    }
    Ok(b.graph)
}

/// The input of a view without a join, with its window assignment.
fn single_front(b: &mut Builder, plan: &ViewPlan) -> At {
    let edge = match plan.window.clone() {
        Some((spec, schema)) => {
            let panes = plan.agg.as_ref().and_then(|a| a.panes);
            b.add(
                "window",
                OperatorSpec::stateless(),
                1,
                vec![Edge::Input(0)],
                factory(move || {
                    Ok(match panes {
                        Some(p) => WindowAssign::panes(&spec, p.pane_window(&spec), schema.clone()),
                        None => WindowAssign::new(spec.clone(), schema.clone()),
                    })
                }),
            )
        }
        None => Edge::Input(0),
    };
    At {
        edge,
        parallelism: 1,
    }
}

/// Both inputs of a join, what runs on each before it, and the join: on
/// `n` partitions by hash of its keys (on one without equi-join keys, and
/// for a lookup join).
fn join_front(b: &mut Builder, join: &super::JoinPlan, n: usize) -> Result<At> {
    // A lookup join reads the table's changes before each stream row: both
    // inputs in one task, so it stays on one partition.
    let keyed = !join.spec.keys[0].is_empty() && join.spec.lookup.is_none();
    let p = if keyed { n } else { 1 };
    let mut sides = Vec::with_capacity(2);
    let mut dists = Vec::with_capacity(2);
    for (s, side) in join.sides.iter().enumerate() {
        let mut from = Edge::Input(s);
        if let Some((spec, schema)) = side.window.clone() {
            from = b.add(
                "window",
                OperatorSpec::stateless(),
                1,
                vec![from],
                factory(move || Ok(WindowAssign::new(spec.clone(), schema.clone()))),
            );
        } else if let Some(col) = side.drop_late {
            from = b.add(
                "drop_late",
                OperatorSpec::stateless(),
                1,
                vec![from],
                factory(move || Ok(DropLate::new(col))),
            );
        }
        from = b.steps(from, &side.steps, 1);
        if p > 1 && matches!(from, Edge::Input(_)) {
            // The exchange into the join's partitions runs in a task of its own.
            from = pass(b, "exchange", from);
        }
        sides.push(from);
        dists.push(if keyed {
            Distribution::Hash(hash_keys(&join.spec, s)?)
        } else {
            Distribution::Single
        });
    }
    // The planner's row bound is for the whole join: each partition gets its share.
    let spec = Arc::new(join.spec.per_partition(p));
    let timed = [join.sides[0].watermarked, join.sides[1].watermarked];
    b.graph.prefer_input = spec.lookup;
    let edge = b.add(
        "join",
        OperatorSpec {
            inputs: dists,
            ..single(2, true)
        },
        p,
        sides,
        factory(move || Join::new(spec.clone(), timed)),
    );
    Ok(At {
        edge,
        parallelism: p,
    })
}

/// `steps`, with a Top-N after the first `i` of them when there is one.
fn steps_around_top_n(
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
fn exchange_from(b: &mut Builder, at: At, p: usize) -> Edge {
    if p > 1 && matches!(at.edge, Edge::Input(_)) {
        pass(b, "exchange", at.edge)
    } else {
        at.edge
    }
}

/// The aggregate on `n` partitions by hash of its group keys, behind its
/// SESSION / count-window buffer when it has one.
fn aggregate(b: &mut Builder, at: At, agg: &Arc<AggregateSpec>, n: usize) -> At {
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
fn pass(b: &mut Builder, kind: &str, from: Edge) -> Edge {
    b.add(
        kind,
        single(1, true),
        1,
        vec![from],
        factory(|| Ok(Steps::new(Vec::new()))),
    )
}
