//! Closing a chain into graph nodes: the checks on its shape, its output
//! time, its Top-N, and the nodes themselves; and the end of the view.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

use super::{join, Chain, Lowerer, Origin, PlanInputs};
use crate::error::{EddyError, Result};
use crate::operators::top_n::TopNSpec;
use crate::operators::window::WindowKind;
use crate::plan::graph::{self, At};
use crate::plan::{OutputTime, ViewPlan};
use crate::sql::{CreateView, EmitMode};
use crate::types::ViewOutput;

/// A chain closed into graph nodes.
pub(super) struct Closed {
    /// Where its output stands.
    pub at: At,
    /// What its output stream is like (unnamed).
    pub output: ViewOutput,
}

/// The end of lowering: the view's chain closed, every partition gathered
/// into the view.
pub(super) fn finish(
    l: &Lowerer<'_>,
    view: &CreateView,
    chain: Chain,
    plan: &LogicalPlan,
) -> Result<ViewPlan> {
    // The view's aggregates emit on window close; a join after them (Flink's q5) passes on
    // what they emit.
    if view.emit == EmitMode::OnWindowClose && chain.agg.is_none() && !l.aggregated.get() {
        return Err(EddyError::InvalidParameter {
            message: "EMIT ON WINDOW CLOSE needs a windowed aggregate (GROUP BY window_start …)"
                .into(),
            hint: None,
        });
    }
    if view.emit == EmitMode::OnWindowClose && !chain.watermarked() {
        return Err(EddyError::InvalidParameter {
            message: format!(
                "EMIT ON WINDOW CLOSE needs a watermark, and \"{}\" has none",
                chain.origin.name
            ),
            hint: Some("Declare WATERMARK FOR <column> AS <expr> on the input.".into()),
        });
    }
    let closed = close(l, chain, plan.schema().inner().clone(), None)?;
    let mut b = l.build.borrow_mut();
    graph::gather(&mut b, closed.at);
    let b = std::mem::take(&mut *b);
    Ok(ViewPlan {
        name: view.name.clone(),
        graph: b.graph,
        inputs: b.inputs,
        output: ViewOutput {
            name: view.name.clone(),
            ..closed.output
        },
        emit: view.emit,
    })
}

/// Close `chain` (whose output has `schema`) into graph nodes: the window
/// assignment or (with `drop_late`, the index of the origin's event-time
/// column) the late-row filter, the steps, Top-N and aggregate.
pub(super) fn close(
    l: &Lowerer<'_>,
    mut chain: Chain,
    schema: SchemaRef,
    drop_late: Option<usize>,
) -> Result<Closed> {
    check_updating(&mut chain)?;
    let time = out_time(&chain, &schema);
    let top_n = top_n(&mut chain, l.max_groups)?;
    let updating = chain.updating_in()
        || top_n.is_some()
        || chain
            .agg
            .as_ref()
            .is_some_and(|a| a.emit == EmitMode::OnUpdate);
    let key = chain.agg.as_ref().map(|a| {
        a.output_schema.fields()[..a.group_exprs.len()]
            .iter()
            .map(|f| f.name().clone())
            .collect()
    });
    let at = build(l, chain, top_n, drop_late);
    Ok(Closed {
        at,
        output: ViewOutput {
            name: String::new(),
            schema,
            time,
            updating,
            key,
        },
    })
}

