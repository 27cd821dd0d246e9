//! A view's operator graph as the planner hands it over, and how the
//! runtime cuts it into tasks.
//!
//! Nodes are listed inputs-first; each node's output feeds exactly one
//! other node, and the last node's output is the view. Adjacent nodes are
//! *chained* into one task when no exchange is needed between them: same
//! parallelism, and either one partition or a port that takes rows from
//! any partition. A node on several partitions fed by hash starts a task of
//! its own, fed through a hash exchange from every partition upstream.

use std::sync::Arc;

use crate::error::{EddyError, Result};
use crate::operators::{Distribution, OperatorSpec, Partition, StreamOperator};

/// Makes a node's operator for one partition.
pub type Factory = Arc<dyn Fn(Partition) -> Result<Box<dyn StreamOperator>> + Send + Sync>;

/// Where a node's input port reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The view's `k`-th input (a table, source or upstream view).
    Input(usize),
    /// The output of an earlier node.
    Node(usize),
}

/// One operator of the graph.
#[derive(Clone)]
pub struct Node {
    /// Stable id within the view (checkpointed state is keyed by it).
    pub id: String,
    /// How it must be fed.
    pub spec: OperatorSpec,
    /// Partitions it runs on.
    pub parallelism: usize,
    /// One edge per input port.
    pub inputs: Vec<Edge>,
    /// Makes its operator.
    pub make: Factory,
}

/// A view's operators.
#[derive(Clone, Default)]
pub struct Graph {
    /// Inputs first; the last node's output is the view.
    pub nodes: Vec<Node>,
    /// A view input read before the others (a lookup join's table).
    pub prefer_input: Option<usize>,
}

/// What feeds a task's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The view's input.
    Input(usize),
    /// Every partition of another task.
    Task(usize),
}

/// A port of a task: its source and the (node, node port) it feeds.
#[derive(Debug, Clone, Copy)]
pub struct TaskPort {
    /// What feeds it.
    pub source: Source,
    /// The graph node it feeds.
    pub node: usize,
    /// The node's port.
    pub node_port: usize,
}

/// A group of chained nodes run by one task per partition.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// Graph nodes, inputs first; the last is the task's root (its output leaves the task).
    pub nodes: Vec<usize>,
    /// Partitions.
    pub parallelism: usize,
    /// Input ports.
    pub ports: Vec<TaskPort>,
}

