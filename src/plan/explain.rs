//! `EXPLAIN CREATE MATERIALIZED VIEW`: the streaming operator graph as text.

use super::ViewPlan;
use crate::operators::window::{fmt_ns, WindowKind};
use crate::sql::window::PLACEHOLDER_PREFIX;

/// Render `plan` as one operator per line, from the input to the view.
pub fn explain(plan: &ViewPlan, input_kind: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut lines = Vec::new();
    match &plan.join {
        Some(j) => {
            let sides = ["left", "right"];
            for (s, side) in j.sides.iter().enumerate() {
                lines.push(format!(
                    "Input ({}): {} [{}]",
                    sides[s],
                    side.input,
                    input_kind(&side.input)
                ));
                if let Some((w, _)) = &side.window {
                    lines.push(format!("  {}", window_line(w)));
                } else if side.drop_late.is_some() {
                    lines.push(
                        "  DropLate: rows below this input's watermark (counted as late)".into(),
                    );
                }
                for step in &side.steps {
                    lines.push(format!("  {step:?}"));
                }
            }
            lines.push(join_line(&j.spec));
        }
        None => {
            lines.push(format!(
                "Input: {} [{}]",
                plan.input,
                input_kind(&plan.input)
            ));
            if let Some((w, _)) = &plan.window {
                match plan.agg.as_ref().and_then(|a| a.panes) {
                    Some(p) => lines.push(format!(
                        "{}; each row once, in its {} pane, whose groups feed the {} windows \
                         holding it",
                        window_line(w),
                        fmt_ns(p.slide_ns),
                        p.size_ns / p.slide_ns
                    )),
                    None => lines.push(window_line(w)),
                }
            }
        }
    }
    let top_n_at = |after_agg: bool, i: usize| {
        plan.top_n
            .as_ref()
            .filter(|(at, _)| plan.top_n_after_agg == after_agg && *at == i)
            .map(|(_, t)| top_n_line(t))
    };
    for (i, s) in plan.pre.iter().enumerate() {
        lines.extend(top_n_at(false, i));
        lines.push(format!("{s:?}"));
    }
    lines.extend(top_n_at(false, plan.pre.len()));
    if let Some(agg) = &plan.agg {
        // SESSION / TUMBLE_ROWS bounds are not known before the buffer: rows route by the rest.
        // Neither do a pane aggregate's window bounds (a key's panes feed the same windows).
        let bound = |i: usize| {
            agg.session
                .is_some_and(|s| s.window_groups.contains(&Some(i)))
                || agg.panes.is_some_and(|p| p.is_bound(i))
        };
        let routing: Vec<String> = agg
            .group_exprs
            .iter()
            .enumerate()
            .filter(|(i, _)| !bound(*i))
            .map(|(_, e)| e.to_string())
            .collect();
        let keys: Vec<String> = agg.group_exprs.iter().map(|e| e.to_string()).collect();
        if routing.is_empty() {
            lines.push("Exchange: none (no group key: one partition)".to_string());
        } else {
            lines.push(format!(
                "Exchange: hash({}) into {} partitions",
                routing.join(", "),
                plan.partitions
            ));
        }
        match agg.session {
            Some(s) if s.rows.is_some() => lines.push(format!(
                "WindowBuffer: rows wait per key until {} of them complete a window",
                s.rows.unwrap_or_default()
            )),
            Some(s) => lines.push(format!(
                "WindowBuffer: rows wait per key until their session (gap {}) closes",
                fmt_ns(s.gap_ns)
            )),
            None => {}
        }
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
    for (i, s) in plan.post.iter().enumerate() {
        lines.extend(top_n_at(true, i));
        lines.push(format!("{s:?}"));
    }
    lines.extend(top_n_at(true, plan.post.len()));
    let fields: Vec<String> = plan
        .output_schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let mut lines: Vec<String> = lines.iter().map(|l| strip_placeholders(l)).collect();
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

fn window_line(w: &crate::operators::window::WindowSpec) -> String {
    let what = match w.kind {
        WindowKind::Tumble => format!("TUMBLE({}, size {})", w.time_column, fmt_ns(w.size_ns)),
        WindowKind::Hop => format!(
            "HOP({}, slide {}, size {})",
            w.time_column,
            fmt_ns(w.slide_ns),
            fmt_ns(w.size_ns)
        ),
        WindowKind::Rows => format!("TUMBLE_ROWS({}, {} rows)", w.time_column, w.size_ns),
        WindowKind::Session => format!("SESSION({}, gap {})", w.time_column, fmt_ns(w.size_ns)),
        WindowKind::Cumulate => format!(
            "CUMULATE({}, step {}, size {})",
            w.time_column,
            fmt_ns(w.slide_ns),
            fmt_ns(w.size_ns)
        ),
    };
    format!("WindowAssign: {what}; drops rows below the watermark (counted as late)")
}

fn join_line(j: &crate::operators::join::JoinSpec) -> String {
    use crate::operators::join::{JoinKind, Retention};
    let keys: Vec<String> = j.keys[0]
        .iter()
        .zip(&j.keys[1])
        .map(|(l, r)| format!("{l} = {r}"))
        .collect();
    let keep = |s: usize| match j.retention[s] {
        Retention::EventTime { col, after_ns } => format!(
            "until the {} watermark passes {} {} {}",
            ["right", "left"][s],
            j.schemas[s].field(col).name(),
            if after_ns < 0 { "-" } else { "+" },
            fmt_ns(after_ns.saturating_abs())
        ),
        Retention::Ttl { ns } => format!("for state_ttl {}", fmt_ns(ns)),
        Retention::UntilDeleted => "its current rows (a lookup table)".into(),
        Retention::NotKept => "nothing (probes only)".into(),
    };
    format!(
        "Join: {}{}, keys [{}]{}; left keeps {}; right keeps {}",
        match j.kind {
            JoinKind::Inner => "INNER",
            JoinKind::Left => "LEFT",
            JoinKind::Full => "FULL",
        },
        if j.lookup.is_some() { " LOOKUP" } else { "" },
        keys.join(", "),
        j.filter
            .as_ref()
            .map(|f| format!(", condition {f}"))
            .unwrap_or_default(),
        keep(0),
        keep(1)
    )
}

fn top_n_line(t: &crate::operators::top_n::TopNSpec) -> String {
    use crate::operators::top_n::RankKind;
    let list = |v: Vec<String>| v.join(", ");
    let what = match t.kind {
        RankKind::RowNumber => format!("{} rows", t.n),
        RankKind::Rank => format!("rank() <= {}", t.n),
        RankKind::DenseRank => format!("dense_rank() <= {}", t.n),
    };
    format!(
        "TopN: {what} per [{}] by [{}], with their rank; state {}",
        list(t.partition_by.iter().map(|e| e.to_string()).collect()),
        list(t.order_by.iter().map(|e| e.to_string()).collect()),
        if t.keep_all {
            "every row (the input is updating)"
        } else {
            "the top rows per key"
        }
    )
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