/// `chain` closed, as the origin of a chain that reads it as a whole (a
/// join's side, a later aggregate): downstream sees the watermark held back
/// as far as the output's time column trails it.
pub(super) fn close_as_origin(
    l: &Lowerer<'_>,
    chain: Chain,
    schema: SchemaRef,
    drop_late: Option<usize>,
) -> Result<Origin> {
    let name = chain.origin.name.clone();
    // A windowed aggregate's window bounds stay known to what reads its output.
    let window = chain
        .agg
        .as_ref()
        .filter(|a| a.window.is_some() && a.session.is_none())
        .and(chain.window.clone())
        .map(|w| (w, chain.window_cols));
    let closed = close(l, chain, schema, drop_late)?;
    let time = &closed.output.time;
    let mut at = closed.at;
    let shift_ns = if time.forwards {
        time.delay_ns.max(0)
    } else {
        0
    };
    if shift_ns > 0 {
        at = graph::delay(&mut l.build.borrow_mut(), at, shift_ns);
    }
    let time_column = match (&time.column, time.forwards) {
        (_, false) => None,
        (Some(c), true) => Some(c.clone()),
        // Event time without a column the rows keep: it still orders what follows.
        (None, true) => Some("(watermark)".into()),
    };
    Ok(Origin {
        name,
        facts: PlanInputs {
            schema: closed.output.schema,
            time_column,
            updating: closed.output.updating,
            kind: "subquery".into(),
            upsert: false,
        },
        at,
        window,
        shift_ns,
    })
}

/// The nodes of a checked chain, from its origin on.
fn build(
    l: &Lowerer<'_>,
    chain: Chain,
    top_n: Option<(usize, Arc<TopNSpec>, bool)>,
    drop_late: Option<usize>,
) -> At {
    let n = l.partitions.max(1);
    let mut b = l.build.borrow_mut();
    let mut at = chain.origin.at;
    if let (true, Some((spec, schema))) = (chain.assign, chain.window.clone()) {
        let panes = chain.agg.as_ref().and_then(|a| a.panes);
        at = graph::window(&mut b, at, spec, schema, panes);
    } else if let Some(col) = drop_late {
        at = graph::drop_late(&mut b, at, col);
    }
    let (pre_top_n, post_top_n) = match &top_n {
        Some((i, spec, true)) => (None, Some((*i, spec))),
        Some((i, spec, false)) => (Some((*i, spec)), None),
        None => (None, None),
    };
    at = graph::steps_around_top_n(&mut b, at, &chain.pre, pre_top_n, n);
    match &chain.agg {
        Some(agg) => {
            at = graph::aggregate(&mut b, at, agg, n);
            graph::steps_around_top_n(&mut b, at, &chain.post, post_top_n, n)
        }
        None => b.steps_at(at, &chain.post),
    }
}

/// An aggregate over an updating input retracts; refuse what cannot.
fn check_updating(chain: &mut Chain) -> Result<()> {
    if !chain.updating_in() {
        return Ok(());
    }
    let name = chain.origin.name.clone();
    // A window assigns a retraction the windows of its insert; SESSION and count windows buffer
    // rows by arrival, which a retraction cannot undo.
    if let (true, Some((w, _))) = (chain.assign, &chain.window) {
        if matches!(w.kind, WindowKind::Session | WindowKind::Rows) {
            return Err(EddyError::NotSupported {
                message: format!(
                    "SESSION and TUMBLE_ROWS windows over the updating input \"{name}\" are \
                     not supported"
                ),
                hint: Some(
                    "Use TUMBLE, HOP or CUMULATE, or make the input append-only (EMIT ON WINDOW \
                     CLOSE)."
                        .into(),
                ),
            });
        }
    }
    let Some(agg) = chain.agg.as_mut() else {
        return Ok(());
    };
    let spec =
        Arc::get_mut(agg).ok_or_else(|| EddyError::Internal("aggregate spec is shared".into()))?;
    spec.retract = true;
    for a in &spec.aggs {
        crate::operators::aggregate::retracting(&a.func).map_err(|e| match e {
            EddyError::NotSupported { message, hint } => EddyError::NotSupported {
                message: format!("{message} (\"{name}\" updates its rows)"),
                hint,
            },
            other => other,
        })?;
    }
    Ok(())
}

