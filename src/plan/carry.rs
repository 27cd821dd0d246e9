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

use std::collections::HashSet;

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
}

/// What `new` can keep of `old`'s operators (see the module docs); `kind`
/// names an input's kind (a source and a table of one name differ).
pub fn carry(old: &ViewPlan, new: &ViewPlan, kind: &dyn Fn(&str) -> String) -> Result<Carry> {
    let before = signatures(old, kind)?;
    let after = signatures(new, kind)?;
    // Unchanged: the new node's old twin (each old node serves one new node).
    let mut used = vec![false; before.len()];
    let mut twin: Vec<Option<usize>> = Vec::with_capacity(after.len());
    for sig in &after {
        let found = (0..before.len()).find(|&u| !used[u] && before[u] == *sig);
        if let Some(u) = found {
            used[u] = true;
        }
        twin.push(found);
    }
    let graph = &new.graph;
    let restates = |v: usize| twin[v].is_some() && graph.nodes[v].spec.restates;
    // A restating node is kept unless one after it is kept instead.
    let mut restate = Vec::new();
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
            restate.push(v);
        }
    }
    let mut kept: HashSet<usize> = HashSet::new();
    let mut stack = restate.clone();
    while let Some(v) = stack.pop() {
        if kept.insert(v) {
            stack.extend(graph.nodes[v].inputs.iter().filter_map(|e| match e {
                Edge::Node(u) => Some(*u),
                Edge::Input(_) => None,
            }));
        }
    }
    let mut live = vec![false; new.inputs.len()];
    for &v in &kept {
        for e in &graph.nodes[v].inputs {
            if let Edge::Input(k) = *e {
                if let Some(slot) = live.get_mut(k) {
                    *slot = true;
                }
            }
        }
    }
    let mut ids: Vec<usize> = kept.into_iter().collect();
    ids.sort_unstable();
    let kept = ids
        .iter()
        .filter_map(|&v| {
            let old_id = &old.graph.nodes[twin[v]?].id;
            Some((graph.nodes[v].id.clone(), old_id.clone()))
        })
        .collect();
    let what = restate
        .iter()
        .map(|&v| Ok((graph.nodes[v].make)(Partition::SINGLE)?.explain()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Carry {
        kept,
        restate: restate.iter().map(|&v| graph.nodes[v].id.clone()).collect(),
        live,
        what,
    })
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
