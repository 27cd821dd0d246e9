//! `EXPLAIN CREATE MATERIALIZED VIEW`: the streaming operator graph as text.

use super::ViewPlan;
use crate::exec::window::{fmt_ns, WindowKind};

/// Render `plan` as one operator per line, from the input to the view.
pub fn explain(plan: &ViewPlan, input_kind: &str) -> Vec<String> {
    let mut lines = vec![format!("Input: {} [{input_kind}]", plan.input)];
    if let Some((w, _)) = &plan.window {
        let what = match w.kind {
            WindowKind::Tumble => format!("TUMBLE({}, size {})", w.time_column, fmt_ns(w.size_ns)),
            WindowKind::Hop => format!(
                "HOP({}, slide {}, size {})",
                w.time_column,
                fmt_ns(w.slide_ns),
                fmt_ns(w.size_ns)
            ),
        };
        lines.push(format!(
            "WindowAssign: {what}; drops rows below the watermark (counted as late)"
        ));
    }
    for s in &plan.pre {
        lines.push(format!("{s:?}"));
    }
    if let Some(agg) = &plan.agg {
        let keys: Vec<String> = agg.group_exprs.iter().map(|e| e.to_string()).collect();
        lines.push(format!(
            "Exchange: hash({}) into {} partitions",
            keys.join(", "),
            plan.partitions
        ));
        let aggs: Vec<String> = agg.aggs.iter().map(|a| a.func.name().to_string()).collect();
        let window = match &agg.window {
            Some(_) => "windowed; state freed when the watermark passes window_end",
            None => "not windowed; state kept per group",
        };
        lines.push(format!(
            "Aggregate: group=[{}], aggregates=[{}], emit {} ({window})",
            keys.join(", "),
            aggs.join(", "),
            plan.emit.name().replace('_', " ")
        ));
    }
    for s in &plan.post {
        lines.push(format!("{s:?}"));
    }
    let fields: Vec<String> = plan
        .output_schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    lines.push(format!(
        "Materialize: {} ({}){}",
        plan.name,
        fields.join(", "),
        if plan.updating {
            ", updating"
        } else {
            ", append-only"
        }
    ));
    lines
}
