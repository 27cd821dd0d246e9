//! `EXPLAIN CREATE MATERIALIZED VIEW`: the streaming operator graph as text.

use super::ViewPlan;
use crate::error::Result;
use crate::operators::{Distribution, Partition};
use crate::runtime::{Edge, Graph};
use crate::sql::window::PLACEHOLDER_PREFIX;

/// Render `plan`'s operator graph, one line per operator from the inputs to
/// the view: each operator's own EXPLAIN line, with the view's inputs where
/// they are read and the exchange in front of an operator fed by hash.
pub fn explain(plan: &ViewPlan, input_kind: &dyn Fn(&str) -> String) -> Result<Vec<String>> {
    let graph = &plan.graph;
    let inputs = &plan.inputs;
    let sides = ["left", "right"];
    let mut lines = Vec::new();
    for v in branch_order(graph) {
        let node = &graph.nodes[v];
        let indent = "  ".repeat(joins_below(graph, v));
        for e in &node.inputs {
            if let Edge::Input(k) = *e {
                let name = inputs.get(k).map_or("?", String::as_str);
                let side = match inputs.len() {
                    1 => String::new(),
                    2 => format!(" ({})", sides[k.min(1)]),
                    _ => format!(" {}", k + 1),
                };
                lines.push(format!("Input{side}: {name} [{}]", input_kind(name)));
            }
        }
        lines.extend(exchange_line(node).map(|l| format!("{indent}{l}")));
        let op = (node.make)(Partition::SINGLE)?;
        for line in op.explain().lines().filter(|l| !l.is_empty()) {
            lines.push(format!("{indent}{line}"));
        }
    }
    let output = plan.output();
    let fields: Vec<String> = output
        .schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let mut lines: Vec<String> = lines.iter().map(|l| strip_placeholders(l)).collect();
    lines.push(format!(
        "Materialize: {} ({}){}",
        output.name,
        fields.join(", "),
        if output.updating {
            ", updating"
        } else {
            ", append-only"
        }
    ));
    Ok(lines)
}

/// How rows reach `node` when it is fed by hash: its input keys and partitions.
pub(super) fn exchange_line(node: &crate::runtime::Node) -> Option<String> {
    let list = |keys: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>]| {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.join(", ")
    };
    let into = node.parallelism;
    match node.spec.inputs.as_slice() {
        [Distribution::Hash(keys)] if keys.is_empty() => {
            Some("Exchange: none (no group key: one partition)".to_string())
        }
        [Distribution::Hash(keys)] => Some(format!(
            "Exchange: hash({}) into {into} partitions",
            list(keys)
        )),
        [Distribution::Hash(l), Distribution::Hash(r)] => Some(format!(
            "Exchange: left by hash({}), right by hash({}), into {into} partitions",
            list(l),
            list(r)
        )),
        _ => None,
    }
}

/// How many operators with several inputs (joins, unions) node `v`'s rows
/// pass before the view: its lines are indented that deep under its input.
fn joins_below(graph: &Graph, v: usize) -> usize {
    let mut depth = 0;
    let mut at = v;
    while let Some((next, _)) = graph.consumer(at) {
        if graph.nodes[next].inputs.len() > 1 {
            depth += 1;
        }
        at = next;
    }
    depth
}

/// The nodes in the order EXPLAIN shows them: each input's whole branch
/// (the first input's first), then the node that reads them.
fn branch_order(graph: &Graph) -> Vec<usize> {
    fn visit(graph: &Graph, v: usize, out: &mut Vec<usize>) {
        for e in &graph.nodes[v].inputs {
            if let Edge::Node(u) = *e {
                if !out.contains(&u) {
                    visit(graph, u, out);
                }
            }
        }
        out.push(v);
    }
    let mut out = Vec::with_capacity(graph.nodes.len());
    if let Some(last) = graph.nodes.len().checked_sub(1) {
        visit(graph, last, &mut out);
    }
    out
}

/// Remove the window placeholder qualifier (`__eddy_window_0.price` → `price`).
fn strip_placeholders(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(PLACEHOLDER_PREFIX) {
        out.push_str(&rest[..i]);
        let after = &rest[i + PLACEHOLDER_PREFIX.len()..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        rest = after[digits..]
            .strip_prefix('.')
            .unwrap_or(&after[digits..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::strip_placeholders;

    #[test]
    fn placeholders_are_hidden() {
        assert_eq!(
            strip_placeholders("max(__eddy_window_0.price), x(__eddy_window_12.a)"),
            "max(price), x(a)"
        );
    }
}
