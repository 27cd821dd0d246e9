//! Which operators of a view's new plan can take over the state of its old
//! plan (`CREATE OR REPLACE MATERIALIZED VIEW` with a changed definition).
//!
//! An operator is *unchanged* when its EXPLAIN line (`state_ttl` values
//! aside), its partitions, its exchange and, recursively, everything that
//! feeds it are the same: then its state means the same thing in both
//! plans. Such an operator is *kept* only when the operators after it can
//! be told what it already emitted: a kept operator whose consumer is new
//! restates its standing output first ([`OperatorSpec::restates`]: a
//! grouped aggregate without windows). Everything upstream of a kept
//! operator is kept with it; every other operator starts empty, and the
//! view inputs only those read are backfilled.
//!
//! ```text
//!   old:  t ─► exchange ─► aggregate ─► steps (HAVING a)          ─► view
//!   new:  t ─► exchange ─► aggregate ─► steps (HAVING b) ─► top_n ─► view
//!              └──────── kept ────────┘ └─────── new, fed the aggregate's rows first
//! ```

use super::ViewPlan;
use crate::error::Result;
use crate::operators::Partition;
use crate::runtime::Edge;

/// What a new plan keeps of an old plan's operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carry {
    /// Kept operators: (id in the new plan, id in the old plan).
    pub kept: Vec<(String, String)>,
    /// New ids of kept operators whose consumers are new: they restate
    /// their standing output to them before anything else.
    pub restate: Vec<String>,
    /// Per input of the new plan: only kept operators read it, so it is read
    /// on from where the old plan stood (not backfilled).
    pub live: Vec<bool>,
    /// The EXPLAIN lines of the kept operators that restate.
    pub what: Vec<String>,
}

impl Carry {
    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// An object of `inputs` (the new plan's) that kept operators read and
    /// new ones read too. The kept ones go on from the held position while
    /// the new ones start over; eddy does not take that on (the new ones
    /// would subscribe while the kept subscription waits for its graph).
    pub fn shared<'a>(&self, inputs: &'a [String]) -> Option<&'a str> {
        let read = |live: bool| {
            inputs
                .iter()
                .zip(&self.live)
                .filter(move |(_, l)| **l == live)
                .map(|(i, _)| i.as_str())
        };
        read(true).find(|i| read(false).any(|j| j == *i))
    }
}

