//! A [`ViewPlan`] as an operator [`Graph`] for the runtime.
//!
//! ```text
//!  input ─► [window | drop_late] ─► steps ─┐
//!  input ─► [window | drop_late] ─► steps ─┴► join ─► steps ─► [top_n ─► steps]
//!     ─► (hash) [sessions ─►] aggregate ─► steps   (×partitions)
//!     ─► gather | top_n ─► steps                    (one partition) ─► the view
//! ```
//! Node ids are stable for a given plan (`window`, `window_2`, `join`,
//! `top_n`, `sessions`, `aggregate`, …): checkpointed state is keyed by them.

use std::sync::Arc;

use crate::error::Result;
use crate::operators::aggregate::{routing_keys, Aggregate, Sessions};
use crate::operators::join::Join;
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

/// The operator graph of `plan`.
pub fn view_graph(plan: &ViewPlan) -> Result<Graph> {
    let mut b = Builder {
        graph: Graph::default(),
    };
    let mut cur = match &plan.join {
        Some(join) => {
            let mut sides = Vec::with_capacity(2);
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
                sides.push(b.steps(from, &side.steps, 1));
            }
            let spec = join.spec.clone();
            let timed = [join.sides[0].watermarked, join.sides[1].watermarked];
            b.graph.prefer_input = spec.lookup;
            b.add(
                "join",
                single(2, true),
                1,
                sides,
                factory(move || Join::new(spec.clone(), timed)),
            )
        }
        None => match plan.window.clone() {
            Some((spec, schema)) => {
                let panes = plan.agg.as_ref().and_then(|a| a.panes);
                b.add(
                    "window",
                    OperatorSpec::stateless(),
                    1,
                    vec![Edge::Input(0)],
                    factory(move || {
                        Ok(match panes {
                            Some(p) => {
                                WindowAssign::panes(&spec, p.pane_window(&spec), schema.clone())
                            }
                            None => WindowAssign::new(spec.clone(), schema.clone()),
                        })
                    }),
                )
            }
            None => Edge::Input(0),
        },
    };
    let top_n = |b: &mut Builder, from: Edge, spec: &Arc<crate::operators::top_n::TopNSpec>| {
        let spec = spec.clone();
        b.add(
            "top_n",
            single(1, spec.keep_all),
            1,
            vec![from],
            factory(move || TopN::new(spec.clone())),
        )
    };
    match &plan.top_n {
        Some((at, spec)) if !plan.top_n_after_agg => {
            cur = b.steps(cur, &plan.pre[..*at], 1);
            cur = top_n(&mut b, cur, spec);
            cur = b.steps(cur, &plan.pre[*at..], 1);
        }
        _ => cur = b.steps(cur, &plan.pre, 1),
    }
    if let Some(agg) = &plan.agg {
        let n = plan.partitions.max(1);
        if matches!(cur, Edge::Input(_)) && n > 1 {
            // The exchange to the partitions runs in a task of its own.
            cur = pass(&mut b, "exchange", cur);
        }
        let keys = routing_keys(agg);
        let mut dist = Distribution::Hash(keys);
        if agg.session.is_some() {
            let spec = agg.clone();
            cur = b.add(
                "sessions",
                OperatorSpec {
                    inputs: vec![dist],
                    accepts_retractions: false,
                    emits_retractions: false,
                    time: crate::operators::TimeMapping::Same,
                },
                n,
                vec![cur],
                factory(move || Sessions::new(&spec)),
            );
            // Rows reach the aggregate in the partition the buffer holds them in.
            dist = Distribution::Any;
        }
        let spec = agg.clone();
        cur = b.add(
            "aggregate",
            OperatorSpec {
                inputs: vec![dist],
                accepts_retractions: agg.retract,
                emits_retractions: true,
                time: crate::operators::TimeMapping::Same,
            },
            n,
            vec![cur],
            factory(move || Aggregate::new(spec.clone(), 0)),
        );
        match &plan.top_n {
            Some((at, spec)) if plan.top_n_after_agg => {
                cur = b.steps(cur, &plan.post[..*at], n);
                cur = top_n(&mut b, cur, spec);
                cur = b.steps(cur, &plan.post[*at..], 1);
            }
            _ => {
                cur = b.steps(cur, &plan.post, n);
                if n > 1 {
                    cur = pass(&mut b, "gather", cur);
                }
            }
        }
    } else {
        cur = b.steps(cur, &plan.post, 1);
    }
    if matches!(cur, Edge::Input(_)) {
        pass(&mut b, "forward", cur);
    }
    Ok(b.graph)
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