impl Graph {
    /// Add a node; returns its index.
    pub fn add(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// A node id not used yet: `kind`, then `kind_2`, `kind_3`, …
    pub fn fresh_id(&self, kind: &str) -> String {
        let taken = |id: &str| self.nodes.iter().any(|n| n.id == id);
        if !taken(kind) {
            return kind.to_string();
        }
        (2..)
            .map(|i| format!("{kind}_{i}"))
            .find(|id| !taken(id))
            .unwrap_or_else(|| kind.to_string())
    }

    /// Check the shape the runtime relies on.
    pub fn validate(&self, inputs: usize) -> Result<()> {
        let bad = |what: String| Err(EddyError::Internal(format!("view graph: {what}")));
        let Some(last) = self.nodes.last() else {
            return bad("no operators".into());
        };
        if last.parallelism != 1 {
            return bad("the last operator must run on one partition".into());
        }
        let mut consumed = vec![0; self.nodes.len()];
        let mut read = vec![0; inputs];
        for (i, n) in self.nodes.iter().enumerate() {
            if n.inputs.len() != n.spec.inputs.len() || n.inputs.is_empty() {
                return bad(format!("{} has {} edges", n.id, n.inputs.len()));
            }
            if n.parallelism == 0 || self.nodes[..i].iter().any(|m| m.id == n.id) {
                return bad(format!("{}: no partitions, or a duplicate id", n.id));
            }
            for e in &n.inputs {
                match *e {
                    Edge::Node(u) if u < i => consumed[u] += 1,
                    Edge::Input(k) if k < inputs => read[k] += 1,
                    _ => return bad(format!("{} reads {e:?}", n.id)),
                }
            }
        }
        let last = self.nodes.len() - 1;
        if consumed[..last].iter().any(|c| *c != 1) || read.iter().any(|r| *r != 1) {
            return bad("every operator output and input must be read exactly once".into());
        }
        Ok(())
    }

    /// Cut the graph into chained tasks (see the module docs).
    pub fn tasks(&self) -> Result<Vec<TaskPlan>> {
        let mut tasks: Vec<TaskPlan> = Vec::new();
        let mut task_of = vec![usize::MAX; self.nodes.len()];
        for (v, node) in self.nodes.iter().enumerate() {
            let ups: Vec<usize> = node
                .inputs
                .iter()
                .filter_map(|e| match e {
                    Edge::Node(u) => Some(task_of[*u]),
                    Edge::Input(_) => None,
                })
                .collect();
            let p = node.parallelism;
            let forward = node
                .spec
                .inputs
                .iter()
                .all(|d| matches!(d, Distribution::Any));
            let chain = ups.iter().all(|&t| tasks[t].parallelism == p)
                && (p == 1 || forward)
                && (p == 1 || ups.len() == node.inputs.len());
            let t = if chain && !ups.is_empty() {
                // Merge every upstream task into the first.
                let mut ups = ups;
                ups.sort_unstable();
                ups.dedup();
                let keep = ups[0];
                for &other in &ups[1..] {
                    let moved = std::mem::take(&mut tasks[other].nodes);
                    let ports = std::mem::take(&mut tasks[other].ports);
                    for &m in &moved {
                        task_of[m] = keep;
                    }
                    tasks[keep].nodes.extend(moved);
                    tasks[keep].ports.extend(ports);
                }
                keep
            } else {
                tasks.push(TaskPlan {
                    nodes: Vec::new(),
                    parallelism: p,
                    ports: Vec::new(),
                });
                tasks.len() - 1
            };
            for (port, e) in node.inputs.iter().enumerate() {
                let source = match *e {
                    Edge::Input(k) if p == 1 => Source::Input(k),
                    Edge::Input(_) => {
                        return Err(EddyError::Internal(format!(
                            "view graph: {} reads a view input on {p} partitions",
                            node.id
                        )))
                    }
                    Edge::Node(u) if task_of[u] == t => continue,
                    Edge::Node(u) => Source::Task(task_of[u]),
                };
                tasks[t].ports.push(TaskPort {
                    source,
                    node: v,
                    node_port: port,
                });
            }
            tasks[t].nodes.push(v);
            task_of[v] = t;
        }
        // Renumber after merges; nodes within a task stay inputs-first.
        let live: Vec<usize> = (0..tasks.len())
            .filter(|&t| !tasks[t].nodes.is_empty())
            .collect();
        let renumber = |t: usize| live.iter().position(|&l| l == t).unwrap_or(usize::MAX);
        let mut out: Vec<TaskPlan> = live.iter().map(|&t| tasks[t].clone()).collect();
        for task in &mut out {
            task.nodes.sort_unstable();
            for port in &mut task.ports {
                if let Source::Task(u) = port.source {
                    port.source = Source::Task(renumber(u));
                }
            }
        }
        Ok(out)
    }

    /// The node (and its port) that reads `node`'s output; `None` for the last node.
    pub fn consumer(&self, node: usize) -> Option<(usize, usize)> {
        self.nodes.iter().enumerate().find_map(|(v, n)| {
            n.inputs
                .iter()
                .position(|e| *e == Edge::Node(node))
                .map(|port| (v, port))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::steps::Steps;

    fn node(g: &Graph, kind: &str, parallelism: usize, inputs: Vec<Edge>, hash: bool) -> Node {
        let dist = if hash {
            Distribution::Hash(Vec::new())
        } else {
            Distribution::Any
        };
        let mut spec = OperatorSpec::stateless();
        spec.inputs = vec![dist; inputs.len()];
        Node {
            id: g.fresh_id(kind),
            spec,
            parallelism,
            inputs,
            make: Arc::new(|_| Ok(Box::new(Steps::new(Vec::new())) as Box<dyn StreamOperator>)),
        }
    }

    /// window → steps → (hash) aggregate ×4 → steps ×4 → gather: three tasks,
    /// as the front / partitions / sink layout always had.
    #[test]
    fn an_aggregate_view_is_front_partitions_and_sink() {
        let mut g = Graph::default();
        let w = g.add(node(&g, "window", 1, vec![Edge::Input(0)], false));
        let s = g.add(node(&g, "steps", 1, vec![Edge::Node(w)], false));
        let a = g.add(node(&g, "aggregate", 4, vec![Edge::Node(s)], true));
        let post = g.add(node(&g, "steps", 4, vec![Edge::Node(a)], false));
        g.add(node(&g, "gather", 1, vec![Edge::Node(post)], false));
        g.validate(1).unwrap();
        let tasks = g.tasks().unwrap();
        let shape: Vec<(Vec<usize>, usize)> = tasks
            .iter()
            .map(|t| (t.nodes.clone(), t.parallelism))
            .collect();
        assert_eq!(shape, [(vec![0, 1], 1), (vec![2, 3], 4), (vec![4], 1)]);
        assert_eq!(tasks[1].ports[0].source, Source::Task(0));
        assert_eq!(tasks[2].ports[0].source, Source::Task(1));
        assert_eq!(g.nodes[3].id, "steps_2");
    }

    /// Both sides' steps and the join run in one task with two input ports.
    #[test]
    fn a_join_absorbs_its_sides() {
        let mut g = Graph::default();
        let l = g.add(node(&g, "window", 1, vec![Edge::Input(0)], false));
        let r = g.add(node(&g, "window", 1, vec![Edge::Input(1)], false));
        let j = g.add(node(
            &g,
            "join",
            1,
            vec![Edge::Node(l), Edge::Node(r)],
            false,
        ));
        g.add(node(&g, "steps", 1, vec![Edge::Node(j)], false));
        g.validate(2).unwrap();
        let tasks = g.tasks().unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].nodes, [0, 1, 2, 3]);
        let sources: Vec<Source> = tasks[0].ports.iter().map(|p| p.source).collect();
        assert_eq!(sources, [Source::Input(0), Source::Input(1)]);
    }

    #[test]
    fn malformed_graphs_are_refused() {
        let mut g = Graph::default();
        let a = g.add(node(&g, "a", 1, vec![Edge::Input(0)], false));
        g.add(node(&g, "b", 1, vec![Edge::Node(a)], false));
        g.add(node(&g, "c", 1, vec![Edge::Node(a)], false));
        assert!(g.validate(1).is_err(), "a read twice");
        let mut g = Graph::default();
        g.add(node(&g, "a", 2, vec![Edge::Input(0)], true));
        assert!(g.validate(1).is_err(), "last on two partitions");
        assert!(g.tasks().is_err(), "a view input on two partitions");
    }
}