/// What `new` can keep of `old`'s operators (see the module docs); `kind`
/// names an input's kind (a source and a table of one name differ).
pub fn carry(old: &ViewPlan, new: &ViewPlan, kind: &dyn Fn(&str) -> String) -> Result<Carry> {
    let before = signatures(old, kind)?;
    let after = signatures(new, kind)?;
    let graph = &new.graph;
    let unchanged = |v: usize| before.contains(&after[v]);
    let restates = |v: usize| graph.nodes[v].spec.restates && unchanged(v);
    // A restating node is kept unless one after it is kept instead.
    let mut candidates = Vec::new();
    for v in 0..graph.nodes.len() {
        if !restates(v) {
            continue;
        }
        let mut at = v;
        let mut later = false;
        while let Some((next, _)) = graph.consumer(at) {
            if restates(next) {
                later = true;
                break;
            }
            at = next;
        }
        if !later {
            candidates.push(v);
        }
    }
    // Pair each with an old node of its signature, then everything upstream
    // of the two port by port; an old node serves one new node.
    let mut used = vec![false; before.len()];
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut restate = Vec::new();
    let mut live = vec![false; new.inputs.len()];
    for v in candidates {
        let Some(u) = (0..before.len()).find(|&u| !used[u] && before[u] == after[v]) else {
            continue;
        };
        let Some((pairs, inputs)) = upstream_pairs(old, new, v, u) else {
            continue;
        };
        if pairs.iter().any(|&(_, u)| used[u]) {
            continue;
        }
        for &(_, u) in &pairs {
            used[u] = true;
        }
        for k in inputs {
            if let Some(slot) = live.get_mut(k) {
                *slot = true;
            }
        }
        kept.extend(pairs);
        restate.push(v);
    }
    kept.sort_unstable();
    let what = restate
        .iter()
        .map(|&v| Ok((graph.nodes[v].make)(Partition::SINGLE)?.explain()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Carry {
        kept: kept
            .iter()
            .map(|&(v, u)| (graph.nodes[v].id.clone(), old.graph.nodes[u].id.clone()))
            .collect(),
        restate: restate.iter().map(|&v| graph.nodes[v].id.clone()).collect(),
        live,
        what,
    })
}

/// Paired (new, old) nodes, and the new plan's inputs they read.
type Upstream = (Vec<(usize, usize)>, Vec<usize>);

/// New node `v` and old node `u` (of equal signatures) and everything
/// upstream of them, paired port by port, with the new plan's inputs they
/// read; `None` when the two differ in shape (they cannot, signatures
/// being equal, but nothing is assumed).
fn upstream_pairs(old: &ViewPlan, new: &ViewPlan, v: usize, u: usize) -> Option<Upstream> {
    let mut pairs = Vec::new();
    let mut inputs = Vec::new();
    let mut stack = vec![(v, u)];
    while let Some((v, u)) = stack.pop() {
        if pairs.contains(&(v, u)) {
            continue;
        }
        pairs.push((v, u));
        let (a, b) = (&new.graph.nodes[v].inputs, &old.graph.nodes[u].inputs);
        if a.len() != b.len() {
            return None;
        }
        for (x, y) in a.iter().zip(b) {
            match (*x, *y) {
                (Edge::Node(x), Edge::Node(y)) => stack.push((x, y)),
                (Edge::Input(k), Edge::Input(j)) if new.inputs.get(k) == old.inputs.get(j) => {
                    inputs.push(k)
                }
                _ => return None,
            }
        }
    }
    Some((pairs, inputs))
}

/// Per node of `plan`, what identifies it with everything upstream of it:
/// its EXPLAIN line (`state_ttl` values masked), partitions, how it is fed
/// and its inputs' signatures.
fn signatures(plan: &ViewPlan, kind: &dyn Fn(&str) -> String) -> Result<Vec<String>> {
    let nodes = &plan.graph.nodes;
    let mut out: Vec<String> = Vec::with_capacity(nodes.len());
    for (v, node) in nodes.iter().enumerate() {
        let op = (node.make)(Partition::SINGLE)?;
        let inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|e| match *e {
                Edge::Input(k) => {
                    let name = plan.inputs.get(k).map_or("?", String::as_str);
                    format!("input {name} [{}]", kind(name))
                }
                // Nodes come after their inputs; anything else matches nothing.
                Edge::Node(u) if u < v => out[u].clone(),
                Edge::Node(u) => format!("node {u} after {v}"),
            })
            .collect();
        out.push(format!(
            "{} on {} partitions fed {} from [{}]",
            mask_ttl(&op.explain()),
            node.parallelism,
            super::explain::exchange_line(node).unwrap_or_else(|| "as is".into()),
            inputs.join("; ")
        ));
    }
    Ok(out)
}

/// `line` with every `state_ttl <duration>` written as `state_ttl …`.
pub fn mask_ttl(line: &str) -> String {
    const KEY: &str = "state_ttl ";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        out.push('…');
        rest = &rest[i + KEY.len()..];
        let end = rest.find([';', ',', ')']).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values_are_masked() {
        assert_eq!(
            mask_ttl("Join: INNER; left keeps for state_ttl 3600 s; right keeps for state_ttl 1 h"),
            "Join: INNER; left keeps for state_ttl …; right keeps for state_ttl …"
        );
        assert_eq!(mask_ttl("Project: a, b"), "Project: a, b");
    }
}