/// The event time of the chain's output: which column, how far below the
/// watermark its values can be.
fn out_time(chain: &Chain, schema: &SchemaRef) -> OutputTime {
    let has_col = |c: &str| schema.index_of(c).ok().map(|_| c.to_string());
    let none = |forwards| OutputTime {
        column: None,
        delay_ns: 0,
        forwards,
    };
    match &chain.agg {
        Some(agg) => match agg.window {
            // A session's window_start can be any distance below the watermark:
            // downstream views get no event time from it.
            Some(_) if agg.session.is_some() => none(false),
            // The window bound the view keeps, under whatever name it was given.
            Some(wk) => OutputTime {
                column: chain
                    .window_cols
                    .0
                    .or(chain.window_cols.1)
                    .map(|i| schema.field(i).name().clone())
                    .or_else(|| has_col("window_start"))
                    .or_else(|| has_col("window_end")),
                delay_ns: wk.size_ns.max(0),
                forwards: true,
            },
            None => none(false),
        },
        None => match &chain.joined {
            Some(facts) => join_out_time(chain, facts, schema),
            None => OutputTime {
                column: chain.origin.facts.time_column.as_deref().and_then(has_col),
                delay_ns: 0,
                forwards: chain.watermarked(),
            },
        },
    }
}

/// The chain's pending ranking as a Top-N spec, with the step it runs after.
/// The flag says it ranks the aggregate's output.
fn top_n(chain: &mut Chain, max_groups: usize) -> Result<Option<(usize, Arc<TopNSpec>, bool)>> {
    let Some(r) = chain.rank.take() else {
        return Ok(None);
    };
    let Some(n) = r.n else {
        return Err(EddyError::InvalidParameter {
            message: "ROW_NUMBER() in a materialized view needs a filter that bounds the \
                      rank: rn <= N, rn < N, rn = k or rn BETWEEN a AND b (Top-N)"
                .into(),
            hint: Some(
                "SELECT * FROM (SELECT …, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v \
                 DESC) AS rn FROM t) WHERE rn <= 3"
                    .into(),
            ),
        });
    };
    // An aggregate that updates its rows feeds the ranking retractions.
    let updating_in = if r.after_agg {
        chain
            .agg
            .as_ref()
            .is_some_and(|a| a.emit == EmitMode::OnUpdate)
    } else {
        chain.updating_in()
    };
    let time_column = chain.origin.facts.time_column.as_deref();
    // Or the input's event-time column (e.g. an EOWC view's window_start):
    // rows below the watermark never come, so such a partition is done.
    let window = r.window.or_else(|| {
        let tc = time_column.filter(|_| !r.after_agg)?;
        let i = r
            .partition_names
            .iter()
            .position(|n| n.as_deref() == Some(tc))?;
        Some((i, false, 1))
    });
    Ok(Some((
        r.at,
        Arc::new(TopNSpec {
            kind: r.kind,
            keep_all: updating_in,
            partition_by: r.partition_by,
            order_by: r.order_by,
            n,
            input_schema: r.input_schema,
            output_schema: r.output_schema,
            max_keys: max_groups,
            window,
        }),
        r.after_agg,
    )))
}

/// The event time of a join view without an aggregate: the stream's (or
/// the left input's) time column or window bound, if the view keeps one,
/// delayed by how late a joined row can come out.
fn join_out_time(chain: &Chain, facts: &join::JoinFacts, schema: &SchemaRef) -> OutputTime {
    let name = |c: Option<usize>| c.map(|c| schema.field(c).name().clone());
    let size = chain.window.as_ref().map_or(0, |(w, _)| w.size_ns);
    let column = match facts.time_delay_ns.filter(|_| facts.watermarked) {
        None => None,
        Some(d) => name(chain.time_col)
            .map(|c| (c, d))
            .or_else(|| name(chain.window_cols.0).map(|c| (c, d.saturating_add(size))))
            .or_else(|| name(chain.window_cols.1).map(|c| (c, d))),
    };
    match column {
        Some((c, d)) => OutputTime {
            column: Some(c),
            delay_ns: d,
            forwards: true,
        },
        None => OutputTime {
            column: None,
            delay_ns: 0,
            forwards: facts.watermarked,
        },
    }
}
