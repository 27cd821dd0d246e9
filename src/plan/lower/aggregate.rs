//! `GROUP BY` and `DISTINCT`: the aggregate, its window key, SESSION and
//! TUMBLE_ROWS buffers, and HOP panes.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{EddyError, Result};

use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;

use super::finish::close_as_origin;
use super::{column_index, unsupported, Chain, Lowerer};
use crate::operators::aggregate::{AggCall, AggregateSpec, PaneSpec, SessionSpec, WindowKey};
use crate::operators::steps::Step;
use crate::operators::window::WindowKind;
use crate::sql::EmitMode;

/// A HOP aggregate can share work per slide ([`PaneSpec`]) when nothing between the window
/// assignment and the aggregate, and nothing in the aggregate but plain group keys, reads the
/// window bounds (they hold the pane's bounds there, not the window's).
fn pane_spec(
    chain: &Chain,
    group_exprs: &[Arc<dyn PhysicalExpr>],
    aggs: &[AggCall],
) -> Option<PaneSpec> {
    use datafusion::physical_expr::expressions::Column as PhysColumn;
    use datafusion::physical_expr::utils::collect_columns;
    let (spec, schema) = chain.window.as_ref()?;
    if spec.kind != WindowKind::Hop
        || spec.slide_ns <= 0
        || spec.size_ns <= spec.slide_ns
        || spec.size_ns % spec.slide_ns != 0
        || chain.rank.is_some()
        || !chain.assign
        || chain.updating_in()
    {
        return None;
    }
    // Where window_start (false) and window_end (true) are, step by step.
    let n = schema.fields().len();
    let mut bounds: HashMap<usize, bool> = HashMap::from([(n - 2, false), (n - 1, true)]);
    let reads = |e: &Arc<dyn PhysicalExpr>, bounds: &HashMap<usize, bool>| {
        collect_columns(e)
            .iter()
            .any(|c| bounds.contains_key(&c.index()))
    };
    let plain = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<PhysColumn>().map(|c| c.index());
    for step in &chain.pre {
        match step {
            Step::Filter(e) if !reads(e, &bounds) => {}
            Step::Project { exprs, .. } => {
                let mut next = HashMap::new();
                for (j, e) in exprs.iter().enumerate() {
                    match plain(e).and_then(|i| bounds.get(&i)) {
                        Some(is_end) => {
                            next.insert(j, *is_end);
                        }
                        None if reads(e, &bounds) => return None,
                        None => {}
                    }
                }
                bounds = next;
            }
            _ => return None,
        }
    }
    let (mut start_group, mut end_group) = (None, None);
    for (g, e) in group_exprs.iter().enumerate() {
        match plain(e).and_then(|i| bounds.get(&i)) {
            Some(true) if end_group.is_none() => end_group = Some(g),
            Some(false) if start_group.is_none() => start_group = Some(g),
            Some(_) => return None,
            None if reads(e, &bounds) => return None,
            None => {}
        }
    }
    let agg_reads = aggs.iter().any(|a| {
        a.args.iter().any(|e| reads(e, &bounds))
            || a.filter.as_ref().is_some_and(|f| reads(f, &bounds))
    });
    if agg_reads || (start_group.is_none() && end_group.is_none()) {
        return None;
    }
    Some(PaneSpec {
        slide_ns: spec.slide_ns,
        size_ns: spec.size_ns,
        start_group,
        end_group,
    })
}

/// The group keys of an aggregate and what they say about windows.
struct GroupKeys {
    /// The key expressions.
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The window bound that closes a group's window, if one is a key.
    window: Option<WindowKey>,
    /// Keys that are a SESSION / TUMBLE_ROWS window's (start, end).
    session_groups: [Option<usize>; 2],
    /// Keys that are window_start / window_end (their positions in the output).
    bounds: (Option<usize>, Option<usize>),
}

impl Lowerer<'_> {
    /// `GROUP BY` (or `DISTINCT`) over `chain`: an aggregate over an
    /// aggregate closes the first one and reads its output.
    pub(super) fn aggregate(
        &self,
        chain: Chain,
        input: &LogicalPlan,
        group_expr: &[Expr],
        aggr_expr: &[Expr],
        output_schema: SchemaRef,
    ) -> Result<Chain> {
        let mut chain = chain;
        if chain.agg.is_some() {
            let origin = close_as_origin(self, chain, input.schema().inner().clone(), None)?;
            chain = Chain::over(origin);
        }
        let in_schema = input.schema();
        let mut keys = self.group_keys(&chain, group_expr, in_schema)?;
        let session = self.buffer(&chain, &mut keys)?;
        let aggs = self.agg_calls(aggr_expr, in_schema)?;
        if self.emit == EmitMode::OnWindowClose && keys.window.is_none() {
            return Err(EddyError::InvalidParameter {
                message: "EMIT ON WINDOW CLOSE needs an aggregate grouped by window_start or window_end of a TUMBLE, HOP or CUMULATE window".into(),
                hint: Some("Drop EMIT ON WINDOW CLOSE for an always-updating result.".into()),
            });
        }
        self.aggregated.set(true);
        let panes = pane_spec(&chain, &keys.exprs, &aggs);
        chain.agg = Some(Arc::new(AggregateSpec {
            group_exprs: keys.exprs,
            aggs,
            output_schema,
            window: keys.window,
            session,
            emit: self.emit,
            max_groups: self.max_groups,
            retract: false,
            panes,
        }));
        // The window bounds among the group keys, by their positions in the aggregate's output.
        chain.window_cols = match keys.window {
            Some(_) => keys.bounds,
            None => (None, None),
        };
        chain.time_col = None;
        Ok(chain)
    }

    /// The group keys, and which of them are window bounds.
    fn group_keys(
        &self,
        chain: &Chain,
        group_expr: &[Expr],
        in_schema: &DFSchema,
    ) -> Result<GroupKeys> {
        let mut keys = GroupKeys {
            exprs: Vec::new(),
            window: None,
            session_groups: [None, None],
            bounds: (None, None),
        };
        for (gi, g) in group_expr.iter().enumerate() {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS / ROLLUP / CUBE"));
            }
            keys.exprs.push(self.phys(g, in_schema)?);
            let (Some(idx), Some((spec, _))) = (column_index(g, in_schema), &chain.window) else {
                continue;
            };
            let is_end = Some(idx) == chain.window_cols.1;
            let is_start = Some(idx) == chain.window_cols.0;
            if is_end {
                keys.bounds.1 = keys.bounds.1.or(Some(gi));
            } else if is_start {
                keys.bounds.0 = keys.bounds.0.or(Some(gi));
            }
            if matches!(spec.kind, WindowKind::Session | WindowKind::Rows) && (is_end || is_start) {
                keys.session_groups[usize::from(is_end)] = Some(gi);
            }
            // window_start gives the end only when every window has the same size.
            let usable = is_end || (is_start && spec.kind != WindowKind::Cumulate);
            if usable && keys.window.is_none_or(|w: WindowKey| !w.is_end && is_end) {
                keys.window = Some(WindowKey {
                    group_index: gi,
                    is_end,
                    size_ns: spec.size_ns,
                });
            }
        }
        if let Some(w) = keys.window.as_mut().filter(|_| chain.origin.shift_ns > 0) {
            // The input's watermark trails the window bounds (it comes from an aggregate
            // closed before this one): the window closes that much sooner by it.
            let closes_after = if w.is_end { 0 } else { w.size_ns };
            w.is_end = false;
            w.size_ns = closes_after - chain.origin.shift_ns;
        }
        Ok(keys)
    }

    /// SESSION and TUMBLE_ROWS rows wait in a buffer and reach the aggregate
    /// with both bounds set, in windows that are already complete; CUMULATE
    /// needs window_end among the keys.
    fn buffer(&self, chain: &Chain, keys: &mut GroupKeys) -> Result<Option<SessionSpec>> {
        let Some((spec, _)) = &chain.window else {
            return Ok(None);
        };
        let groups = keys.session_groups;
        let keyed = keys.window.is_some();
        let mut buffered = |gap_ns: i64, rows: Option<usize>| {
            if let Some(w) = keys.window.as_mut() {
                w.size_ns = 0;
                w.is_end = groups[1].is_some();
                w.group_index = groups[1].or(groups[0]).unwrap_or(w.group_index);
            }
            Some(SessionSpec {
                gap_ns,
                rows,
                start_col: chain.window_cols.0,
                end_col: chain.window_cols.1,
                window_groups: groups,
            })
        };
        match spec.kind {
            WindowKind::Rows if !keyed => Err(EddyError::InvalidParameter {
                message: "an aggregate over TUMBLE_ROWS windows must GROUP BY window_start or \
                          window_end"
                    .into(),
                hint: Some("GROUP BY key, window_start, window_end ….".into()),
            }),
            WindowKind::Rows => Ok(buffered(0, usize::try_from(spec.size_ns).ok())),
            WindowKind::Session if !keyed || self.emit != EmitMode::OnWindowClose => {
                Err(EddyError::InvalidParameter {
                    message: "an aggregate over SESSION windows must GROUP BY window_start \
                              or window_end and EMIT ON WINDOW CLOSE (a session's result is \
                              known once it closes)"
                        .into(),
                    hint: Some(
                        "GROUP BY key, window_start, window_end … EMIT ON WINDOW CLOSE.".into(),
                    ),
                })
            }
            WindowKind::Session => Ok(buffered(spec.size_ns, None)),
            WindowKind::Cumulate if !keyed => Err(EddyError::InvalidParameter {
                message: "an aggregate over CUMULATE windows must GROUP BY window_end \
                          (the windows of a period share their window_start)"
                    .into(),
                hint: Some("GROUP BY window_start, window_end, ….".into()),
            }),
            _ => Ok(None),
        }
    }

    /// The aggregate calls, lowered as DataFusion lowers them for a query.
    fn agg_calls(&self, aggr_expr: &[Expr], in_schema: &DFSchema) -> Result<Vec<AggCall>> {
        let props = self.state.execution_props();
        let mut aggs = Vec::new();
        for e in aggr_expr {
            let e = &crate::plan::simplify(self.state, e.clone(), in_schema)?;
            let planning = PhysicalPlanningContext::default();
            let lowered =
                LoweredAggregateBuilder::new(e, in_schema, in_schema.as_arrow(), props, &planning)
                    .build()?;
            let (func, filter) = (lowered.aggregate, lowered.filter);
            if !lowered.order_bys.is_empty() {
                return Err(unsupported("an aggregate with ORDER BY"));
            }
            // Bad constant arguments (approx_top_k's k, say) fail here, not in the running view.
            func.create_accumulator().map_err(|e| match e {
                datafusion::error::DataFusionError::Plan(m) => EddyError::invalid(m),
                // stddev(DISTINCT …), approx_median(DISTINCT …): a query runs them through a
                // rewrite to a nested GROUP BY; a view keeps one accumulator per group.
                datafusion::error::DataFusionError::NotImplemented(m) if m.contains("DISTINCT") => {
                    EddyError::NotSupported {
                        message: format!("{m} in a materialized view"),
                        hint: Some(
                            "Compute the aggregate over a view of the distinct values: \
                             CREATE MATERIALIZED VIEW d AS SELECT DISTINCT k, x FROM …; then \
                             aggregate x over d."
                                .into(),
                        ),
                    }
                }
                other => other.into(),
            })?;
            let args = func.expressions();
            aggs.push(AggCall { func, args, filter });
        }
        Ok(aggs)
    }
}
